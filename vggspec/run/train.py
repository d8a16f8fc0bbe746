"""The shared trainer: Section 3.1's recipe for any spec, on a CPU, one GPU or many.

Read it top to bottom: :class:`TrainConfig` (every value of the recipe, overridable),
:func:`train` (launches one process, or N data-parallel ones through torch's elastic launcher),
:func:`run_worker` (what each process does), and the epoch loop in :func:`_train_epoch`.

The recipe: softmax cross-entropy, SGD with momentum 0.9 and weight decay 5e-4, a global batch
of 256 whatever the number of processes (each process takes its share of every batch, in
micro-batches with gradient accumulation), learning rate 1e-2 divided by 10 when validation
accuracy stops improving (at most three times), at most 74 epochs.

Never losing work: checkpoints hold everything needed to continue bit for bit (weights,
optimizer, plateau schedule, AMP scaler, RNG states, the position in the epoch, the spec and the
configuration), are written atomically every epoch and every ``checkpoint_every`` steps, and
``--resume`` continues from ``RUN/last.pt``. SIGTERM/SIGINT save and exit; a NaN loss stops the
run and keeps the last good checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import files
from ..data import colour, folders
from ..data import datasets as datalib
from ..data.loading import loader
from ..data.preprocessing import Preprocessing
from ..errors import CheckpointError, ExitCode, ProcessLost, SpecError, did_you_mean, out_of_memory
from ..logs import log
from ..nn.checkpoint import (
    atomic_link,
    check_weights,
    checkpoint_spec,
    read_checkpoint,
    save_checkpoint,
    spec_hash,
    verify_checksums,
)
from ..nn.compiler import VGG, build, layer_of
from ..plan.batch import PAPER_BATCH, default_batch, shares_text
from ..plan.budget import TrainSettings, auto_micro_batch
from ..spec.analysis import (
    EXPLODING_SCALE,
    FADING_SCALE,
    PIXEL_RMS,
    WIDE,
    analyze,
    auto_init,
    initial_scale,
    initial_scales,
    resolve_init,
    scale_trouble,
    standardises,
    widest,
)
from ..spec.graph import layer_nodes, to_graph
from ..spec.parser import load
from ..spec.spec import Spec
from ..units import human_bytes
from . import runs
from .config import TrainConfig, validated
from .distributed import (
    Attempt,
    Distributed,
    await_the_launcher,
    lost_contact,
    several_machines,
    under_torchrun,
)
from .launch import Launcher
from .metrics import top_k_correct
from .runlog import RunLog
from .runs import checkpoint_path

# -- launching ---------------------------------------------------------------------------


def train(config: TrainConfig) -> Path:
    """Train as configured; returns the run directory. Launches N processes when asked to.

    With ``resume``, the settings not given (not in ``config.model_fields_set``) are the run's own,
    as its checkpoint holds them: ``--resume`` alone continues the run as it was started.
    """
    given = set(config.model_fields_set)
    launcher = Launcher("train", config)
    if (under_torchrun() or launcher.machines.several) and not config.out:  # each machine would name its own folder
        raise SpecError(
            f"{'under torchrun' if under_torchrun() else 'with --nnodes'}, give --out RUN: one run folder that every "
            "machine reaches by that path",
            hint="a shared folder (NFS, a cluster file system): checkpoints go there, and restarts resume from it",
        )
    with launcher.checking():  # what this machine finds wrong before it starts its processes, the others are told
        config = _restarted(config)
        config = config.model_copy(update={"spec": config.spec_file()})
        spec = load(config.spec)
        config = config.model_copy(update={"out": config.out or str(runs.new_run_folder(config.spec))})
        if config.resume:
            config = _as_started(config, given)
        config.training_scale(spec.input.size)  # a --scale that cannot work is said now, not after the statistics
        frozen_layers(spec, config.freeze)  # so is a --freeze naming no layer
        _check_fine_tuning(config)
        _check_devices(config)
        _check_start_files(config)
        world = launcher.processes(config.gpus, config.nproc, given)
    try:
        launcher.start(run_worker, config.model_dump(), world=world, max_restarts=config.max_restarts)
    except ProcessLost as lost:
        raise ProcessLost(
            f"{lost.message}: training stopped; {_kept(Path(config.out))}",
            hint=f"continue with: vggspec train --out {config.out} --resume",
        ) from None
    return Path(config.out)


def _restarted(config: TrainConfig, *, restart: bool | None = None) -> TrainConfig:
    """A process that torchrun or :func:`launch` started again continues the run from its last checkpoint (if the
    first start wrote one): the command line, the same at every start, does not say --resume. Started again: after
    a process died (a ``restart``: this one's, by default), or in the torchrun job (``--rdzv-id``) that wrote it,
    whose restarts for a machine joining torchrun does not count."""
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


_NOT_THE_RUNS = ("spec", "out", "resume", "progress")  # settings of this invocation, not of the run
# What a resumed run may change: where the data is, how long, and how the work is done. The rest is
# its recipe, which its optimizer, schedule and data position carry on (a new --lr would be ignored).
_CHANGEABLE_ON_RESUME = (
    "data", "epochs", "micro_batch", "gpus", "nproc", "max_restarts", "workers", "amp", "channels_last", "sync_bn",
    "deterministic", "checkpoint_every",
)  # fmt: skip
# What each machine of several may set for itself: where its copy of the data is, how its processes load and
# compute. The rest, and the spec, every process must share (:meth:`Distributed.agree`).
_PER_MACHINE = (
    "spec", "data", "micro_batch", "gpus", "nproc", "max_restarts", "rdzv_timeout", "workers", "channels_last",
    "progress",
)


def _as_started(config: TrainConfig, given: set[str]) -> TrainConfig:
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
        if key not in _NOT_THE_RUNS and getattr(config, key) != getattr(started, key)
    }
    if fixed := [key for key in changes if key not in _CHANGEABLE_ON_RESUME]:
        flags = ", ".join(f"--{key.replace('_', '-')} {_shown(getattr(started, key))}" for key in fixed)
        raise SpecError(
            f"{config.out} was started with {flags}: a resumed run keeps its recipe",
            hint="leave those settings out to continue the run as it was, or start a new run from its weights "
            f"with the new settings: vggspec train SPEC --weights {config.out} --out NEW_RUN ...",
        )
    if changes and os.environ.get("RANK", "0") == "0":
        changed = ", ".join(f"{key} {_shown(getattr(started, key))} → {_shown(v)}" for key, v in changes.items())
        log.info(f"note: resuming {config.out} with {changed}")
    return started.model_copy(update={**changes, **{key: getattr(config, key) for key in _NOT_THE_RUNS}})


def frozen_layers(spec: Spec, freeze: str | None) -> list[str]:
    """The layers ``--freeze LAYER`` holds fixed: every one up to and including LAYER (``features``: every
    conv and pool layer), by the Caffe names ``analyze`` shows. A name the spec has not, or one that leaves
    nothing to train, is a SpecError: said before any image is read."""
    if freeze is None:
        return []
    graph = to_graph(spec)
    names = layer_nodes(graph)
    if freeze == "features":
        spatial = [i for i, name in enumerate(names) if graph.nodes[name]["layer"].SPATIAL]
        last = spatial[-1] if spatial else -1
    elif freeze in names:
        last = names.index(freeze)
    else:
        close = did_you_mean(freeze, ["features", *names])
        guess = f"did you mean {close}? " if close else ""
        raise SpecError(
            f"--freeze {freeze}: {spec.display_name} has no such layer; {guess}it has features, {', '.join(names)}"
        )
    if not any(layer.params for layer in analyze(spec).layers[last + 1 :]):
        raise SpecError(f"--freeze {freeze} leaves no layer of {spec.display_name} to train: freeze fewer layers")
    return names[: last + 1]


def _check_fine_tuning(config: TrainConfig) -> None:
    """--new-layer-lr-mult without --weights is refused, not ignored: with no weights loaded no layer is new,
    so the multiplier would silently do nothing while its user believes it does something."""
    if config.new_layer_lr_mult != 1 and not config.weights:
        raise SpecError(
            f"--new-layer-lr-mult {config.new_layer_lr_mult:g} applies to the layers --weights leaves new: "
            "without --weights there are none (give --weights, or leave the multiplier out)"
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


def _check_devices(config: TrainConfig) -> None:
    """Processes on GPUs or on the CPU, not both; SyncBatchNorm on GPUs only (the GPUs here: :class:`.Launcher`)."""
    if config.gpus and config.nproc > 1:
        raise SpecError("--gpus and --nproc exclude each other: --gpus N runs one process per GPU")
    if not config.gpus and config.sync_bn:
        raise SpecError(
            "--sync-bn needs --gpus: torch's SyncBatchNorm runs on CUDA only",
            hint="CPU processes (--nproc) normalise each with its own share of the batch; leave --sync-bn out",
        )


# -- one process -------------------------------------------------------------------------


class _Stop(Exception):
    """Leave the loop: interrupted (saved) or a non-finite loss (not saved); ``code`` is the exit status."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def run_worker(config_dict: dict[str, Any]) -> None:
    """One data-parallel process (rank 0 alone writes files and prints)."""
    config = TrainConfig(**config_dict)
    env = Distributed.setup(gpu=bool(config.gpus))
    trainer = None
    try:
        # A restart of some: of all. Under torchrun, the machine whose process died counts a restart, and one
        # that restarts its processes because that machine is rendezvousing again does not.
        news = env.meet({"restarts": Attempt.current().restarts})
        config = _restarted(config, restart=any(theirs.get("restarts") for theirs in news))
        with _torch_settings(config, env.rank):
            trainer = _Trainer(config, env)
            trainer.run()
    except RuntimeError as err:
        if env.world == 1 or not lost_contact(err):
            raise
        where = f" at {trainer.position()}" if trainer is not None else ""  # None: while setting up
        lost = ProcessLost(
            f"process {env.rank} lost contact with the others{where} ({time.strftime('%H:%M:%S')}): one of them "
            "stopped (its own message says why) or its machine went down",
            hint=f"with restarts left, every process starts again and resumes from {Path(config.out) / runs.LAST}",
        )
        if under_torchrun() or several_machines():  # said now, and left at once: a failure, which restarts
            print(lost, file=sys.stderr, flush=True)
        elif trainer is None or not trainer.stop_requested:  # launch's: it names the dead process if it sees it first
            await_the_launcher()
        raise SystemExit(lost.exit_code) from None
    finally:
        env.close()


@contextmanager
def _torch_settings(config: TrainConfig, rank: int) -> Iterator[None]:
    """The run's seed and determinism for torch, and the caller's back afterwards: with one process,
    :func:`train` runs in the caller's process and must not change its global state."""
    rng = torch.get_rng_state()
    cuda_rngs = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(config.seed + rank)
    try:
        yield
    finally:
        torch.set_rng_state(rng)
        if cuda_rngs is not None:
            torch.cuda.set_rng_state_all(cuda_rngs)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


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
    history: list[dict[str, Any]] = field(default_factory=list)  # a record per finished epoch
    best: dict[str, Any] | None = None  # the record of the best epoch so far
    new_layers: list[str] = field(default_factory=list)  # what --weights left new: --new-layer-lr-mult's layers
    learning_began: int | None = None  # the first epoch whose loss or error fell clearly below chance's

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


# Below these shares of chance's training loss (ln classes) or validation error (1 - 1/classes), the
# network has begun to learn.
LEARNING_BEGAN, LEARNING_BEGAN_ERROR = 0.9, 0.7


class _Trainer:
    """One process's part of a run: all of it set up here, in order, then :meth:`run`."""

    def __init__(self, config: TrainConfig, env: Distributed) -> None:
        self.config, self.env = config, env
        self.run_dir = Path(config.out)
        self.spec = load(config.spec_file())
        self.scale = config.training_scale(self.spec.input.size)
        self.log = RunLog(self.run_dir, enabled=env.main and config.progress, quiet=not env.main)
        self.stop_requested = False
        self.broken, self.broken_reported = 0, set[int]()  # this process's unreadable images, this epoch

        # What each process checks alone (its run folder, its copy of the data): a problem is told to the others
        # at the exchange that follows, where they would otherwise wait for this process until torch's timeout.
        try:
            resumed = self._resume_state()
            if env.main:
                with _writing(self.run_dir, hint="give --out a folder that can be created and written"):
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                if resumed is not None:
                    self._remove_temporaries()
            train_folder = folders.scan(config.data, config.train_split, say=env.speaks)
            val_folder = folders.scan(config.data, config.val_split, classes=train_folder.classes, say=env.speaks)
            if env.main:
                folders.note_shared(train_folder, val_folder)
            self._check_classes(train_folder)
            self.classes = len(train_folder.classes)
            if config.batch_size is None:  # decided by the training set's size, the same in every process
                batch = default_batch(len(train_folder.samples), env.world)
                self.config = config = config.model_copy(update={"batch_size": batch})
                if batch != PAPER_BATCH and env.main:
                    steps = len(train_folder.samples) // PAPER_BATCH
                    self.log.note(
                        f"batch {batch}: the paper's {PAPER_BATCH} would give {steps} step{'s' if steps != 1 else ''} "
                        f"an epoch on {len(train_folder.samples)} images (--batch-size sets it)"
                    )
        except SpecError as problem:
            env.agree({}, "the run", problem=problem)
            raise
        # Machines started with different commands (or data) would train different runs in lockstep.
        recipe = {key: value for key, value in config.model_dump().items() if key not in _PER_MACHINE}
        env.agree(
            {"spec": spec_hash(self.spec)[:12], **recipe, "classes": len(train_folder.classes),
             "training images": len(train_folder.samples)},
            "the run",
        )  # fmt: skip
        self.batches = config.batch_split(env.world, self._auto_micro_batch(), rank=env.rank)
        self.steps_per_epoch = len(train_folder.samples) // config.batch_size
        self.faults = _test_faults(env.rank)
        if self.steps_per_epoch == 0:  # said before the statistics, which take minutes on a large set
            raise SpecError(
                f"{train_folder.root} has {len(train_folder.samples)} images, fewer than one batch of "
                f"{config.batch_size}",
                hint="lower --batch-size",
            )
        self.stats = self._colour_stats(train_folder, resumed)
        self.init = resolve_init(self.spec, config.init, self.stats.rms)  # auto: decided for this spec and data
        self.model = self._model(resumed)
        self.preprocessing = self._preprocessing(resumed, list(train_folder.classes))
        self.model.preprocessing = self.preprocessing
        self.input_rms = self.preprocessing.input_rms(self.stats.rms)  # what the first layer sees
        if resumed is None and not config.weights and env.main:
            self._say_init()
        self.frozen = self._freeze()  # before DDP, which hooks only the parameters that take gradients
        self.net = self.model
        if env.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[env.local_rank] if env.device.type == "cuda" else None
            )
        self.train_set, self.val_set = self._datasets(train_folder, val_folder)
        self.state = self._training_state(resumed)
        # What the run is, in every checkpoint: how to continue it and what its numbers mean.
        self.facts = {
            "config": config.model_dump(),
            "colour_stats": self.stats.model_dump_json(),
            "preprocessing": self.preprocessing.model_dump_json(),
            "classes": list(train_folder.classes),
            "train_scale": self.scale.to_checkpoint(),
        }
        if job := Attempt.current().job:  # the torchrun job that writes the run resumes it when started again
            self.facts["torchrun_job"] = job
        if resumed is not None:
            self._restore(resumed)

    def run(self) -> None:
        if self.env.main:
            with _writing(self.run_dir):
                self.log.start(
                    self.config,
                    self.spec,
                    self.train_set.folder,
                    self.val_set.folder,
                    self.stats,
                    self.steps_per_epoch,
                    self.batches,
                    self.env.world,
                    torch.get_num_threads(),
                    decided=self._decided(),
                )
        previous = self._install_signal_handlers()
        try:
            self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _decided(self) -> dict[str, str]:
        """The settings the run decided, as the configuration shows them: S, and what auto chose."""
        config, size = self.config, self.spec.input.size
        decided = {"scale": str(self.scale) if config.scale else f"{self.scale} (for {size}×{size} inputs)"}
        if config.init == "auto" and not config.weights:
            decided["init"] = f"auto: {self.init}"
        if config.normalise == "auto":
            own = "mean" if self.preprocessing.is_paper else "std"
            decided["normalise"] = f"auto: {'as the weights' if config.weights or config.init_from else own}"
        return decided

    # -- set-up ------------------------------------------------------------------------
    def _resume_state(self) -> dict[str, Any] | None:
        if not self.config.resume:
            if (self.run_dir / runs.LAST).exists():
                raise SpecError(
                    f"{self.run_dir} already holds a run ({runs.LAST})",
                    hint="continue it with --resume, or choose another --out",
                )
            return None
        path = self.run_dir / runs.LAST  # there: TrainConfig.spec_file checked
        state = read_checkpoint(path)  # every entry checked to have the form vggspec writes
        if state.get("spec_hash") != spec_hash(self.spec):
            raise CheckpointError(
                f"{path} was trained with another spec than {self.config.spec}",
                hint=f"leave SPEC out to resume with the run's own ({self.run_dir / runs.SPEC})",
            )
        if "rng" not in state:
            raise CheckpointError(f"{path} is corrupt: its 'rng' is missing (a run cannot resume without it)")
        check_weights(state, checkpoint_spec(state, path), path)  # the classes and statistics fit the network
        verify_checksums(state, path)  # the optimizer's state and the RNGs too
        return state

    def _remove_temporaries(self) -> None:
        """What a killed writer left (``.last.pt.XXXX.tmp``: a checkpoint's size each); a resumed run owns RUN."""
        count, freed = files.remove_temporaries(self.run_dir, runs.RUN_FILES)
        if count:
            self.log.note(
                f"removed {count} temporary file{'s' if count > 1 else ''} a killed run left in {self.run_dir} "
                f"({human_bytes(freed)} freed)"
            )

    def _check_classes(self, folder: folders.ImageFolder) -> None:
        classifier = self.spec.classifier
        if classifier.features != len(folder.classes):
            raise SpecError(
                f"{self.config.spec} ends in {classifier.word()} ({classifier.features} classes) but "
                f"{folder.root} has {len(folder.classes)} class folders",
                line=classifier.line,
                column=classifier.column,
                filename=self.config.spec,
                text=self.spec.text,
                hint=f"change the last FC layer to FC-{len(folder.classes)}, or train on the data it was written for",
            )

    def _colour_stats(self, folder: folders.ImageFolder, resumed: dict | None) -> colour.ColourStats:
        path = self.run_dir / runs.COLOUR_STATS
        if resumed is not None and "colour_stats" in resumed:
            return colour.ColourStats.model_validate_json(resumed["colour_stats"])
        if self.env.main:
            self.log.note(
                f"computing mean RGB and colour PCA from up to {self.config.stats_images} training images ..."
            )
            stats = colour.colour_stats(
                folder,
                self.spec.input.channels,
                max_images=self.config.stats_images,
                seed=self.config.seed,
                workers=self.config.workers,
            )
            with _writing(self.run_dir):
                files.write_text(path, stats.model_dump_json(indent=2))
        self.env.barrier()
        return colour.ColourStats.model_validate_json(path.read_text())

    def _preprocessing(self, resumed: dict | None, classes: list[str]) -> Preprocessing:
        """What the network's inputs are: the run's own (resumed), the starting weights' (fine-tuning keeps
        torchvision's normalisation, --init-from the trained A's), or from random weights the paper's
        subtraction of this training set's mean RGB, and for Glorot's and Kaiming's a division by its std
        (``--normalise``)."""
        if resumed is not None and (recorded := Preprocessing.from_checkpoint(resumed)) is not None:
            return recorded
        if self.model.preprocessing is not None:
            if self.env.main:
                self.log.note(f"inputs as the weights were trained on: {self.model.preprocessing.describe()}")
            return self.model.preprocessing.model_copy(update={"classes": classes})
        normalise = self.config.normalise
        if normalise == "std" or (normalise == "auto" and standardises(self.spec, self.init)):
            standardised = Preprocessing.standardised(self.stats.mean, self.stats.std, classes)
            if self.env.main:
                why = f": {self.init}'s start on a network {WIDE} channels wide" if normalise == "auto" else ""
                self.log.note(f"inputs divided by their std{why} ({standardised.describe()})")
            return standardised
        return Preprocessing.paper(self.stats.mean, classes)

    def _say_init(self) -> None:
        """Which initialisation the random weights have, and a word when their start is far from what trains."""
        self.log.note(self._init_note())
        config, standardised = self.config, not self.preprocessing.is_paper
        advice = init_advice(self.spec, self.init, self.input_rms, config.lr, standardised=standardised)
        if advice and not config.init_from:
            self.log.note(advice)

    def _model(self, resumed: dict | None) -> VGG:
        config = self.config
        weights = config.weights if resumed is None else None  # a resumed run's come from its checkpoint
        model = build(
            self.spec,
            init=config.init if weights else self.init,  # auto: decided for the weights' input scale
            weights=weights,
            seed=config.seed,
            device=self.env.device,
            strict_weights=config.strict_weights,
            pixel_rms=self.stats.rms,
        )
        if model.weights_report is not None:
            self.init = model.weights_report.init
            if self.env.main:
                self.log.note(str(model.weights_report))
        if config.init_from and resumed is None:
            from ..nn.transfer import transfer_from

            report = transfer_from(config.init_from, model)
            if self.env.main:
                self.log.note(str(report))
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.sync_bn and self.env.world > 1:  # before the optimizer: the conversion makes new modules
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def _auto_micro_batch(self) -> int | None:
        """``--micro-batch auto``: on GPUs the micro-batch :func:`vggspec.plan.budget.auto_micro_batch` plans for
        the free memory of the process with the least; on the CPU, which has no fixed memory to fit, none:
        the whole share. None when not asked."""
        config, env = self.config, self.env
        if config.micro_batch != "auto":
            return None
        if env.device.type != "cuda":
            if env.main:
                self.log.note("--micro-batch auto: not needed on the CPU, each process takes its whole share a pass")
            return None
        mine = torch.cuda.mem_get_info(env.device)[0]
        free = [int(n) for n in env.sum([mine if rank == env.rank else 0 for rank in range(env.world)])]
        settings = TrainSettings(
            batch=config.batch_size,
            processes=env.world,
            amp=config.amp,
            channels_last=config.channels_last,
            weight_decay=config.weight_decay > 0,
        )
        micro, note = auto_micro_batch(self.spec, settings, free, str(env.device))
        if env.main:
            self.log.note(note)
        return micro

    def _init_note(self) -> str:
        """Which initialisation the random weights have, and for ``auto`` why."""
        layers = "the layers not copied from A" if self.config.init_from else "the weights"
        if self.config.init != "auto":
            return f"initialisation: --init {self.init} for {layers}"
        why = auto_init(self.spec, self.stats.rms)[1]
        return f"initialisation: --init auto chose {self.init} for {layers} of {self.spec.display_name}: {why}"

    def _datasets(
        self, train_folder: folders.ImageFolder, val_folder: folders.ImageFolder
    ) -> tuple[datalib.TrainDataset, datalib.EvalDataset]:
        config, input_size, channels = self.config, self.spec.input.size, self.spec.input.channels
        augment = datalib.Augment(
            input_size=input_size,
            scale=self.scale,
            channels=channels,
            stats=self.stats,
            flip=config.flip,
            colour_std=config.colour_std,
        )
        validate = datalib.Evaluate(input_size=input_size, scale=self.scale.middle, channels=channels)
        return datalib.TrainDataset(train_folder, augment, seed=config.seed), datalib.EvalDataset(val_folder, validate)

    def _freeze(self) -> list[nn.Module]:
        """--freeze: the frozen layers' parameters take no gradient (and so stay out of the optimizer)."""
        names = frozen_layers(self.spec, self.config.freeze)
        parts = (self.model.features, self.model.classifier)
        modules = [getattr(part, name) for part in parts for name in names if hasattr(part, name)]
        for module in modules:
            module.requires_grad_(False)
        if modules and self.env.main:
            count = sum(p.numel() for module in modules for p in module.parameters())
            self.log.note(f"frozen: {names[0]} to {names[-1]} ({count:,} parameters), batch norm's statistics too")
        return modules

    def _train_mode(self) -> None:
        """Training mode, but for the frozen layers' batch norm: its running statistics must not move either."""
        self.model.train()
        for module in self.frozen:
            for bn in module.modules():
                if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                    bn.eval()

    def _training_state(self, resumed: dict | None) -> TrainingState:
        config = self.config
        report = self.model.weights_report
        if resumed is not None:  # the load is not repeated: the run's checkpoint says which layers it left new
            new_layers = list(resumed.get("new_layers", []))
        else:
            new_layers = [name for name, _ in report.new] if report is not None else []
        if config.new_layer_lr_mult != 1 and not new_layers and resumed is None and self.env.main:
            mult = config.new_layer_lr_mult
            self.log.note(f"note: --weights left no layer new: --new-layer-lr-mult {mult:g} applies to none")
        groups = param_groups(self.model, config, new_layers)
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_lr=[group["lr"] * config.lr_factor**config.lr_drops * (1 - 1e-6) for group in groups],
        )
        scaler = torch.amp.GradScaler(self.env.device.type, enabled=config.amp == "fp16")
        return TrainingState(optimizer, scheduler, scaler, new_layers=new_layers)

    # -- checkpoints -------------------------------------------------------------------
    def _rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"cpu": torch.get_rng_state()}
        if self.env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.env.device)
        return rng

    def _save(self, *, best: bool = False) -> None:
        """Every process hands rank 0 its RNG state, so resumes are exact with N processes too."""
        rngs = self.env.gather(self._rng_state())  # one per process: each draws its own dropout masks
        if not self.env.main:
            return
        with _writing(self.run_dir):
            save_checkpoint(self.model, self.run_dir / runs.LAST, **self.state.state_dict(), rng=rngs, **self.facts)
            if best:  # the same bytes: a second name, not a second write
                atomic_link(self.run_dir / runs.LAST, self.run_dir / runs.BEST)

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        trained_on, here = list(checkpoint.get("classes") or []), list(self.facts["classes"])
        if trained_on and trained_on != here:  # as many (checkpoint_spec and _check_classes), but not the same
            i = next(i for i, (was, now) in enumerate(zip(trained_on, here)) if was != now)
            raise SpecError(
                f"{self.run_dir} was trained on other classes than {self.train_set.folder.root} holds: "
                f"class {i} was '{trained_on[i]}', here it is '{here[i]}'",
                hint="resume with the data the run was started on (--data), or start a new run",
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        path = self.run_dir / runs.LAST
        try:
            self.state.load_state_dict(checkpoint)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            why = str(err).splitlines()[0] if str(err) else ""
            raise CheckpointError(
                f"{path} is corrupt: its training state cannot be restored ({type(err).__name__}: {why})"
            ) from None
        rngs = checkpoint["rng"]
        rng = rngs[self.env.rank] if self.env.rank < len(rngs) else rngs[0]  # more processes than before
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.env.device)
        if self.env.main:
            state = self.state
            with _writing(self.run_dir):
                self.log.rewrite_metrics(state.history)
            if state.epoch >= self.config.epochs:
                self.log.note(
                    f"{self.run_dir} has finished its {state.epoch} epochs: nothing to train "
                    "(give a larger --epochs to train on)"
                )
            else:
                with _writing(self.run_dir):
                    self._say_resumed(path, saved_by=len(rngs))

    def _say_resumed(self, path: Path, saved_by: int) -> None:
        """Where the run resumes, and why: a restart says what stopped the processes; the run's events log keeps it.
        Saved by another number of processes: the same global batch, and the same images in each step."""
        state, attempt = self.state, Attempt.current()
        saved = time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
        where = f"epoch {state.epoch + 1}, step {state.step}/{self.steps_per_epoch} ({path}, saved at {saved})"
        again = attempt.restarts or attempt.job  # a restart (torchrun's or launch's), or the job started again
        said = f"{attempt.describe()}: resuming at" if again else f"resuming {self.run_dir} at"
        self.log.event(f"{said} {where}")
        if saved_by != self.env.world:
            shares = shares_text(self.config.batch_size, self.env.world)
            self.log.event(
                f"saved by {saved_by} process{'es' if saved_by > 1 else ''}, resumed by {self.env.world}: each now "
                f"takes {shares} images a step (micro-batches of {self.batches.micro}); the global batch stays "
                f"{self.config.batch_size}, and each step sees the same images"
            )

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGTERM and SIGINT ask the loop to save and stop after the current step."""

        def request_stop(signum: int, frame: Any) -> None:
            self.stop_requested = True

        return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    # -- the loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        config, state = self.config, self.state
        started, first_epoch = time.perf_counter(), state.epoch
        try:
            while state.epoch < config.epochs:
                phase = "training"
                try:
                    train_loss, seen, seconds, wait = self._train_epoch()
                    phase = "validation"
                    top1, top5 = self._validate()
                except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
                    if not out_of_memory(err):
                        raise
                    raise _Stop(self._out_of_memory(phase), code=ExitCode.OUT_OF_MEMORY) from None
                group = state.optimizer.param_groups[0]
                lr = group["lr"] / group.get("lr_mult", 1.0)  # the base lr, were group 0 the new layers'
                improved = state.best is None or top1 < state.best["val_top1_err"]
                record = {
                    "epoch": state.epoch + 1,
                    "train_loss": train_loss,
                    "val_top1_err": top1,
                    "val_top5_err": top5,
                    "lr": lr,
                    "images_per_s": seen / max(seconds, 1e-9),
                    "data_wait": wait / max(seconds, 1e-9),
                    "broken_images": int(self.env.sum([self.broken])[0]),
                    "seconds": seconds,
                }
                state.history.append(record)
                if improved:
                    state.best = record
                if state.learning_began is None and self._learning(train_loss, top1):
                    state.learning_began = state.epoch + 1
                    if self.env.main and state.epoch > 0:
                        self.log.note(f"learning began in epoch {state.epoch + 1}: the lr schedule counts from here")
                if state.learning_began is not None:  # a drop before anything is learned only stalls the run
                    state.scheduler.step(1.0 - top1)
                state.epoch, state.step, state.loss_sum = state.epoch + 1, 0, 0.0
                self._save(best=improved)
                if self.env.main:
                    with _writing(self.run_dir):
                        self.log.epoch_done(record, state.history)
        except _Stop as stop:
            if stop.code == ExitCode.OUT_OF_MEMORY:  # said by the process it happened in, whichever
                log.info(str(stop) if self.env.world == 1 else f"process {self.env.rank}: {stop}")
            elif self.env.speaks:  # a stop every process made together: each machine's first says it
                log.info(str(stop))
            raise SystemExit(stop.code) from None
        if self.env.main:
            if state.learning_began is None and len(state.history) > self.config.lr_patience + 1:
                chance = math.log(self.classes)
                self.log.note(
                    f"note: the training loss never fell below {LEARNING_BEGAN:g} × chance's (ln {self.classes} = "
                    f"{chance:.3g}) nor the validation error below {LEARNING_BEGAN_ERROR:g} × chance's, so the "
                    "learning rate was never lowered; try another --lr, --init or --batch-size"
                )
            self.log.finish(state.history, state.best, time.perf_counter() - started, first_epoch=first_epoch)

    def _learning(self, train_loss: float, top1: float) -> bool:
        """Whether an epoch says the network has begun to learn: its training loss clearly below that of a
        network that knows nothing (ln classes), or its validation error clearly below chance's (dropout
        and augmentation keep the training loss up for a while). Until then the plateau schedule waits: its
        drops would come before the first improvement (a narrow deep network sits at chance for epochs
        first) and leave the rate too small to ever start. On ImageNet the loss is expected to pass within
        the first epochs (below 6.2, 0.9 × ln 1000), long before the paper's first drop (not measured here)."""
        if self.classes < 2:
            return True
        chance_error = 1.0 - 1.0 / self.classes
        return train_loss < LEARNING_BEGAN * math.log(self.classes) or top1 < LEARNING_BEGAN_ERROR * chance_error

    def _diverged(self, loss: float) -> str:
        """What a NaN or infinite loss left behind, and what to try: only what was not tried."""
        config = self.config
        kept = _kept(self.run_dir)
        tries = [f"a lower --lr (this run: {config.lr:g})"]
        starts = initial_scales(self.spec, self.input_rms)
        began = initial_scale(self.spec, self.init, self.input_rms)
        if not (config.init_from or config.weights) and began > 1:  # scores began large
            tamer = [f"--init {init}" for init, scale in starts.items() if not scale_trouble(scale) and scale < began]
            tries += [" or ".join(tamer)] if tamer else []
            tries.append("--init-from a trained A (Section 3.1)")
        return (
            f"the loss became {loss} at epoch {self.state.epoch + 1}, step {self.state.step + 1}: training stopped; "
            f"{kept}. Try {', or '.join(tries)}."
        )

    def _out_of_memory(self, phase: str) -> str:
        """What running out of memory left behind, and the smaller pass that keeps the recipe.

        Alone, the steps finished in this epoch are saved first: the weights and the optimizer are
        as they were after the last step (a step's half-accumulated gradients are not kept). With
        several processes the others wait in a collective that will not come, so nothing more is saved.
        """
        state, micro = self.state, self.batches.micro
        where = f"epoch {state.epoch + 1}, " + (f"step {state.step + 1}" if phase == "training" else "validation")
        if phase == "training" and self.env.world == 1 and state.step > 0:
            state.optimizer.zero_grad(set_to_none=True)
            self._save()
            kept = f"the {state.step} finished steps of this epoch are saved in {self.run_dir / runs.LAST}"
        elif (self.run_dir / runs.LAST).exists():
            kept = f"the last checkpoint is kept ({self.run_dir / runs.LAST})"
        else:
            kept = "no checkpoint had been saved yet"
        smaller = max(1, micro // 2)
        return (
            f"out of memory in {where}: a pass of {micro} images of {self.spec.input.size}×{self.spec.input.size} "
            f"does not fit on {self.env.device}; {kept}. Continue with fewer images per pass and the same batch "
            f"(gradient accumulation): vggspec train --out {self.run_dir} --resume --micro-batch {smaller}"
            + (" (or --micro-batch auto: the largest that fits)" if self.env.device.type == "cuda" else "")
        )

    def position(self) -> str:
        """``epoch 2, step 3``: where the run is (steps finished in the epoch under way)."""
        return _position(self.state.epoch, self.state.step)

    def _micro_batches(self) -> list[list[int]]:
        """This process's micro-batches for the rest of the epoch (the order is keyed by seed and epoch)."""
        config, env, state = self.config, self.env, self.state
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + state.epoch)
        order = torch.randperm(len(self.train_set), generator=generator).tolist()
        micro = self.batches.micro
        batches = []
        for step in range(state.step, self.steps_per_epoch):
            global_batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            mine = global_batch[env.rank :: env.world]
            batches.extend(mine[i : i + micro] for i in range(0, len(mine), micro))
        return batches

    def _loader(self, dataset, batch_sampler) -> torch.utils.data.DataLoader:
        return loader(
            dataset,
            workers=self.config.workers,
            collate=datalib.collate,
            batches=batch_sampler,
            pin_memory=self.env.device.type == "cuda",
            seed=self.config.seed,
        )

    def _report_broken(self, index: int) -> None:
        """Name each unreadable file once (every process names its own)."""
        if index not in self.broken_reported:
            self.broken_reported.add(index)
            path = self.train_set.folder.samples[index][0]
            log.warning(f"skipping an unreadable image: {path}")

    def _autocast(self):
        if self.config.amp is None:
            return nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.env.device.type, dtype=dtype)

    def _inputs(self, batch: datalib.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return datalib.to_device(batch, self.preprocessing, self.env.device, channels_last=self.config.channels_last)

    def _train_epoch(self) -> tuple[float, int, float, float]:
        config, env, state = self.config, self.env, self.state
        self.train_set.set_epoch(state.epoch)
        self._train_mode()
        mean_share, per_step = config.batch_size / env.world, self.batches.per_step
        loader = self._loader(self.train_set, self._micro_batches())
        if state.step == 0:
            self.broken = 0
        progress = self.log.progress(state.epoch, config.epochs, state.step, self.steps_per_epoch)
        seen = 0
        data_wait = compute = 0.0
        micro_index = 0
        step_loss = 0.0
        tick = time.perf_counter()
        for batch in loader:
            now = time.perf_counter()
            data_wait += now - tick
            self.broken += len(batch.broken)
            for index in batch.broken:
                self._report_broken(index)
            images, labels = self._inputs(batch)
            last_micro = micro_index == per_step - 1
            sync = nullcontext() if last_micro or env.world == 1 else self.net.no_sync()
            with sync:
                with self._autocast():
                    scores = self.net(images)
                    # sum over this micro-batch / the mean share (batch / processes), in every process,
                    # whatever its own share: DDP's mean over processes then gives the mean over the
                    # global batch, whatever the split (the first batch % world processes take one more).
                    loss = nn.functional.cross_entropy(scores.float(), labels, reduction="sum") / mean_share
                state.scaler.scale(loss).backward()
            step_loss += loss.item()
            micro_index += 1
            if last_micro:
                if env.any(not math.isfinite(step_loss)):
                    raise _Stop(self._diverged(step_loss), code=ExitCode.DIVERGED)
                state.scaler.step(state.optimizer)
                state.scaler.update()
                state.optimizer.zero_grad(set_to_none=True)
                global_loss = env.sum([step_loss])[0] / env.world
                state.loss_sum += global_loss
                seen += config.batch_size
                state.step += 1
                micro_index, step_loss = 0, 0.0
                compute += time.perf_counter() - now
                progress.update(global_loss, config.batch_size, data_wait, compute)
                if (
                    config.checkpoint_every
                    and state.step % config.checkpoint_every == 0
                    and state.step < self.steps_per_epoch
                ):
                    self._save()
                if env.any(self.stop_requested):
                    self._save()
                    raise _Stop(
                        f"interrupted: saved {self.run_dir / runs.LAST} at {self.position()}; continue with: "
                        f"vggspec train --out {self.run_dir} --resume",
                        code=ExitCode.INTERRUPTED,
                    )
                if fault := self.faults.get(state.epoch * self.steps_per_epoch + state.step):
                    _fail_for_a_test(fault)
            else:
                compute += time.perf_counter() - now
            tick = time.perf_counter()
        progress.close()
        return state.loss_sum / max(1, self.steps_per_epoch), seen, data_wait + compute, data_wait

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        """Top-1 and top-5 error over every validation image, each counted exactly once."""
        env = self.env
        self.model.eval()
        indices = list(range(env.rank, len(self.val_set), env.world))
        batch = self.batches.micro
        loader = self._loader(self.val_set, [indices[i : i + batch] for i in range(0, len(indices), batch)])
        correct = torch.zeros(2, dtype=torch.float64)
        count = 0
        for data in loader:
            images, labels = self._inputs(data)
            with self._autocast():
                scores = self.model(images).float()
            correct += top_k_correct(scores.cpu(), labels.cpu())
            count += len(labels)
        correct1, correct5, count = env.sum([*correct.tolist(), count])
        if count == 0:
            return 1.0, 1.0
        return 1 - correct1 / count, 1 - correct5 / count


def param_groups(model: nn.Module, config: TrainConfig, new_layers: Collection[str]) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, from the settings and the new layers alone, so that a resumed run
    rebuilds them as they were: frozen parameters (no gradient) left out, the ``new_layers`` at
    ``new_layer_lr_mult`` times the lr (``lr_mult`` in the group), vectors (biases, batch norm's scale and
    shift) without weight decay under ``--no-decay-biases``. The base lr's decayed group comes first."""
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


PAPER_RANDOM_INIT_DEPTH = 11  # A's weight layers: the deepest net the paper trained from random weights


# From Glorot's start on the paper's 0-255 inputs, D's loss fell at 1e-3 where it diverged at the paper's 1e-2
# (tools/bench_init.py, BENCHMARKS.md): what the note says to a run that keeps those inputs (--normalise mean).
GLOROT_TRAINED_LR = 1e-3


def init_advice(
    spec: Spec, init: str, pixel_rms: float = PIXEL_RMS, lr: float | None = None, *, standardised: bool = False
) -> str | None:
    """A word before training from random weights (``init``, resolved) whose class scores start far from 1 on
    inputs of RMS ``pixel_rms``, or from Glorot's start at a rate (``lr``) that diverged for networks as wide
    on the paper's unstandardised inputs."""
    init = resolve_init(spec, init, pixel_rms)
    scale = initial_scale(spec, init, pixel_rms)
    width = widest(spec)
    if init == "glorot" and not standardised and lr is not None and lr > GLOROT_TRAINED_LR and width >= WIDE:
        return (
            f"note: from Glorot's start at lr {lr:g}, networks {width} channels wide diverged here (A and D, "
            f"within 8 steps) where D's loss fell at lr {GLOROT_TRAINED_LR:g} (tools/bench_init.py): expect to "
            f"need --lr {GLOROT_TRAINED_LR:g}, or start as the paper did, from a trained A (--init-from RUN_A)"
        )
    if not (fate := scale_trouble(scale)):
        return None
    others = ", ".join(
        f"--init {other} {value:.0e}" for other, value in initial_scales(spec, pixel_rms).items() if other != init
    )
    deeper = analyze(spec).weight_layers > PAPER_RANDOM_INIT_DEPTH
    return (
        f"note: with --init {init}, {spec.display_name}'s class scores start at about {scale:.0e} (RMS, "
        f"estimated from its layers' sizes; {FADING_SCALE:.0e} to {EXPLODING_SCALE:.0e} trains): {fate}. "
        f"Other initialisations: {others}."
        + (" The paper started nets deeper than A from a trained A (--init-from RUN_A)." if deeper else "")
    )


def _position(epoch: int, step: int) -> str:
    """``epoch 2, step 3``: where a run is, from its epochs finished and its steps in the one under way."""
    return f"epoch {epoch + 1}, step {step}"


def _kept(run_dir: Path) -> str:
    """What a stopped run leaves to continue from: its last checkpoint, and where it is."""
    last = run_dir / runs.LAST
    if not last.exists():
        return "no checkpoint had been saved yet (--checkpoint-every N saves within an epoch)"
    try:
        state = read_checkpoint(last, mmap=True)
        where = f": {_position(state.get('epoch', 0), state.get('step', 0))}"
    except SpecError:  # said when it is resumed
        where = ""
    return f"the last good checkpoint is kept ({last}{where})"


# Tests only: VGGSPEC_TEST_FAULT_AT=RANK:STEP[:STARTS[:WHAT]],... makes process RANK fail once it has finished
# step STEP of the run (counted over the epochs, from 1), in the first STARTS starts of the processes (default 1):
# WHAT is ``kill`` (SIGKILL itself, the default), ``oom`` (run out of memory as the next step begins) or ``term``
# (SIGTERM its launcher, as a user stopping the run on that machine). Failures at known points, which no timing
# decides.
TEST_FAULT_AT = "VGGSPEC_TEST_FAULT_AT"
_TEST_FAULTS = ("kill", "oom", "term")


def _test_faults(rank: int) -> dict[int, str]:
    """The steps of the run after which this process fails, and how (:data:`TEST_FAULT_AT`): none but in tests."""
    faults = {}
    for entry in filter(None, os.environ.get(TEST_FAULT_AT, "").split(",")):
        victim, step, starts, what = (entry.split(":") + ["", ""])[:4]
        starts, what = starts or "1", what or "kill"
        if what not in _TEST_FAULTS:
            raise ValueError(f"{TEST_FAULT_AT}: {what!r} is not one of {', '.join(_TEST_FAULTS)}")
        if int(victim) == rank and Attempt.current().restarts < int(starts):
            faults[int(step)] = what
    return faults


def _fail_for_a_test(what: str) -> None:
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif what == "term":
        os.kill(os.getppid(), signal.SIGTERM)
        return
    raise torch.OutOfMemoryError("CUDA out of memory (VGGSPEC_TEST_FAULT_AT). Tried to allocate 2.00 GiB")


def _shown(value: object) -> str:
    return "(not set)" if value is None else str(value)


@contextmanager
def _writing(run_dir: Path, hint: str | None = None) -> Iterator[None]:
    """A run folder that cannot be written (disk full, read-only, gone): said plainly, naming the file, no
    traceback; torch's ``RuntimeError`` around an ``OSError`` included."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        failure = files.os_error(err)
        if failure is None:
            raise
        name = os.fsdecode(failure.filename) if failure.filename is not None else None
        where = name if name is not None and Path(name) != run_dir else f"in {run_dir}"
        raise SpecError(
            f"cannot write {where}: {failure.strerror or failure}",
            hint=hint
            or f"checkpoints are written whole or not at all: {runs.LAST} is the last one saved; "
            "make room (or mend the folder), then continue with --resume",
        ) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: vggspec train SPEC --data DIR")
