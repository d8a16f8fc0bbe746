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


def save_oriented(path: Path, image: Image.Image, orientation: int, **options) -> Path:
    """``image`` saved as a JPEG whose pixels are stored turned so that EXIF ``orientation`` turns them back,
    as a phone stores a portrait photo (orientation 6: landscape pixels, a quarter turn to show)."""
    turn = Image.Transpose
    stored_as = {
        2: turn.FLIP_LEFT_RIGHT, 3: turn.ROTATE_180, 4: turn.FLIP_TOP_BOTTOM, 5: turn.TRANSPOSE,
        6: turn.ROTATE_90, 7: turn.TRANSVERSE, 8: turn.ROTATE_270,
    }  # fmt: skip
    stored = image.transpose(stored_as[orientation]) if orientation in stored_as else image
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, quality=options.pop("quality", 92), **options)
    return path


def save_png16(path: Path, levels: np.ndarray) -> Path:
    """A 16-bit PNG of ``levels`` (uint16, (H, W) gray or (H, W, 3) RGB), written by hand: Pillow writes
    16-bit gray only."""
    import struct
    import zlib

    height, width = levels.shape[:2]
    colour_type = 2 if levels.ndim == 3 else 0
    rows = b"".join(b"\0" + levels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def make_split(root: Path, split: str, classes: dict[str, list[tuple[int, int]]], fmt: str = "jpg") -> Path:
    for c, (name, sizes) in enumerate(classes.items()):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(sizes):
            picture(w, h, seed=100 * c + i).save(folder / f"img{i:02d}.{fmt}", quality=92)
    return root
