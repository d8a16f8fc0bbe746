"""What one process trains and validates on: the image folders (scanned, their classes checked against
the spec), the batch (the paper's 256, or what a small training set needs), the colour statistics
(computed once, by rank 0, kept in the run folder), the datasets, and this process's share of every
step.

The data order is a function of (seed, epoch, index), never of the number of processes: each step's
global batch is the same images with one process or N, each taking its share in micro-batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import files
from ..data import colour, folders
from ..data import datasets as datalib
from ..data.loading import loader
from ..data.scales import TrainingScale
from ..errors import SpecError
from ..logs import log
from ..plan.batch import PAPER_BATCH, PAPER_LR, BatchSplit, default_batch, default_lr
from ..spec.spec import Spec
from . import runs
from .checkpointing import writing
from .classes import check_classes
from .config import TrainConfig
from .distributed import Distributed
from .runlog import RunLog


def scan(config: TrainConfig, spec: Spec, env: Distributed) -> tuple[folders.ImageFolder, folders.ImageFolder]:
    """DATA/train and DATA/val, their classes those of the spec's classifier (a SpecError that points at it)."""
    train = folders.scan(config.data, config.train_split, say=env.speaks)
    val = folders.scan(config.data, config.val_split, classes=train.classes, say=env.speaks)
    if env.main:
        folders.note_shared(train, val)
    check_classes(config, spec, train)
    return train, val


def with_batch_and_lr(config: TrainConfig, train: folders.ImageFolder, env: Distributed, log: RunLog) -> TrainConfig:
    """``config`` with its batch and its learning rate: those given, or the batch decided by the training set's
    size (the same in every process) and the rate by the batch (:func:`~vggspec.plan.batch.default_lr`), each
    said when it is not the paper's."""
    batch, lr = config.batch_size, config.lr
    if batch is None:
        images = len(train.samples)
        batch = default_batch(images, env.world)
        if batch != PAPER_BATCH:
            steps = images // PAPER_BATCH
            give = "less than one step" if steps == 0 else f"{steps} step{'s' if steps != 1 else ''}"
            log.note(f"batch {batch}: the paper's {PAPER_BATCH} would give {give} an epoch on {images} images "
                     "(--batch-size sets it)")  # fmt: skip
    if lr is None:
        lr = default_lr(batch)
        if batch != PAPER_BATCH:
            log.note(f"lr {lr:.3g}: the paper's {PAPER_LR:g} for a batch of {PAPER_BATCH}, times √({batch} / "
                     f"{PAPER_BATCH}) (--lr sets it)")  # fmt: skip
    return config.model_copy(update={"batch_size": batch, "lr": lr})


def steps_per_epoch(train: folders.ImageFolder, batch_size: int) -> int:
    """Whole batches in an epoch; a training set smaller than one batch is said before the statistics, which
    take minutes on a large set."""
    steps = len(train.samples) // batch_size
    if steps == 0:
        raise SpecError(
            f"{train.root} has {len(train.samples)} images, fewer than one batch of {batch_size}",
            hint="lower --batch-size",
        )
    return steps


def colour_stats(
    config: TrainConfig,
    spec: Spec,
    train: folders.ImageFolder,
    env: Distributed,
    log: RunLog,
    resumed: dict[str, Any] | None,
) -> colour.ColourStats:
    """Mean RGB and colour PCA of the training images: a resumed run's own; else computed by rank 0, written to
    RUN/colour_stats.json, and read there by every process."""
    if resumed is not None and "colour_stats" in resumed:
        return colour.ColourStats.model_validate_json(resumed["colour_stats"])
    path = Path(config.out) / runs.COLOUR_STATS
    if env.main:
        log.note(f"computing mean RGB and colour PCA from up to {config.stats_images} training images ...")
        stats = colour.colour_stats(
            train, spec.input.channels, max_images=config.stats_images, seed=config.seed, workers=config.workers
        )
        with writing(path.parent):
            files.write_text(path, stats.model_dump_json(indent=2))
    env.barrier()
    return colour.ColourStats.model_validate_json(path.read_text())


class TrainingData:
    """The training and validation sets of one process, and its share of every step's batch."""

    def __init__(
        self,
        train: folders.ImageFolder,
        val: folders.ImageFolder,
        *,
        spec: Spec,
        scale: TrainingScale,
        stats: colour.ColourStats,
        config: TrainConfig,
        env: Distributed,
        batches: BatchSplit,
    ) -> None:
        size, channels = spec.input.size, spec.input.channels
        augment = datalib.Augment(
            input_size=size, scale=scale, channels=channels, stats=stats, flip=config.flip, colour_std=config.colour_std
        )
        self.train_set = datalib.TrainDataset(train, augment, seed=config.seed)
        validate = datalib.Evaluate(input_size=size, scale=scale.middle, channels=channels)
        self.val_set = datalib.EvalDataset(val, validate)
        self.stats = stats
        self.steps_per_epoch = len(train.samples) // config.batch_size
        self.batch_size, self.seed, self.workers = config.batch_size, config.seed, config.workers
        self.env, self.batches = env, batches
        self.broken, self.broken_reported = 0, set[int]()  # this process's unreadable images, this epoch

    def epoch(self, epoch: int, from_step: int) -> torch.utils.data.DataLoader:
        """This process's micro-batches of ``epoch`` from step ``from_step`` on, in the order of (seed, epoch)."""
        self.train_set.set_epoch(epoch)
        if from_step == 0:
            self.broken = 0
        return self._loader(self.train_set, self.micro_batches(epoch, from_step))

    def micro_batches(self, epoch: int, from_step: int = 0) -> list[list[int]]:
        """This process's share of each global batch of ``epoch`` from ``from_step`` on (one image more for the
        first ``batch % world`` processes), in micro-batches: the order is keyed by seed and epoch alone."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=generator).tolist()
        env, batch, micro = self.env, self.batch_size, self.batches.micro
        out = []
        for step in range(from_step, self.steps_per_epoch):
            mine = order[step * batch : (step + 1) * batch][env.rank :: env.world]
            out.extend(mine[i : i + micro] for i in range(0, len(mine), micro))
        return out

    def validation(self) -> torch.utils.data.DataLoader:
        """This process's share of the validation images (every image once over the processes)."""
        indices = list(range(self.env.rank, len(self.val_set), self.env.world))
        micro = self.batches.micro
        return self._loader(self.val_set, [indices[i : i + micro] for i in range(0, len(indices), micro)])

    def skipped(self, broken: list[int]) -> None:
        """Count the unreadable images of a micro-batch, and name each once (every process names its own)."""
        self.broken += len(broken)
        for index in broken:
            if index not in self.broken_reported:
                self.broken_reported.add(index)
                log.warning(f"skipping an unreadable image: {self.train_set.folder.samples[index][0]}")

    def _loader(self, dataset: torch.utils.data.Dataset, batches: list[list[int]]) -> torch.utils.data.DataLoader:
        return loader(
            dataset,
            workers=self.workers,
            collate=datalib.collate,
            batches=batches,
            pin_memory=self.env.device.type == "cuda",
            seed=self.seed,
        )
