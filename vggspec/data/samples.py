"""Generated image folders of drawn shapes: a data set to try the trainer with, made in a second.

Each class is a shape (:data:`SHAPES`) of random colour, size and place on a random darker
background, so a narrow network learns it in a few epochs on a CPU::

    from vggspec.data.samples import image_folder

    image_folder("shapes", classes=4, train=48, val=16, size=48)  # then: vggspec train SPEC --data shapes

The same seed gives the same images. Drawing needs numpy and Pillow (the ``[torch]`` extra installs
them), not torch; importing this module needs neither (the command line reads :data:`SHAPES` and the
defaults from here), and ``import vggspec`` does not import it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = ["SHAPES", "check_request", "holds_samples", "image_folder", "sample_files", "shape_image"]

# Ten shapes a narrow network tells apart at 32×32 pixels; a folder of N classes takes the first N. The first
# four came first and draw as they always did: a new shape goes at the end, and draws from the same random
# numbers as the others (colour, background, extent, place), so that a seed's folder never changes.
SHAPES = (
    "ellipse", "rectangle", "triangle", "cross",
    "diamond", "ring", "frame", "horizontal-bar", "vertical-bar", "x",
)  # fmt: skip
# What a folder holds unless told otherwise: the tutorial's (vggspec samples DIR). The default run of A-narrow-32 on
# it (vggspec train small/A-narrow-32 --data DIR --num-classes auto) learns it, 0% error by epoch 13, and stops at 22.
# More classes or fewer images an epoch take longer: on 10 classes of 32 images, 7% after 46 epochs; on 4 of 64, 0%
# after 26 (BENCHMARKS.md, "... the tutorial's folder").
DEFAULT_CLASSES, DEFAULT_TRAIN, DEFAULT_VAL, DEFAULT_SIZE = 6, 96, 16, 32
MIN_SIZE = 8  # a shape spans spans half the side to all but 2 pixels of it: at 4 pixels, no extent is left


def shape_image(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape of random colour, size and place on a random background: a class to learn."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    _check_size(size)
    from PIL import Image, ImageDraw

    background = tuple(int(c) for c in rng.integers(0, 120, 3))
    colour = tuple(int(c) for c in rng.integers(136, 256, 3))  # brighter than any background
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    extent = int(rng.integers(size // 2, size - 2))
    x0, y0 = (int(v) for v in rng.integers(0, size - extent + 1, 2))
    x1, y1 = x0 + extent - 1, y0 + extent - 1
    box = (x0, y0, x1, y1)
    line = max(2, extent // 6)  # the stroke of the outlined shapes: at least 2 pixels, as wide as they get
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=colour)
    elif shape == "cross":
        third = max(1, extent // 3)
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=colour)
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=colour)
    elif shape == "diamond":
        middle_x, middle_y = (x0 + x1) // 2, (y0 + y1) // 2
        draw.polygon([(middle_x, y0), (x1, middle_y), (middle_x, y1), (x0, middle_y)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=line)
    elif shape == "frame":
        draw.rectangle(box, outline=colour, width=line)
    elif shape in ("horizontal-bar", "vertical-bar"):
        thickness = max(3, extent // 4)
        start = (extent - thickness) // 2  # the bar runs through the middle of its box
        if shape == "horizontal-bar":
            draw.rectangle((x0, y0 + start, x1, y0 + start + thickness - 1), fill=colour)
        else:
            draw.rectangle((x0 + start, y0, x0 + start + thickness - 1, y1), fill=colour)
    else:  # x: the cross turned by 45°
        draw.line((x0, y0, x1, y1), fill=colour, width=line + 1)
        draw.line((x0, y1, x1, y0), fill=colour, width=line + 1)
    return image


def sample_files(
    *,
    classes: int = DEFAULT_CLASSES,
    train: int = DEFAULT_TRAIN,
    val: int = DEFAULT_VAL,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    suffix: str = ".png",
) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Each file of the folder :func:`image_folder` writes: its path under the folder
    (``train/<shape>/0000.png``) and its bytes, in the order they are drawn. A request that cannot be
    drawn is refused here, before the first file."""
    check_request(classes=classes, train=train, val=val, size=size)
    from PIL import Image

    image_format = Image.registered_extensions().get(suffix.lower())
    if image_format is None:
        raise ValueError(f"unknown image suffix {suffix!r}: .png or .jpg, say")
    return _drawn_files(classes, train, val, size, seed, suffix, image_format)


def _drawn_files(
    classes: int, train: int, val: int, size: int, seed: int, suffix: str, image_format: str
) -> Iterator[tuple[PurePosixPath, bytes]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    for relative in _layout(classes, train, val, suffix):
        encoded = io.BytesIO()
        shape_image(relative.parent.name, size, rng).save(encoded, format=image_format)
        yield relative, encoded.getvalue()


def _layout(classes: int, train: int, val: int, suffix: str) -> list[PurePosixPath]:
    """The files of a folder, in the order they are drawn: ``train/<shape>/0000.png``, ..."""
    return [
        PurePosixPath(split, shape, f"{i:04d}{suffix}")
        for split, count in (("train", train), ("val", val))
        for shape in SHAPES[:classes]
        for i in range(count)
    ]


def check_request(*, classes: int, train: int, val: int, size: int) -> None:
    """A ValueError, in one line, for a folder that cannot be drawn."""
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"{classes} classes: there are 1 to {len(SHAPES)} shapes to draw ({', '.join(SHAPES)})")
    if train < 1 or val < 1:
        raise ValueError(f"{train} training and {val} validation images a class: at least 1 of each")
    _check_size(size)


def _check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise ValueError(f"images of {size}×{size} pixels are too small to draw in: at least {MIN_SIZE}")


def image_folder(
    root: str | os.PathLike[str],
    *,
    classes: int = DEFAULT_CLASSES,
    train: int = DEFAULT_TRAIN,
    val: int = DEFAULT_VAL,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """Write ROOT/train/<shape>/*.png and ROOT/val/<shape>/*.png: the layout ``vggspec train --data`` reads.

    ``classes`` shapes (the first of :data:`SHAPES`), ``train`` and ``val`` images of each, ``size``
    pixels square; ``suffix`` ".jpg" writes JPEGs. Files already there are kept, and overwritten where
    one of these has their name. Returns ROOT.
    """
    root = Path(root)
    for relative, data in sample_files(classes=classes, train=train, val=val, size=size, seed=seed, suffix=suffix):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def holds_samples(
    root: str | os.PathLike[str],
    *,
    classes: int = DEFAULT_CLASSES,
    train: int = DEFAULT_TRAIN,
    val: int = DEFAULT_VAL,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    suffix: str = ".png",
) -> bool:
    """Whether ROOT holds what ``image_folder(ROOT, ...)`` writes with these settings, byte for byte, and nothing
    else: writing it again would change nothing. The names are compared first, a folder at a time, so that a
    folder of other images is told apart without reading it whole or drawing anything."""
    root = Path(root)
    expected = _layout(classes, train, val, suffix)
    folders: dict[PurePosixPath, set[str]] = {PurePosixPath("."): set()}
    for relative in expected:
        for folder in reversed(relative.parents[:-1]):  # train, then train/ellipse
            folders.setdefault(folder, set())
            folders[folder.parent].add(folder.name)
        folders[relative.parent].add(relative.name)
    try:
        if any(set(os.listdir(root / folder)) != names for folder, names in folders.items()):
            return False
    except (NotADirectoryError, FileNotFoundError):
        return False
    drawn = sample_files(classes=classes, train=train, val=val, size=size, seed=seed, suffix=suffix)
    return all((root / relative).read_bytes() == data for relative, data in drawn)
