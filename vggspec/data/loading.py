"""Reading a dataset in worker processes: the one place a ``DataLoader`` is made (training, validation,
colour statistics), so that every reader starts its workers the same way."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch


def worker_start_method(workers: int) -> str | None:
    """How DataLoader workers start: forked on Linux, as in any process torchrun starts.

    Processes that the elastic launcher spawns inherit "spawn" as their default, and a spawned
    worker imports torch and torchvision again, for every loader and epoch: a 2-process run on
    400 small images took 68 s instead of 22 s. Elsewhere, the platform's default.
    """
    return "fork" if workers > 0 and sys.platform == "linux" else None


def loader(
    dataset: torch.utils.data.Dataset,
    *,
    workers: int,
    collate: Callable[[Any], Any],
    batches: Iterable[Sequence[int]] | None = None,
    pin_memory: bool = False,
    seed: int = 0,
) -> torch.utils.data.DataLoader:
    """``dataset`` read by ``workers`` processes (0: in this one), in the given ``batches`` of indices (None:
    an item at a time, unbatched).

    Every loader has a generator of its own (``seed``): a DataLoader otherwise draws its workers' base seed
    from the global RNG, which the initial weights and dropout also use, so a resumed run would drift from
    the original, and a run whose colour statistics were read by workers would start from other weights
    than one that read them in this process."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        batch_size=None if batches is None else 1,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        multiprocessing_context=worker_start_method(workers),
        generator=torch.Generator().manual_seed(seed),
    )
