"""What updates the weights, and when the rate falls: Section 3.1's SGD (momentum, weight decay) over
parameter groups, the plateau schedule (the rate divided by 10 when validation accuracy stops
improving, at most three times), the AMP loss scaler, and :class:`TrainingState`, which carries them
and the run's position in every checkpoint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ..nn.compiler import layer_of
from .config import TrainConfig

# Below these shares of chance's training loss (ln classes) or validation error (1 - 1/classes), the
# network has begun to learn.
LEARNING_BEGAN, LEARNING_BEGAN_ERROR = 0.9, 0.7


def param_groups(model: nn.Module, config: TrainConfig, new_layers: Collection[str]) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, from the settings and the new layers alone, so that a resumed run
    rebuilds them as they were: frozen parameters (no gradient) left out, the ``new_layers`` at
    ``new_layer_lr_mult`` times the lr (``lr_mult`` in the group), vectors (biases, batch norm's scale and
    shift) without weight decay under ``--no-decay-biases``. The base lr's decayed group comes first."""
    if config.lr is None:
        raise ValueError("the default lr is decided by the batch: resolve it first (training_data.with_batch_and_lr)")
    new = set(new_layers)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        mult = config.new_layer_lr_mult if layer_of(name) in new else 1.0
        groups.setdefault((mult, config.decay_biases or param.ndim > 1), []).append(param)
    order = sorted(groups, key=lambda key: (key[0] != 1.0, not key[1]))
    return [
        {"params": groups[mult, decay], "lr": config.lr * mult, "lr_mult": mult}
        | ({} if decay else {"weight_decay": 0.0})
        for mult, decay in order
    ]


@dataclass
class TrainingState:
    """What a checkpoint carries, besides the weights, to continue a run bit for bit.

    One field a piece, saved by :meth:`state_dict` and restored by :meth:`load_state_dict`: a new
    piece of training state is a new field, and nothing else. Objects with a ``state_dict`` of
    their own (the optimizer, the plateau schedule, the AMP scaler) are saved through it. A
    checkpoint written before a field existed leaves that field at its default.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the epoch under way
    loss_sum: float = 0.0  # the global losses of those steps: a resumed epoch's train_loss counts them
    top1_wrong: int = 0  # of the images those steps trained on, those whose top score was not their label
    images_seen: int = 0  # the images those steps trained on (unreadable ones left out): train_top1_err's count
    history: list[dict[str, Any]] = field(default_factory=list)  # a record per finished epoch
    best: dict[str, Any] | None = None  # the record of the best epoch so far
    new_layers: list[str] = field(default_factory=list)  # what --weights left new: --new-layer-lr-mult's layers
    learning_began: int | None = None  # the first epoch whose loss or error fell clearly below chance's
    stopped: str | None = None  # "plateau": the run ended before --epochs (:meth:`step_schedule`), and trains no more

    @classmethod
    def start(
        cls, model: nn.Module, config: TrainConfig, new_layers: list[str], device: torch.device
    ) -> TrainingState:
        """A run's first state: SGD over :func:`param_groups`, the plateau schedule (each group's rate falls to at
        most ``lr_drops`` drops), and the loss scaler, on for fp16 alone."""
        groups = param_groups(model, config, new_layers)
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_lr=[group["lr"] * config.lr_factor**config.lr_drops * (1 - 1e-6) for group in groups],
        )
        scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        return cls(optimizer, scheduler, scaler, new_layers=new_layers)

    @property
    def lr(self) -> float:
        """The base lr, as the schedule has it now (were group 0 the new layers', divided by their multiplier)."""
        group = self.optimizer.param_groups[0]
        return group["lr"] / group.get("lr_mult", 1.0)

    def step_schedule(self, accuracy: float) -> bool:
        """The plateau schedule stepped with an epoch's validation accuracy. True when it found a plateau with no
        drop left: the lr is at its floor (the ``lr_drops`` drops made) and the epochs since the last drop, or
        since the last better accuracy, have reached ``patience`` + 1, where ReduceLROnPlateau would lower the
        rate once more. Its own counts decide (a better accuracy is one by more than its relative threshold)."""
        scheduler, groups = self.scheduler, self.optimizer.param_groups
        at_floor = all(group["lr"] * scheduler.factor < floor for group, floor in zip(groups, scheduler.min_lrs))
        best_before = scheduler.best
        scheduler.step(accuracy)
        # On a plateau the schedule lowers the rate (to its floor at most) and counts its bad epochs from 0 again;
        # a better accuracy would have replaced its best. Cooldown is 0: nothing else resets the count.
        plateau = scheduler.num_bad_epochs == 0 and scheduler.best == best_before
        return at_floor and plateau

    def end_epoch(self) -> None:
        """The epoch under way is finished: the next begins at its first step, with nothing counted."""
        self.epoch, self.step, self.loss_sum, self.top1_wrong, self.images_seen = self.epoch + 1, 0, 0.0, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {f.name: _saved(getattr(self, f.name)) for f in fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name not in state:
                continue
            current = getattr(self, f.name)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[f.name])
            else:
                setattr(self, f.name, copy.deepcopy(state[f.name]))


def _saved(value: Any) -> Any:
    return value.state_dict() if hasattr(value, "state_dict") else value


def has_begun_to_learn(train_loss: float, top1: float, classes: int) -> bool:
    """Whether an epoch says the network has begun to learn: its training loss clearly below that of a
    network that knows nothing (ln classes), or its validation error clearly below chance's (dropout
    and augmentation keep the training loss up for a while). Until then the plateau schedule waits: its
    drops would come before the first improvement (a narrow deep network sits at chance for epochs
    first) and leave the rate too small to ever start. On ImageNet the loss is expected to pass within
    the first epochs (below 6.2, 0.9 × ln 1000), long before the paper's first drop (not measured here)."""
    if classes < 2:
        return True
    chance_error = 1.0 - 1.0 / classes
    return train_loss < LEARNING_BEGAN * math.log(classes) or top1 < LEARNING_BEGAN_ERROR * chance_error
