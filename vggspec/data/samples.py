"""Generated image folders of drawn shapes: a data set to try the trainer with, made in a second.

Each class is a shape (:data:`SHAPES`) of random colour, size and place on a random darker
background, so a narrow network learns it in a few epochs on a CPU::

    from vggspec.data.samples import image_folder

    image_folder("shapes", classes=4, train=48, val=16, size=48)  # then: vggspec train SPEC --data shapes

The same seed gives the same images. Needs numpy and Pillow (the ``[torch]`` extra installs
them), not torch; ``import vggspec`` does not import this module.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "image_folder", "shape_image"]

SHAPES = ("ellipse", "rectangle", "triangle", "cross")
MIN_SIZE = 8  # a shape spans half the side to all but 2 pixels of it: at 4 pixels, no extent is left


def shape_image(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape of random colour, size and place on a random background: a class to learn."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    if size < MIN_SIZE:
        raise ValueError(f"images of {size}×{size} pixels are too small to draw in: at least {MIN_SIZE}")
    background = tuple(int(c) for c in rng.integers(0, 120, 3))
    colour = tuple(int(c) for c in rng.integers(136, 256, 3))  # brighter than any background
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    extent = int(rng.integers(size // 2, size - 2))
    x0, y0 = (int(v) for v in rng.integers(0, size - extent + 1, 2))
    x1, y1 = x0 + extent - 1, y0 + extent - 1
    if shape == "ellipse":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "rectangle":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=colour)
    else:  # cross
        third = max(1, extent // 3)
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=colour)
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=colour)
    return image


def image_folder(
    root: str | os.PathLike[str],
    *,
    classes: int = 3,
    train: int = 32,
    val: int = 12,
    size: int = 24,
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """Write ROOT/train/<shape>/*.png and ROOT/val/<shape>/*.png: the layout ``vggspec train --data`` reads.

    ``classes`` shapes (the first of :data:`SHAPES`), ``train`` and ``val`` images of each, ``size``
    pixels square; ``suffix`` ".jpg" writes JPEGs. Returns ROOT.
    """
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"classes={classes}: there are 1 to {len(SHAPES)} shapes to draw ({', '.join(SHAPES)})")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for shape in SHAPES[:classes]:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape_image(shape, size, rng).save(folder / f"{i:04d}{suffix}")
    return root
