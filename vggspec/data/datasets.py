"""What a training or evaluation sample is, and how samples become a batch of network inputs.

Its own module because this is what the trainer asks of the data (the folder, the decoding and
the colour statistics are :mod:`vggspec.folders`, :mod:`vggspec.decoding` and
:mod:`vggspec.colour`):

* :class:`Augment` (training) and :class:`Evaluate` (validation) say what a sample is;
  :class:`TrainDataset` and :class:`EvalDataset` make them: a uint8 ``(C, size, size)`` crop and
  the image's colour shift;
* :func:`collate` stacks samples into a :class:`Batch` (dropping unreadable images, whose indices
  it reports) and :func:`to_device` turns a batch into network inputs on the device:
  ``image - mean + shift`` on the 0-255 scale, the paper's only preprocessing, or what other weights'
  :class:`~vggspec.data.preprocessing.Preprocessing` says (:func:`normalise`, which evaluation shares;
  the formula itself is :func:`~vggspec.data.preprocessing.normalised`, which the exports share).

The training transform is the paper's (and torchvision's standard one): rescale the image
isotropically so that its smallest side is S (fixed, or drawn per image from [S_min, S_max]:
scale jittering), take a random ``input_size`` square crop, flip it horizontally half of the
time, add a random PCA colour shift (Krizhevsky et al. 2012). :func:`vggspec.data.decoding.render`
computes the crop without decoding or resampling more pixels than needed.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..errors import SpecError
from .colour import ColourStats
from .decoding import centre_crop, jpeg_decoder, pil_mode, render
from .folders import ImageFolder
from .preprocessing import Preprocessing, normalised
from .scales import TrainingScale, check_test_scales

__all__ = [
    "Augment",
    "Batch",
    "Draw",
    "EvalDataset",
    "Evaluate",
    "Sample",
    "TrainDataset",
    "collate",
    "normalise",
    "stack_images",
    "to_device",
]


# -- what a sample is --------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """The training transform of Section 3.1.

    ``scale``: S, fixed, or for scale jittering [S_min, S_max] (S drawn uniformly per image,
    integers, both ends included). S is the smallest side of the rescaled image, S ≥ input_size.
    ``colour_std``: the std of the colour shift's alphas (0 disables it).
    """

    input_size: int
    scale: TrainingScale
    channels: int
    stats: ColourStats
    flip: bool = True
    colour_std: float = 0.1

    def __post_init__(self) -> None:
        pil_mode(self.channels)
        self.scale.check(self.input_size)
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
        pil_mode(self.channels)
        check_test_scales([self.scale], self.input_size)


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
        jpeg_decoder()  # its libraries loaded once here, not by every loader worker that forks from this process

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
    """Validation samples: the centre crop of the image rescaled to Q, as torchvision's evaluation
    transform makes it (:func:`~vggspec.data.decoding.centre_crop`); no flip, no colour shift."""

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
            image = centre_crop(path, e.scale, e.input_size, e.channels)
        except Exception:  # noqa: BLE001 - as in TrainDataset
            return _broken(e.channels, e.input_size, label, index)
        return Sample(image, torch.zeros(e.channels), label, True, index)


# -- batches -----------------------------------------------------------------------------------


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N, C, H, W) in channels-last memory from (C, H, W) images: a memcpy each when they are
    interleaved, as :func:`~vggspec.data.decoding.render` and :func:`~vggspec.data.decoding.rescale` return them."""
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


def normalise(
    images: torch.Tensor,
    preprocessing: Preprocessing,
    device: torch.device | str,
    *,
    shifts: torch.Tensor | None = None,
    memory_format: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """float32 network inputs on ``device``: ``(image · scale / 255 - mean) / std`` per channel, as the
    weights' :class:`~vggspec.data.preprocessing.Preprocessing` says; ``+ shift`` per image if given (0-255 scale,
    brought to the record's scale).

    The paper's only preprocessing is subtracting the mean on the 0-255 scale (no division by a std);
    torchvision's weights want 0-1 values divided by ImageNet's std. Training (:func:`to_device`) and
    evaluation both get their inputs here, through the one formula the exports use too
    (:func:`~vggspec.data.preprocessing.normalised`: ``(image - pixel_mean) · pixel_factor``). The uint8
    ``images`` (N, C, H, W) cross to the device (4× less traffic than floats) and get their float32 values
    and ``memory_format`` there, in one pass. A shift (N, C) is taken off the mean, not added to every
    pixel: ``(image - (pixel_mean - shift)) · pixel_factor``, one rounding per pixel as without a shift
    (the paper's factor, 1, adds none).
    """
    device = torch.device(device)
    images = images.to(device, non_blocking=True)
    mean = torch.tensor(preprocessing.pixel_mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    factor = torch.tensor(preprocessing.pixel_factor, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    if shifts is not None:  # on the shift's scale, 0-255
        mean = mean - shifts.to(device, non_blocking=True).float().view(*images.shape[:2], 1, 1)
    return normalised(images.to(torch.float32, memory_format=memory_format), mean, factor)


def to_device(
    batch: Batch,
    preprocessing: Preprocessing,
    device: torch.device | str,
    *,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) on ``device``: ``image - mean + shift`` per image and channel, scaled as the record says.

    :func:`normalise` with the batch's colour shifts, in the layout the model wants;
    ``dtype`` (e.g. bfloat16) is cast to last.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = normalise(batch.images, preprocessing, device, shifts=batch.shifts, memory_format=layout)
    if dtype != torch.float32:
        inputs = inputs.to(dtype)
    return inputs, batch.labels.to(device, non_blocking=True)
