"""Batch arithmetic: the global batch, the learning rate that goes with it, and how the batch splits over
processes and micro-batches.

The trainer, the training-step budget (``analyze --train``) and the run log all count images the same
way, from here. Torch-free.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..errors import SpecError

PAPER_BATCH = 256
# A default batch leaves at least this many steps in an epoch: at 256, a folder of 400 images took one
# step an epoch, and the plateau schedule had spent its three drops before anything was learned.
MIN_STEPS_PER_EPOCH = 20
MIN_BATCH = 16  # at 8, A-narrow-32 diverged at the paper's lr of 10⁻² (before the lr followed the batch)
PAPER_LR = 1e-2  # the paper's rate, for its batch of PAPER_BATCH


def default_batch(images: int, world: int = 1) -> int:
    """The paper's 256, or for a training set too small for it, the largest power of two (at least
    ``MIN_BATCH``) that still gives ``MIN_STEPS_PER_EPOCH`` steps an epoch; rounded up to split
    evenly over ``world`` processes."""
    batch = PAPER_BATCH
    while batch > MIN_BATCH and images // batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return -(-batch // world) * world


def default_lr(batch: int) -> float:
    """The paper's 10⁻² for its batch of 256, times the square root of ``batch`` / 256 (Krizhevsky 2014, "One weird
    trick"; Hoffer et al. 2017): each step's noise as large as in the paper's recipe, whatever the batch. A small
    training set gets a small batch (:func:`default_batch`), and at 10⁻² and a batch of 16 A-narrow-32 learned a
    folder of 256 shapes and then lost it in one epoch, as one batch's large gradient, carried on by the
    momentum, threw the weights out; at 2.5·10⁻³ it learned the folder (0 to 6% error on two seeds). In proportion
    to the batch (6.25·10⁻⁴, Goyal et al. 2017), it was as stable but learned too slowly for the plateau schedule
    (28% on one of the seeds, where it stopped; tools/bench_defaults.py, BENCHMARKS.md)."""
    return PAPER_LR * math.sqrt(batch / PAPER_BATCH)


class BatchSplit(NamedTuple):
    """How one of several processes takes its share of every global batch."""

    share: int  # images this process takes of each step
    micro: int  # images per forward pass
    per_step: int  # forward passes per step, their gradients accumulated


def batch_shares(batch: int, world: int) -> tuple[int, int]:
    """The fewest and the most images a process takes of a batch split over ``world`` processes: equal when
    ``world`` divides the batch, else one apart (the first ``batch % world`` processes take one more)."""
    if batch < world:
        raise SpecError(
            f"a batch of {batch} cannot be split over {world} processes: each needs at least one image",
            hint="a larger batch, or fewer processes",
        )
    return batch // world, -(-batch // world)


def shares_text(batch: int, world: int) -> str:
    """``64``, or ``85–86`` where the shares differ."""
    low, high = batch_shares(batch, world)
    return f"{high}" if low == high else f"{low}–{high}"


def batch_split(batch: int, world: int, micro: int | None, rank: int = 0) -> BatchSplit:
    """Process ``rank``'s part of a global ``batch`` over ``world`` processes (one image more for the first
    ``batch % world``), in micro-batches of at most ``micro`` images (None: the whole share a pass)."""
    low, high = batch_shares(batch, world)
    share = high if rank < batch % world else low
    micro = min(micro or high, share)
    return BatchSplit(share, micro, math.ceil(share / micro))
