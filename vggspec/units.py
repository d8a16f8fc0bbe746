"""Numbers as people read them: one unit system everywhere vggspec prints a size, a count or a time.

Bytes go in powers of 1024 (KiB, MiB, GiB, TiB), as nvidia-smi, ``torch.cuda`` and ``free -h`` count
them; counts (parameters, FLOPs) in SI prefixes (k, M, G, T), as people write "15.5 GFLOPs".
"""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """1.55e10 → ``'14.4 GiB'``; 512 → ``'512 B'``."""
    for factor, prefix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            value = n / factor
            return f"{value:.3g} {prefix}" if value < 1000 else f"{value:.0f} {prefix}"
    return f"{int(n)} B"


def human_count(n: float, unit: str = "") -> str:
    """1.55e10 → ``'15.5 G'`` (SI prefixes; ``human_count(f, "FLOPs")``: ``'15.5 GFLOPs'``)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}{unit}".rstrip()
    return f"{n:g} {unit}".rstrip()


def human_duration(seconds: float) -> str:
    """``350 ms``, ``4.2 s``, ``3m07s``, ``2h05m00s``: below a minute to three digits, above it as a clock."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
