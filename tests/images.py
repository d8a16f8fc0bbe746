"""Real images for the cross-checks, made locally: a photograph an installed package ships, and drawings.

Nothing is downloaded: matplotlib ships Grace Hopper's portrait in its sample data. Folders of
shapes to train on are :mod:`vggspec.samples`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def photograph(size: int) -> Image.Image:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    return image.resize((size, size), Image.BILINEAR)


def drawing(size: int, seed: int) -> Image.Image:
    """Shapes in colours on a coloured background: structure a convolution can respond to."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        x1, y1 = x0 + int(rng.integers(size // 8, size // 2)), y0 + int(rng.integers(size // 8, size // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return image


def batch(size: int, count: int = 4):
    """(count, 3, size, size) float tensor, normalised like ImageNet inputs."""
    import torch

    images = [photograph(size)] + [drawing(size, seed) for seed in range(count - 1)]
    array = np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in images])
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (tensor - mean) / std



def picture(width: int, height: int, seed: int, noise: float = 6.0) -> Image.Image:
    """Coloured shapes on a smooth background, with a little noise: something like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 10, width // 2)), y0 + int(rng.integers(height // 10, height // 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, noise, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_split(root: Path, split: str, classes: dict[str, list[tuple[int, int]]], fmt: str = "jpg") -> Path:
    for c, (name, sizes) in enumerate(classes.items()):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(sizes):
            picture(w, h, seed=100 * c + i).save(folder / f"img{i:02d}.{fmt}", quality=92)
    return root
