"""The image folder: which files of ``DIR/<split>/<class>/*`` are the samples, and their labels.

Its own module because training, the colour statistics, evaluation and prediction all list images
the same way and need nothing else of the pipeline: :func:`scan` lists a split into an
:class:`ImageFolder` (sorted, so the same files always get the same indices and labels), and
:func:`image_files` the images under any folder. Nothing here imports torch or decodes a pixel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError

__all__ = ["IMAGE_EXTENSIONS", "LAYOUT_HINT", "ImageFolder", "image_files", "scan"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")

LAYOUT_HINT = "the layout is DIR/<split>/<class>/<image>, e.g. DIR/train/dog/0001.jpg and DIR/val/dog/0042.jpg"


@dataclass(frozen=True)
class ImageFolder:
    """The images of one split: ``root`` = DIR/<split>, a class per sub-folder.

    ``classes`` are the sub-folders' names, sorted; ``samples`` are ``(path, class index)``
    sorted by class, then by path relative to the class folder (sub-folders included), so that
    the same files always give the same indices.
    """

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]

    def __len__(self) -> int:
        return len(self.samples)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively, following links), as sorted relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        for name in filenames:
            if _is_image(name):
                found.append(name if rel == "." else os.path.join(rel, name))
    return sorted(found)


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{n}'" for n in list(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def scan(data_dir: str | Path, split: str, classes: Sequence[str] | None = None) -> ImageFolder:
    """List the images of ``data_dir/split/<class>/*``.

    ``classes``: the training split's classes, when scanning the validation split or a test set:
    its class folders must be among them (a label is the index of its name in ``classes``), and
    may be fewer (a test set without some classes).
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise SpecError(f"the data directory {data_dir} does not exist", hint=LAYOUT_HINT)
    if not data_dir.is_dir():
        raise SpecError(f"the data directory {data_dir} is not a directory", hint=LAYOUT_HINT)
    root = data_dir / split
    if not root.is_dir():
        splits = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        holds = f"it holds {_listing(splits)}" if splits else "it holds no folders"
        raise SpecError(
            f"{data_dir} has no '{split}' split ({root} is not a directory; {holds})",
            hint=LAYOUT_HINT + (f"; or choose one of {_listing(splits)} as the split" if splits else ""),
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        images_here = [p.name for p in root.iterdir() if p.is_file() and _is_image(p.name)]
        n = len(images_here)
        what = f"{n} image{'s' if n != 1 else ''} but no class folders" if n else "no class folders"
        raise SpecError(
            f"{root} holds {what}",
            hint="put each class's images in a folder of its own: " + LAYOUT_HINT,
        )
    if classes is not None and (extra := sorted(set(found) - set(classes))):
        raise SpecError(
            f"{root} has class folders the training split has not: {_listing(extra)} "
            f"({len(found)} here, {len(classes)} in training)",
            hint="a label means a training class: name the folders as the training split does",
        )
    labels = {name: i for i, name in enumerate(classes if classes is not None else found)}
    samples: list[tuple[str, int]] = []
    for name in found:
        files = image_files(root / name)
        if not files:
            others = sorted(p.name for p in (root / name).iterdir() if not p.name.startswith("."))
            holds = f"it holds {_listing(others)}" if others else "it is empty"
            raise SpecError(
                f"the class folder {root / name} holds no images ({holds})",
                hint=f"image files end in {', '.join(IMAGE_EXTENSIONS)}; add images or remove the folder",
            )
        samples.extend((str(root / name / f), labels[name]) for f in files)
    return ImageFolder(root=root, classes=tuple(labels), samples=tuple(samples))

