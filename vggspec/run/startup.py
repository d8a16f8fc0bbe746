"""A run's start, before any of its processes: which settings it runs with (a resumed run's own, a
restarted one's), its spec (with the classes of ``--num-classes``: :mod:`.classes`) and its training scale S,
read once here, and what cannot work, refused now rather than after the minutes of colour statistics.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.scales import TrainingScale
from ..errors import CheckpointError, SpecError
from ..logs import log
from ..nn.checkpoint import read_checkpoint
from ..spec.parser import load
from ..spec.spec import Spec
from . import runs
from .classes import with_classes
from .config import TrainConfig, validated
from .distributed import Attempt
from .runs import checkpoint_path
from .training_model import frozen_layers

NOT_THE_RUNS = ("spec", "out", "resume", "progress")  # settings of this invocation, not of the run
# What a resumed run may change: where the data is, how long, and how the work is done. The rest is
# its recipe, which its optimizer, schedule and data position carry on (a new --lr would be ignored).
CHANGEABLE_ON_RESUME = (
    "data", "epochs", "early_stop", "micro_batch", "gpus", "nproc", "max_restarts", "workers", "amp", "channels_last",
    "sync_bn", "deterministic", "checkpoint_every", "compile",
)  # fmt: skip
# What each machine of several may set for itself: where its copy of the data is, how its processes load and
# compute. The rest, and the spec, every process must share (:meth:`Distributed.agree`).
PER_MACHINE = (
    "spec", "data", "micro_batch", "gpus", "nproc", "max_restarts", "rdzv_timeout", "workers", "channels_last",
    "compile", "progress",
)  # fmt: skip


def prepare(config: TrainConfig, given: set[str]) -> tuple[TrainConfig, Spec, TrainingScale]:
    """The settings the run goes with, its spec and its S: a run started again continues (:func:`restarted`),
    a resumed one keeps its recipe but for what may change (:func:`as_started`), and what cannot work is a
    SpecError now. ``given``: the settings the user gave (the rest of a resumed run's are its own)."""
    config = restarted(config)
    config = config.model_copy(update={"spec": config.spec_file()})
    spec = load(config.spec)
    config = config.model_copy(update={"out": config.out or str(runs.new_run_folder(config.spec))})
    if config.resume:
        config = as_started(config, given)
    spec = with_classes(config, spec)
    scale = config.training_scale(spec.input.size)  # a --scale that cannot work is said now, not after the statistics
    frozen_layers(spec, config.freeze)  # so is a --freeze naming no layer
    _check_fine_tuning(config)
    _check_devices(config)
    _check_start_files(config)
    return config, spec, scale


def restarted(config: TrainConfig, *, restart: bool | None = None) -> TrainConfig:
    """A process that torchrun or :func:`.distributed.launch` started again continues the run from its last
    checkpoint (if the first start wrote one): the command line, the same at every start, does not say --resume.
    Started again: after a process died (a ``restart``: this one's, by default), or in the torchrun job
    (``--rdzv-id``) that wrote it, whose restarts for a machine joining torchrun does not count."""
    last = Path(config.out or ".") / runs.LAST
    if config.resume or not config.out or not last.exists():
        return config
    attempt = Attempt.current()
    if (attempt.restarts > 0 if restart is None else restart) or (attempt.job and _job_of(last) == attempt.job):
        return config.model_copy(update={"resume": True})
    return config


def _job_of(checkpoint: Path) -> str | None:
    """The torchrun job (``--rdzv-id``) that wrote ``checkpoint``, if it said one."""
    try:
        return read_checkpoint(checkpoint, mmap=True).get("torchrun_job")
    except SpecError:  # said when it is resumed, or refused
        return None


def as_started(config: TrainConfig, given: set[str]) -> TrainConfig:
    """The run's settings from its last checkpoint, but for those ``given`` that it may change."""
    path = Path(config.out) / runs.LAST  # there: TrainConfig.spec_file checked
    data = read_checkpoint(path, mmap=True)  # its entries checked: 'config' is a mapping of names
    if "config" not in data:
        raise CheckpointError(f"{path} holds no settings ('config'): it was not written by vggspec train")
    try:
        started = validated(TrainConfig, data["config"], "training")
    except SpecError as err:  # one line: "invalid training settings: lr: Input should be ..."
        raise CheckpointError(f"{path} is corrupt: its 'config' holds {err.message}") from None
    changes = {
        key: getattr(config, key)
        for key in sorted(given)
        if key not in NOT_THE_RUNS and getattr(config, key) != getattr(started, key)
    }
    if fixed := [key for key in changes if key not in CHANGEABLE_ON_RESUME]:
        flags = ", ".join(f"--{key.replace('_', '-')} {_shown(getattr(started, key))}" for key in fixed)
        raise SpecError(
            f"{config.out} was started with {flags}: a resumed run keeps its recipe",
            hint="leave those settings out to continue the run as it was, or start a new run from its weights "
            f"with the new settings: vggspec train SPEC --weights {config.out} --out NEW_RUN ...",
        )
    if changes and os.environ.get("RANK", "0") == "0":
        changed = ", ".join(f"{key} {_shown(getattr(started, key))} → {_shown(v)}" for key, v in changes.items())
        log.info(f"note: resuming {config.out} with {changed}")
    return started.model_copy(update={**changes, **{key: getattr(config, key) for key in NOT_THE_RUNS}})


def _shown(value: object) -> str:
    return "(not set)" if value is None else str(value)


def _check_fine_tuning(config: TrainConfig) -> None:
    """--new-layer-lr-mult without --weights is refused, not ignored: with no weights loaded no layer is new,
    so the multiplier would silently do nothing while its user believes it does something."""
    if config.new_layer_lr_mult != 1 and not config.weights:
        raise SpecError(
            f"--new-layer-lr-mult {config.new_layer_lr_mult:g} applies to the layers --weights leaves new: "
            "without --weights there are none (give --weights, or leave the multiplier out)"
        )


def _check_devices(config: TrainConfig) -> None:
    """Processes on GPUs or on the CPU, not both; SyncBatchNorm on GPUs only (the GPUs here: :class:`.Launcher`)."""
    if config.gpus and config.nproc > 1:
        raise SpecError("--gpus and --nproc exclude each other: --gpus N runs one process per GPU")
    if not config.gpus and config.sync_bn:
        raise SpecError(
            "--sync-bn needs --gpus: torch's SyncBatchNorm runs on CUDA only",
            hint="CPU processes (--nproc) normalise each with its own share of the batch; leave --sync-bn out",
        )


def _check_start_files(config: TrainConfig) -> None:
    """The weights to start from exist: said now, not after the minutes of colour statistics."""
    from ..nn.pretrained import is_pretrained_name, parse_name

    if is_pretrained_name(config.weights) and not config.resume:
        parse_name(config.weights)  # a name torchvision has; downloaded (or read from the cache) when built
    for flag, path in (("--init-from", config.init_from), ("--weights", config.weights)):
        if path and not config.resume and not is_pretrained_name(path) and not checkpoint_path(path).is_file():
            raise SpecError(
                f"{flag} {path}: no such file", hint="give a checkpoint or state-dict file, or a run folder"
            )
