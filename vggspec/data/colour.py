"""The colour statistics of the training images: mean RGB and colour PCA (Section 3.1).

Its own module because they are measured once per run, on a sample of the training folder, and
then travel with the run (JSON in the run folder and the checkpoint): :func:`colour_stats`
measures them; :class:`ColourStats` holds the mean that the paper's only preprocessing (mean
subtraction) needs and the principal components that the colour shift (Krizhevsky et al. 2012)
draws from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import SpecError
from .decoding import pil_mode, thumbnail
from .folders import LAYOUT_HINT, ImageFolder
from .loading import loader

__all__ = ["ColourStats", "colour_stats"]


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

    @property
    def std(self) -> list[float]:
        """Each channel's standard deviation (0-255 scale): the diagonal of the covariance ``P Λ Pᵀ``."""
        return [
            math.sqrt(sum(row[k] ** 2 * value for k, value in enumerate(self.eigenvalues))) for row in self.eigenvectors
        ]

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


class _StatsImages(torch.utils.data.Dataset):
    """Per image: (ok, Σx, Σxxᵀ, pixel count), in float64 (exact: sums of integers < 2⁵³)."""

    def __init__(self, paths: Sequence[str], channels: int, side: int) -> None:
        self.paths, self.channels, self.side = list(paths), channels, side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[bool, np.ndarray, np.ndarray, int]:
        c = self.channels
        try:  # (C, h, w) in interleaved memory → (h·w, C), no copy
            x = thumbnail(self.paths[index], self.side, c).permute(1, 2, 0).reshape(-1, c).numpy().astype(np.float64)
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
    along its longer side first (:func:`~vggspec.data.decoding.thumbnail`: JPEGs decoded at reduced
    size, every image as viewers show it), which keeps this to about a millisecond per image. The
    reduction averages neighbouring pixels: the mean is unchanged, the covariance loses the finest
    texture's share of the variance. Unreadable images are skipped. ``workers`` > 0 reads the
    images in that many processes (same result).
    """
    pil_mode(channels)  # a SpecError for channels other than 1 and 3
    count = len(folder.samples)
    if count == 0:
        raise SpecError(f"{folder.root} holds no images to compute the mean colour from", hint=LAYOUT_HINT)
    if count <= max_images:
        chosen = np.arange(count)
    else:
        rng = np.random.default_rng(seed % 2**64)  # SeedSequence wants non-negative integers
        chosen = np.sort(rng.choice(count, size=max_images, replace=False))
    dataset = _StatsImages([folder.samples[i][0] for i in chosen], channels, side)
    if workers > 0:
        items = loader(dataset, workers=workers, collate=_unbatched)
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
