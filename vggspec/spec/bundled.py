"""The specs that ship with vggspec: Table 1's six configurations and a few small networks."""

from __future__ import annotations

import fnmatch
from pathlib import Path

PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")
"""Table 1's columns, in the paper's order."""


def specs_dir() -> Path:
    """``vggspec/_specs`` in an installed wheel, the repository's ``specs/`` in a checkout."""
    package = Path(__file__).resolve().parent.parent  # vggspec/
    for candidate in (package / "_specs", package.parent / "specs"):
        if (candidate / "D.vgg").is_file():
            return candidate
    raise FileNotFoundError("the bundled specs are missing from this installation of vggspec")


def paper_specs() -> list[Path]:
    return [specs_dir() / f"{name}.vgg" for name in PAPER_CONFIGS]


def spec_path(name: str | Path) -> Path:
    """The file a SPEC argument means: ``name`` if it exists, else the bundled spec so named
    (``D``, ``small/A-narrow-32``: no suffix), else ``name`` (for the error that follows).

    So that an installed vggspec reaches its specs from anywhere: ``vggspec compile E``.
    """
    path = Path(name)
    if path.exists() or path.is_absolute() or path.suffix:
        return path
    try:
        bundled = specs_dir() / f"{path}.vgg"
    except FileNotFoundError:
        return path
    return bundled if bundled.is_file() else path


def bundled_names() -> list[str]:
    """Every bundled spec's name, Table 1's first (none if they are missing)."""
    try:
        root = specs_dir()
    except FileNotFoundError:
        return []
    return [p.relative_to(root).with_suffix("").as_posix() for p in [*spec_files(root), *spec_files(root / "small")]]


def spec_files(path: Path) -> list[Path]:
    """The ``.vgg`` files of a directory: Table 1's configurations first, in its order."""
    files = list(path.glob("*.vgg"))
    order = {name: i for i, name in enumerate(PAPER_CONFIGS)}
    return sorted(files, key=lambda p: (order.get(p.stem, len(order)), p.name))


def matching(pattern: str | None, names: list[str] | None = None) -> list[str]:
    """The bundled names ``pattern`` picks, case aside: a glob (``small/*``, ``[DE]``) matches the
    whole name, anything else is a substring (``narrow``); no pattern picks all."""
    names = bundled_names() if names is None else names
    if not pattern:
        return names
    pattern = pattern.lower()
    if any(c in pattern for c in "*?["):
        return [name for name in names if fnmatch.fnmatchcase(name.lower(), pattern)]
    return [name for name in names if pattern in name.lower()]
