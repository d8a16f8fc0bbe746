"""What does a vggspec process spend before and after its work: importing, and exiting?

A `vggspec train --nproc N` run starts N + 1 Python processes, each importing torch, and each
exiting; on a small job that is most of the wall time. Side by side, in fresh processes,
interleaved rounds, medians:

* exit: after importing the trainer (torch, torchvision, matplotlib), Python's own exit against
  the ``vggspec`` program's (``cli.run``: ``gc.freeze()`` first, which skips the last garbage
  collections over every object those imports made). Time from the last line of work to the
  process's end.
* import: what a launching process imports to start N processes (``vggspec.train``; torchvision
  is imported where JPEGs are decoded) against the same plus torchvision (as before).
* for scale: a whole 1-epoch run on a tiny generated dataset, ``--nproc 1`` and ``--nproc 2``.

    python tools/bench_startup.py            # ~1.5 min
    python tools/bench_startup.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORTS = "import vggspec.train, matplotlib.pyplot, torchvision"
EXIT = {
    "Python's exit": f"{IMPORTS}; print(time.time(), flush=True)",
    "vggspec's exit (gc.freeze)": f"{IMPORTS}; import gc; gc.freeze(); print(time.time(), flush=True)",
}
IMPORT = {
    "vggspec.train + torchvision": (
        "t = time.perf_counter(); import vggspec.train, torchvision; print(time.perf_counter() - t)"
    ),
    "vggspec.train": "t = time.perf_counter(); import vggspec.train; print(time.perf_counter() - t)",
}
TINY = "input: 16x16 RGB\nconv3-8 [bn]\nmaxpool\nconv3-16 [bn]\nmaxpool\nFC-32\nFC-3\nsoft-max\n"


def python(code: str) -> tuple[str, float]:
    """Run ``code`` in a fresh interpreter: (its last output line, the time it ended)."""
    out = subprocess.run(
        [sys.executable, "-c", f"import time\n{code}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    return (out.stdout.split() or [""])[-1], time.time()


def exit_seconds(code: str) -> float:
    last_line, ended = python(code)
    return ended - float(last_line)


def import_seconds(code: str) -> float:
    return float(python(code)[0])


def make_data(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 32), ("val", 12)):
        for label in range(3):
            (folder / split / f"c{label}").mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) // (label + 1)
                Image.fromarray(pixels).save(folder / split / f"c{label}" / f"{i}.png")


def run_seconds(folder: Path, nproc: int) -> float:
    args = ["train", str(folder / "tiny.vgg"), "--data", str(folder), "--epochs", "1", "--batch-size", "16"]
    args += ["--stats-images", "40", "--init", "kaiming", "--no-progress", "--nproc", str(nproc)]
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "vggspec", *args, "--out", str(folder / f"run{nproc}-{start}")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder)
        (folder / "tiny.vgg").write_text(TINY)
        tasks = {
            **{k: lambda c=c: exit_seconds(c) for k, c in EXIT.items()},
            **{k: lambda c=c: import_seconds(c) for k, c in IMPORT.items()},
            **{f"1-epoch tiny run, --nproc {n}": lambda n=n: run_seconds(folder, n) for n in (1, 2)},
        }
        python(f"{IMPORTS}; print()")  # warm the file cache
        for r in range(args.rounds):
            for name, task in tasks.items():
                times.setdefault(name, []).append(task())
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"Python {sys.version.split()[0]}; median seconds over {args.rounds} rounds, fresh processes\n")
    for group in (EXIT, IMPORT):
        (old, new) = group
        print(f"{old:36s} {median[old]:6.2f} s")
        print(f"{new:36s} {median[new]:6.2f} s   {median[old] / median[new]:.1f}× less\n")
    for name in [n for n in median if n.startswith("1-epoch")]:
        print(f"{name:36s} {median[name]:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
