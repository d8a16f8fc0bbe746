"""The training inputs of Section 3.1: image folders, mean RGB and colour PCA, crops at scale S.

Read it top to bottom:

* :func:`scan` lists ``DIR/<split>/<class>/*`` into an :class:`ImageFolder` (sorted, so the same
  files always get the same indices and labels);
* :func:`colour_stats` measures the mean RGB and the PCA of the RGB pixels that the paper's
  preprocessing (mean subtraction) and colour shift need, on a sample of training images;
* :class:`Augment` (training) and :class:`Evaluate` (validation) say what a sample is;
  :class:`TrainDataset` and :class:`EvalDataset` make them: a uint8 ``(C, size, size)`` crop and
  the image's colour shift;
* :func:`collate` stacks samples into a :class:`Batch` (dropping unreadable images, whose indices
  it reports) and :func:`to_device` turns a batch into network inputs on the device:
  ``image - mean + shift`` on the 0-255 scale, the paper's only preprocessing.

The training transform is the paper's (and torchvision's standard one): rescale the image
isotropically so that its smallest side is S (fixed, or drawn per image from [S_min, S_max]:
scale jittering), take a random ``input_size`` square crop, flip it horizontally half of the
time, add a random PCA colour shift (Krizhevsky et al. 2012). It is computed without decoding or
resampling more pixels than needed (see :func:`render`):

1. JPEGs much larger than needed are decoded at 1/2, 1/4 or 1/8 of their size in the DCT domain
   (``Image.draft``): the largest reduction that keeps the smallest side ≥ S; other JPEGs go
   straight from libjpeg-turbo into a tensor (``torchvision.io.decode_jpeg``), sized from their
   frame header without PIL;
2. the image is rescaled with torch's uint8 antialiased bilinear kernel (torchvision's
   ``Resize`` on tensors: within 1 of PIL's, about twice as fast), then cropped and flipped;
   when the rescaled image is many times the crop (S jittered towards 512), PIL resamples the
   crop's region alone instead (``Image.resize(size, box=region)``, the same filter). Without
   step 1's reduction this is the standard pipeline's crop up to rounding, with it they differ
   by the DCT downscaling's small interpolation difference;
3. the crop stays a uint8 tensor, in the interleaved (H, W, C) memory decoders write (batches
   are channels-last); the float conversion, mean subtraction and the layout the model wants
   happen on the device (:func:`to_device`).

Randomness: everything random about sample ``index`` (S, the crop's position, the flip, the
colour shift's alphas) is drawn from ``numpy.random.default_rng((seed, epoch, index))``, never
from a global or per-worker generator, so a sample is the same whatever the number of processes
or DataLoader workers and whatever the order it is asked for in, and a resumed run sees the crops
it would have seen. :meth:`TrainDataset.draw` returns those draws.

Unreadable files (not an image, empty, truncated) never raise out of ``__getitem__``: the sample
comes back with ``ok=False`` and a zero image, :func:`collate` drops it and lists its index in
``Batch.broken``.
"""

from __future__ import annotations

import functools
import io
import math
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, model_validator

from .errors import SpecError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Augment",
    "Batch",
    "ColourStats",
    "Draw",
    "EvalDataset",
    "Evaluate",
    "ImageFolder",
    "Sample",
    "TrainDataset",
    "collate",
    "colour_stats",
    "crop_box",
    "image_files",
    "reference_image",
    "render",
    "rescaled_size",
    "scan",
    "stack_images",
    "to_device",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")

LAYOUT_HINT = "the layout is DIR/<split>/<class>/<image>, e.g. DIR/train/dog/0001.jpg and DIR/val/dog/0042.jpg"

DRAFT_FACTORS = (8, 4, 2)  # the DCT-domain reductions libjpeg offers through Image.draft
# Above this many crops' area, resampling the crop's region with PIL (box=) costs less than
# resampling the whole image with torch (tools/bench_data.py).
REGION_RESAMPLING_AREA = 4.0
WHOLE_FILE_BYTES = 256 * 1024  # read whole below this size; above, the first this many bytes for the header


def _mode(channels: int) -> str:
    if channels not in (1, 3):
        raise SpecError(
            f"images have 1 (gray) or 3 (RGB) channels, not {channels}",
            hint="use 'input: 224x224 RGB' or 'input: 224x224 gray' in the spec to train on image files",
        )
    return "L" if channels == 1 else "RGB"


# -- the folder ----------------------------------------------------------------------------


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


# -- mean RGB and colour PCA ------------------------------------------------------------------


class ColourStats(BaseModel):
    """Mean and principal components of the training pixels' colours, stored with the run as JSON.

    Conventions: ``mean`` per channel on the 0-255 scale; ``eigenvalues`` (descending) and
    ``eigenvectors`` (C×C, columns, unit length) of the channels' covariance, also computed on
    the 0-255 scale (so eigenvalues are in 0-255 units squared). For one channel the
    eigenvalue is the variance and the eigenvector [[1.0]].

    The colour shift (:meth:`shift`) is Krizhevsky et al.'s ``Σ αᵢ λᵢ pᵢ`` with λᵢ the
    eigenvalues for pixel values on the 0-1 scale, as AlexNet-style implementations compute it,
    returned on the 0-255 scale: ``P · (α ⊙ λ) / 255`` with λ in 0-255 units. (λ in 0-255
    units squared would make shifts of hundreds of levels.) For ImageNet-like photos, with a
    per-channel std of about 0.23 on the 0-1 scale and strongly correlated channels, λ₁ is
    about 0.15 there, so α ~ N(0, 0.1) moves colours by a few levels out of 255.
    """

    model_config = ConfigDict(frozen=True)

    mean: list[float]
    eigenvalues: list[float]
    eigenvectors: list[list[float]]
    images: int
    pixels: int

    @property
    def rms(self) -> float:
        """The RMS of the mean-subtracted pixel values (0-255 scale): what the network first sees."""
        return math.sqrt(sum(self.eigenvalues) / len(self.eigenvalues))

    @model_validator(mode="after")
    def _shapes(self) -> ColourStats:
        c = len(self.mean)
        square = len(self.eigenvectors) == c and all(len(row) == c for row in self.eigenvectors)
        if c < 1 or len(self.eigenvalues) != c or not square:
            raise ValueError(f"colour stats need C means, C eigenvalues and C×C eigenvectors (C = {c})")
        return self

    @property
    def channels(self) -> int:
        return len(self.mean)

    def shift(self, alpha: np.ndarray) -> np.ndarray:
        """The colour shift (float32, C) for one image's alphas (one per eigenvector), 0-255 scale."""
        vectors = np.asarray(self.eigenvectors, dtype=np.float64)
        values = np.asarray(self.eigenvalues, dtype=np.float64)
        return (vectors @ (np.asarray(alpha, dtype=np.float64) * values) / 255.0).astype(np.float32)


def worker_start_method(workers: int) -> str | None:
    """How DataLoader workers start: forked on Linux, as in any process torchrun starts.

    Processes that the elastic launcher spawns inherit "spawn" as their default, and a spawned
    worker imports torch and torchvision again, for every loader and epoch: a 2-process run on
    400 small images took 68 s instead of 22 s. Elsewhere, the platform's default.
    """
    return "fork" if workers > 0 and sys.platform == "linux" else None


def _thumbnail_pixels(path: str, mode: str, side: int) -> np.ndarray:
    """The image reduced to ≤ side px (DCT draft for JPEGs, then a box-filtered thumbnail), as (N, C) uint8."""
    with Image.open(path) as img:
        img.draft(mode, (side, side))
        if img.mode != mode:
            img = img.convert(mode)
        img.thumbnail((side, side), Image.Resampling.BOX, reducing_gap=None)
        pixels = np.asarray(img)
    return pixels.reshape(-1, 1 if mode == "L" else 3)


class _StatsImages(torch.utils.data.Dataset):
    """Per image: (ok, Σx, Σxxᵀ, pixel count), in float64 (exact: sums of integers < 2⁵³)."""

    def __init__(self, paths: Sequence[str], mode: str, side: int) -> None:
        self.paths, self.mode, self.side = list(paths), mode, side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[bool, np.ndarray, np.ndarray, int]:
        c = 1 if self.mode == "L" else 3
        try:
            x = _thumbnail_pixels(self.paths[index], self.mode, self.side).astype(np.float64)
        except Exception:  # noqa: BLE001 - any unreadable file is skipped, whatever PIL raises
            return False, np.zeros(c), np.zeros((c, c)), 0
        return True, x.sum(axis=0), x.T @ x, len(x)


def _unbatched(item):
    return item


def colour_stats(
    folder: ImageFolder,
    channels: int,
    *,
    max_images: int = 1000,
    seed: int = 0,
    workers: int = 0,
    side: int = 64,
) -> ColourStats:
    """Mean and colour PCA of the pixels of up to ``max_images`` training images.

    The images are a deterministic sample (``seed``), each reduced to at most ``side`` pixels
    along its longer side first (JPEGs decoded at reduced size), which keeps this to about a
    millisecond per image. The reduction averages neighbouring pixels: the mean is unchanged,
    the covariance loses the finest texture's share of the variance. Unreadable images are
    skipped. ``workers`` > 0 reads the images in that many processes (same result).
    """
    mode = _mode(channels)
    count = len(folder.samples)
    if count == 0:
        raise SpecError(f"{folder.root} holds no images to compute the mean colour from", hint=LAYOUT_HINT)
    if count <= max_images:
        chosen = np.arange(count)
    else:
        chosen = np.sort(np.random.default_rng(_entropy(seed)).choice(count, size=max_images, replace=False))
    dataset = _StatsImages([folder.samples[i][0] for i in chosen], mode, side)
    if workers > 0:
        items = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            collate_fn=_unbatched,
            multiprocessing_context=worker_start_method(workers),
        )
    else:
        items = (dataset[i] for i in range(len(dataset)))
    total, outer = np.zeros(channels), np.zeros((channels, channels))
    images = pixels = 0
    for ok, s, o, n in items:
        if ok:
            total += np.asarray(s)
            outer += np.asarray(o)
            images += 1
            pixels += int(n)
    if images == 0:
        raise SpecError(
            f"none of the {len(chosen)} images sampled from {folder.root} could be read",
            hint="check that the files are images (JPEG, PNG, ...) and not empty or truncated",
        )
    mean = total / pixels
    covariance = outer / pixels - np.outer(mean, mean)
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    # A deterministic sign: each eigenvector's largest component is positive.
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(channels)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    return ColourStats(
        mean=[float(v) for v in mean],
        eigenvalues=[float(v) for v in values],
        eigenvectors=[[float(v) for v in row] for row in vectors],
        images=images,
        pixels=pixels,
    )


# -- what a sample is --------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """The training transform of Section 3.1.

    ``scale``: (S, S) for a fixed training scale, (S_min, S_max) for scale jittering (S drawn
    uniformly per image, integers, both ends included). S is the smallest side of the rescaled
    image, S ≥ input_size. ``colour_std``: the std of the colour shift's alphas (0 disables it).
    """

    input_size: int
    scale: tuple[int, int]
    channels: int
    stats: ColourStats
    flip: bool = True
    colour_std: float = 0.1

    def __post_init__(self) -> None:
        _mode(self.channels)
        low, high = self.scale
        if not (self.input_size <= low <= high):
            raise SpecError(
                f"the training scale {low}:{high} does not fit {self.input_size}×{self.input_size} crops",
                hint=f"S is the smallest side of the rescaled image: it needs S_min ≥ {self.input_size} "
                f"and S_min ≤ S_max (the paper: 256, 384 or 256:512 for 224)",
            )
        if self.stats.channels != self.channels:
            raise SpecError(
                f"the colour statistics have {self.stats.channels} channels but the images {self.channels}",
                hint="compute the statistics for this spec's input (colour_stats(folder, channels))",
            )
        if self.colour_std < 0:
            raise SpecError(f"colour_std must be ≥ 0, not {self.colour_std}")


@dataclass(frozen=True)
class Evaluate:
    """Validation during training: rescale the smallest side to Q = ``scale``, crop the centre."""

    input_size: int
    scale: int
    channels: int

    def __post_init__(self) -> None:
        _mode(self.channels)
        if self.scale < self.input_size:
            raise SpecError(
                f"the test scale {self.scale} is smaller than the {self.input_size}×{self.input_size} crop",
                hint=f"Q is the smallest side of the rescaled image: it needs Q ≥ {self.input_size}",
            )


class Draw(NamedTuple):
    """The random choices for one training sample.

    ``left`` and ``top`` are uniform in [0, 1): the crop's position as a fraction of the room the
    rescaled image leaves (so they don't depend on the image's size, known only once it is read).
    """

    scale: int
    left: float
    top: float
    flip: bool
    alpha: np.ndarray  # (C,), one per eigenvector


class Sample(NamedTuple):
    image: torch.Tensor  # uint8 (C, input_size, input_size), interleaved (H, W, C) memory
    shift: torch.Tensor  # float32 (C,): the colour shift, 0-255 scale (zeros for evaluation)
    label: int
    ok: bool  # False: the file could not be read; the image is zeros and collate drops it
    index: int


class Batch(NamedTuple):
    images: torch.Tensor  # uint8 (N, C, H, W), channels-last memory
    shifts: torch.Tensor  # float32 (N, C)
    labels: torch.Tensor  # int64 (N,)
    indices: torch.Tensor  # int64 (N,): dataset indices
    broken: list[int]  # dataset indices of the unreadable images left out


# -- geometry and decoding ---------------------------------------------------------------------


def rescaled_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """The size with the smallest side ``scale``, rounded as torchvision's ``Resize(scale)`` rounds."""
    if width <= height:
        return scale, int(scale * height / width)
    return int(scale * width / height), scale


def crop_box(
    width: int, height: int, scale: int, size: int, left: float | None = None, top: float | None = None
) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) in the image rescaled to ``scale``.

    ``left``/``top`` in [0, 1) place it uniformly over ``RandomCrop``'s positions,
    ``floor(u · (room + 1))``; ``None`` centres it as ``CenterCrop`` does.
    """
    w, h = rescaled_size(width, height, scale)
    x = int(round((w - size) / 2.0)) if left is None else min(int(left * (w - size + 1)), w - size)
    y = int(round((h - size) / 2.0)) if top is None else min(int(top * (h - size + 1)), h - size)
    return x, y, x + size, y + size


def _draft_factor(width: int, height: int, scale: int) -> int:
    """The largest DCT reduction (8, 4, 2) that keeps the smallest side ≥ ``scale``, or 1."""
    for factor in DRAFT_FACTORS:
        if min(width, height) / factor >= scale:
            return factor
    return 1


def decode(
    path: str, scale: int, channels: int, *, threads: bool = False
) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    """The pixels, decoded no larger than rescaling to ``scale`` needs: (pixels, span, (width, height)).

    ``pixels`` is uint8 (C, h, w); ``span`` is how many of its columns and rows the image
    covers: (width / f, height / f) when a JPEG whose smallest side is ≥ 2·S was decoded at 1/f
    of its size (f = 2, 4, 8) in the DCT domain (``Image.draft``), where the last decoded column
    or row may be partly padding. Any other JPEG goes from torchvision's libjpeg-turbo decoder
    straight into a tensor (PIL's pixels, about 20% sooner with the conversion PIL needs), unless
    ``threads``: it holds the GIL, PIL does not. The rest goes through PIL. Gray from a colour
    JPEG is its luma. Raises what the decoders raise for bad files.
    """
    with closing(_File(path)) as file:
        return _decode(file, scale, channels, threads)


class _File:
    """An image file, read once. A plain JPEG's size comes from its frame header, so PIL parses
    only the files that need it (other formats, DCT reduction, region resampling). Files up to
    ``WHOLE_FILE_BYTES`` are read whole; of larger ones only the head, for the header: they are
    mostly photos to decode at reduced size, which PIL reads from the path in small chunks
    (reading 5 MB into fresh memory first costs more than a ms)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as file:
            self._raw = file.read() if os.fstat(file.fileno()).st_size <= WHOLE_FILE_BYTES else None
            head = self._raw if self._raw is not None else file.read(WHOLE_FILE_BYTES)
        self.jpeg_size = _plain_jpeg_size(head)
        self._image: Image.Image | None = None
        self.size = self.jpeg_size or self.image.size  # before any draft, which changes image.size

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            with open(self.path, "rb") as file:
                self._raw = file.read()
        return self._raw

    @property
    def image(self) -> Image.Image:
        if self._image is None:  # bytes already read: BytesIO shares them
            self._image = Image.open(self.path if self._raw is None else io.BytesIO(self._raw))
        return self._image

    def close(self) -> None:
        if self._image is not None:
            self._image.close()


def _plain_jpeg_size(raw: bytes | bytearray) -> tuple[int, int] | None:
    """(width, height) from the frame header of an 8-bit Huffman-coded JPEG with 1 or 3
    components (PIL's "L" and "RGB": what torchvision's decoder gives the same pixels for);
    None for anything else, including whatever cannot be parsed (PIL then has its say)."""
    if raw[:2] != b"\xff\xd8":
        return None
    i, end = 2, len(raw)
    while i + 4 <= end:
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            i += 2
        elif marker in (0xC0, 0xC1, 0xC2):  # baseline, extended sequential, progressive
            if i + 10 > end:
                return None
            bits, components = raw[i + 4], raw[i + 9]
            height, width = raw[i + 5] << 8 | raw[i + 6], raw[i + 7] << 8 | raw[i + 8]
            return (width, height) if bits == 8 and components in (1, 3) and width and height else None
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker in (0xD9, 0xDA):
            return None  # another kind of frame, or no frame before the end or the first scan
        else:
            i += 2 + (raw[i + 2] << 8 | raw[i + 3])  # a segment: skip it by its length
    return None


@functools.cache
def _torchvision_jpeg() -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """torchvision's JPEG decoder, ``decode(data, channels)``, imported on first use; None without it.

    Importing torchvision takes over a second (it brings torch._dynamo along), which processes
    that never decode this way need not spend: a launcher, evaluation. Deprecated since
    torchvision 0.29 (superseded by TorchCodec): without it, PIL decodes every JPEG.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # pragma: no cover - torchvision ≤ 0.29.1 is required today
        return None
    modes = {3: ImageReadMode.RGB, 1: ImageReadMode.GRAY}
    return lambda data, channels: decode_jpeg(data, mode=modes[channels])


def _decode(
    file: _File, scale: int, channels: int, threads: bool
) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    size = file.size
    if file.jpeg_size and _draft_factor(*size, scale) == 1 and not threads and (decode := _torchvision_jpeg()):
        raw = torch.frombuffer(bytearray(file.raw), dtype=torch.uint8)  # writable: no warning from torch
        return decode(raw, channels), size, size
    img, span = _pil_pixels(file.image, scale, channels)
    return _to_tensor(img), span, size


def _pil_pixels(img: Image.Image, scale: int, channels: int) -> tuple[Image.Image, tuple[float, float]]:
    """``img`` decoded by PIL (drafted as :func:`decode` says) in the spec's mode; and its span."""
    mode = _mode(channels)
    factor = _draft_factor(*img.size, scale)
    # Only JPEGs honour draft: a reduction by `factor` (and for gray, the luma alone).
    drafted = img.draft(mode, (img.size[0] // factor, img.size[1] // factor) if factor > 1 else None)
    span = drafted[1][2:] if drafted else img.size
    if img.mode != mode:
        img = img.convert(mode)  # before resampling: PIL palettes, 16-bit and CMYK need it
    return img, span


def _resized(pixels: torch.Tensor, span: tuple[float, float], width: int, height: int) -> torch.Tensor:
    """The first ``span`` columns and rows of ``pixels`` resampled to width × height.

    torchvision's ``Resize`` filter on tensors: bilinear with antialiasing, torch's uint8 kernel
    (which follows PIL's: within 1 of it). A fractional span (a drafted JPEG) goes through
    ``scale_factor``, which maps output pixel i to input position (i + ½) / scale − ½ exactly.
    Pixels in interleaved memory (as decoders write them) come back interleaved: the kernel
    works that way, and writing planar output would cost it half as much again.
    """
    rows, cols = pixels.shape[-2:]
    if (cols, rows) == span == (width, height):
        return pixels
    if (cols, rows) == span:
        size, factors = (height, width), None
    else:  # floor(rows · height / span) ≥ height as rows ≥ span; the nudge keeps rounding from losing one
        size, factors = None, (height / span[1] * (1 + 1e-9), width / span[0] * (1 + 1e-9))
    batch = pixels.permute(1, 2, 0)[None].permute(0, 3, 1, 2)  # N = 1 with channels-last strides, if (H, W, C)
    resized = torch.nn.functional.interpolate(
        batch, size, factors, mode="bilinear", antialias=True, align_corners=False, recompute_scale_factor=False
    )
    return resized[0, :, :height, :width]


def _interleaved(image: torch.Tensor, flip: bool) -> torch.Tensor:
    """``image`` (C, H, W), mirrored if ``flip``, in compact (H, W, C) memory: no view of a larger image.

    Samples keep the decoders' interleaved layout: copying it is a row-wise memcpy where a
    planar copy is a strided gather, about 10× slower for uint8.
    """
    if flip:
        image = image.flip(2)  # a copy, in the same layout
    return image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # no copy if already compact


def render(
    path: str, scale: int, size: int, left: float | None, top: float | None, flip: bool, channels: int
) -> torch.Tensor:
    """One crop: :func:`decode`, rescale so the smallest side is ``scale``, crop, flip.

    The same pixels, up to interpolation error, as :func:`reference_image` (PIL and torchvision's
    ``Resize`` on the whole full-size image). When the rescaled image is many times the crop's
    area (scale jittering up to 512), PIL resamples the crop's region alone (``box=``, the same
    filter), which then costs less than torch resampling the whole image. Returns uint8
    (C, size, size) in interleaved (H, W, C) memory; raises for bad files.
    """
    with closing(_File(path)) as file:
        width, height = file.size
        w, h = rescaled_size(width, height, scale)
        x0, y0, x1, y1 = crop_box(width, height, scale, size, left, top)
        if w * h > REGION_RESAMPLING_AREA * size * size:
            img, (span_w, span_h) = _pil_pixels(file.image, scale, channels)
            sx, sy = span_w / w, span_h / h  # decoded pixels per rescaled pixel
            # (clamped: x1 · sx can exceed the width by a rounding error, which PIL refuses)
            box = (x0 * sx, y0 * sy, min(x1 * sx, img.size[0]), min(y1 * sy, img.size[1]))
            crop = _to_tensor(img.resize((size, size), Image.Resampling.BILINEAR, box=box))
        else:
            pixels, span, _ = _decode(file, scale, channels, threads=False)
            crop = _resized(pixels, span, w, h)[:, y0:y1, x0:x1]
    return _interleaved(crop, flip)


def rescale(path: str, scale: int, channels: int) -> torch.Tensor:
    """The whole image with its smallest side rescaled to ``scale`` (Q at test time, Section 3.2).

    uint8 (C, H, W) in interleaved memory, resampled as in :func:`render`; decoded by PIL, so
    that threads can share the work (evaluation decodes in threads).
    """
    pixels, span, (width, height) = decode(path, scale, channels, threads=True)
    return _resized(pixels, span, *rescaled_size(width, height, scale))


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 (C, H, W) viewing an (H, W, C) array: no float conversion, no transposing copy."""
    array = np.array(img)  # writable (np.asarray of a PIL image is read-only)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


def reference_image(
    path: str, scale: int, size: int, left: float | None, top: float | None, flip: bool, channels: int
) -> torch.Tensor:
    """The straightforward pipeline :func:`render` must match (for tests and the benchmark).

    Decode the whole image, convert, rescale it whole with torchvision's ``Resize(scale)``
    (bilinear, antialiased), crop the same box, flip. uint8 (C, size, size).
    """
    from torchvision.transforms import functional as F

    with Image.open(path) as img:
        img = img.convert(_mode(channels))
    width, height = img.size
    x0, y0, x1, y1 = crop_box(width, height, scale, size, left, top)
    img = F.resize(img, scale, interpolation=F.InterpolationMode.BILINEAR)
    crop = img.crop((x0, y0, x1, y1))
    if flip:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _to_tensor(crop)


# -- datasets ----------------------------------------------------------------------------------


class PackedSamples:
    """(path, label) pairs packed in three numpy arrays, for datasets that loader workers read.

    A worker forked from the training process that reads a tuple of (path, label) tuples bumps
    each one's reference count, and so copies every page they live on: for ImageNet's 1.28
    million images about 125 MB per worker and epoch, times every worker of every process
    (tools/bench_memory.py). Reading numpy arrays writes nothing.
    """

    def __init__(self, samples: Sequence[tuple[str, int]]) -> None:
        encoded = [path.encode("utf-8", "surrogateescape") for path, _ in samples]
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._labels = np.array([label for _, label in samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> tuple[str, int]:
        start = int(self._ends[index - 1]) if index else 0
        path = self._blob[start : int(self._ends[index])].tobytes().decode("utf-8", "surrogateescape")
        return path, int(self._labels[index])


def _entropy(seed: int) -> int:
    return seed % 2**64  # SeedSequence wants non-negative integers


def _broken(channels: int, size: int, label: int, index: int) -> Sample:
    return Sample(
        torch.zeros((channels, size, size), dtype=torch.uint8), torch.zeros(channels), label, False, index
    )


class TrainDataset(torch.utils.data.Dataset):
    """Training samples: a random crop at a random (or fixed) scale, flip and colour shift.

    The sample for ``index`` is a pure function of (seed, epoch, index): :meth:`draw`.
    :meth:`set_epoch` before creating the epoch's DataLoader (workers copy the dataset).
    """

    def __init__(self, folder: ImageFolder, augment: Augment, seed: int) -> None:
        self.folder, self.augment, self.seed = folder, augment, seed
        self.samples = PackedSamples(folder.samples)  # what workers read: not folder.samples
        self.epoch = 0
        _torchvision_jpeg()  # imported once here, not by every loader worker that forks from this process

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self, index: int, epoch: int | None = None) -> Draw:
        """The random choices for sample ``index`` in ``epoch`` (by default the current one)."""
        augment = self.augment
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng((_entropy(self.seed), epoch, index))
        low, high = augment.scale
        scale = int(rng.integers(low, high + 1))
        left, top = float(rng.random()), float(rng.random())
        flip = bool(rng.random() < 0.5) and augment.flip
        alpha = rng.normal(0.0, 1.0, augment.channels) * augment.colour_std
        return Draw(scale, left, top, flip, alpha)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        path, label = self.samples[index]
        augment = self.augment
        draw = self.draw(index)
        try:
            image = render(path, draw.scale, augment.input_size, draw.left, draw.top, draw.flip, augment.channels)
        except Exception:  # noqa: BLE001 - PIL raises many types for bad files; report, never crash
            return _broken(augment.channels, augment.input_size, label, index)
        shift = torch.from_numpy(augment.stats.shift(draw.alpha))
        return Sample(image, shift, label, True, index)


class EvalDataset(torch.utils.data.Dataset):
    """Validation samples: the centre crop of the image rescaled to Q; no flip, no colour shift."""

    def __init__(self, folder: ImageFolder, evaluate: Evaluate) -> None:
        self.folder, self.evaluate = folder, evaluate
        self.samples = PackedSamples(folder.samples)  # what workers read: not folder.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        path, label = self.samples[index]
        e = self.evaluate
        try:
            image = render(path, e.scale, e.input_size, None, None, False, e.channels)
        except Exception:  # noqa: BLE001 - as in TrainDataset
            return _broken(e.channels, e.input_size, label, index)
        return Sample(image, torch.zeros(e.channels), label, True, index)


# -- batches -----------------------------------------------------------------------------------


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N, C, H, W) in channels-last memory from (C, H, W) images: a memcpy each when they are
    interleaved, as :func:`render` and :func:`rescale` return them."""
    return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)


def collate(samples: list[Sample]) -> Batch:
    """Stack the readable samples; the indices of the others go to ``Batch.broken``.

    The images stay interleaved, as decoders and the resampler write them (channels-last
    batches); :func:`to_device` chooses the layout on the device.
    """
    good = [s for s in samples if s.ok]
    broken = [int(s.index) for s in samples if not s.ok]
    if good:
        images = stack_images([s.image for s in good])
        shifts = torch.stack([s.shift for s in good]).float()
    else:
        c, h, w = samples[0].image.shape if samples else (0, 0, 0)
        images = torch.zeros((0, c, h, w), dtype=torch.uint8)
        shifts = torch.zeros((0, c))
    labels = torch.tensor([s.label for s in good], dtype=torch.int64)
    indices = torch.tensor([s.index for s in good], dtype=torch.int64)
    return Batch(images, shifts, labels, indices, broken)


def to_device(
    batch: Batch,
    stats: ColourStats,
    device: torch.device | str,
    *,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) on ``device``: ``image - mean + shift`` per image and channel, 0-255 scale.

    The paper's only preprocessing is subtracting the mean (no division by a std). The uint8
    images cross to the device (4× less traffic than floats) and get their float32 values and
    memory layout there, in one pass; ``dtype`` (e.g. bfloat16) is cast to last.
    """
    device = torch.device(device)
    images = batch.images.to(device, non_blocking=True)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    mean = torch.tensor(stats.mean, dtype=torch.float32, device=device)
    offset = (batch.shifts.to(device, non_blocking=True).float() - mean).view(*images.shape[:2], 1, 1)
    inputs = images.to(torch.float32, memory_format=layout).add_(offset)  # cast and layout in one pass
    if dtype != torch.float32:
        inputs = inputs.to(dtype)
    return inputs, batch.labels.to(device, non_blocking=True)
