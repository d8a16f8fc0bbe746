"""The shared trainer: Section 3.1's recipe for any spec, on a CPU, one GPU or many.

Read it top to bottom: :func:`train` starts the run (one process, or N data-parallel ones through
torch's elastic launcher, on one machine or several), :func:`run_worker` is what each process does,
and :class:`_Trainer` is the loop: the epochs, each a training epoch (forward, backward, step), a
validation and a checkpoint. What the loop runs over is set up by :func:`_set_up` from a few named
pieces, each in its own module: the data (:mod:`.training_data`), the network
(:mod:`.training_model`), the optimizer and schedule (:mod:`.optimizer`), the checkpoints
(:mod:`.checkpointing`), the processes (:mod:`.distributed`); what is checked before any process
starts is :mod:`.startup`'s and :mod:`.launch`'s.

The recipe: softmax cross-entropy, SGD with momentum 0.9 and weight decay 5e-4, a global batch
of 256 whatever the number of processes (each process takes its share of every batch, in
micro-batches with gradient accumulation; a smaller one for a small training set), learning rate
1e-2 (for another batch, times √(batch / 256)) divided by 10 when validation accuracy stops
improving (at most three times), at most 74 epochs: the run ends where the schedule would lower it a
fourth time (``--no-early-stop`` trains on to ``--epochs``).

Never losing work: checkpoints hold everything needed to continue bit for bit (weights,
optimizer, plateau schedule, AMP scaler, RNG states, the position in the epoch, the spec and the
configuration), are written atomically every epoch and every ``checkpoint_every`` steps, and
``--resume`` continues from ``RUN/last.pt``. SIGTERM/SIGINT save and exit; a NaN loss stops the
run and keeps the last good checkpoint. However it ends, ``RUN/summary.json`` says how (:mod:`.runlog`).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import datasets as datalib
from ..data.scales import TrainingScale
from ..errors import ExitCode, ProcessLost, SpecError, out_of_memory
from ..logs import log
from ..nn.checkpoint import spec_hash
from ..plan.batch import BatchSplit
from ..spec.spec import Spec
from . import runs
from .checkpointing import Checkpoints, kept, position, writing
from .config import TrainConfig
from .distributed import Attempt, Distributed, await_the_launcher, lost_contact, several_machines, under_torchrun
from .faults import TEST_FAULT_AT, fail_for_a_test, planned_faults
from .launch import Launcher
from .metrics import top_k_correct
from .optimizer import LEARNING_BEGAN, LEARNING_BEGAN_ERROR, TrainingState, has_begun_to_learn, param_groups
from .runlog import RunLog, stopped_on_a_plateau
from .startup import PER_MACHINE, prepare, restarted
from .training_data import TrainingData, colour_stats, scan, steps_per_epoch, with_batch_and_lr
from .training_model import TrainingModel, check_the_step_fits, frozen_layers, init_advice, micro_batch_that_fits

__all__ = [
    "TEST_FAULT_AT", "RunStopped", "TrainingState", "frozen_layers", "init_advice", "param_groups", "run_worker",
    "train",
]  # fmt: skip


class RunStopped(SystemExit):
    """A run that stopped before its end and said why (interrupted, diverged, out of memory, bad input its
    processes met): a SystemExit with the program's exit status (``code``), and ``run_dir``, where the run left
    its last checkpoint, and RUN/summary.json when it got as far as writing it."""

    def __init__(self, code: int | None, run_dir: Path) -> None:
        super().__init__(code)
        self.run_dir = run_dir


def train(config: TrainConfig) -> Path:
    """Train as configured; returns the run directory. Launches N processes when asked to.

    With ``resume``, the settings not given (not in ``config.model_fields_set``) are the run's own,
    as its checkpoint holds them: ``--resume`` alone continues the run as it was started. A run that stops
    before its end, said, raises :class:`RunStopped` with its exit status and folder.
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
        config, spec, scale = prepare(config, given)  # the spec read and S resolved, once for every process
        world = launcher.processes(config.gpus, config.nproc, given)
    worker = partial(run_worker, spec=spec, scale=scale)
    try:
        launcher.start(worker, config.model_dump(), world=world, max_restarts=config.max_restarts)
    except ProcessLost as lost:
        raise ProcessLost(
            f"{lost.message}: training stopped; {kept(Path(config.out))}",
            hint=f"continue with: vggspec train --out {config.out} --resume",
        ) from None
    except SystemExit as stop:  # said by the processes: the caller learns where the run is, too
        raise RunStopped(stop.code, Path(config.out)) from None
    return Path(config.out)


def run_worker(config_dict: dict[str, Any], *, spec: Spec, scale: TrainingScale) -> None:
    """One data-parallel process (rank 0 alone writes files and prints): ``spec`` and ``scale`` as :func:`train`
    read them."""
    config = TrainConfig(**config_dict)
    env = Distributed.setup(gpu=bool(config.gpus))
    trainer = None
    try:
        # A restart of some: of all. Under torchrun, the machine whose process died counts a restart, and one
        # that restarts its processes because that machine is rendezvousing again does not.
        news = env.meet({"restarts": Attempt.current().restarts})
        config = restarted(config, restart=any(theirs.get("restarts") for theirs in news))
        with _torch_settings(config, env.rank), ExitStack() as held:
            trainer = _set_up(config, env, spec, scale, held)
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


class _Stop(Exception):
    """Leave the loop: interrupted (saved), a non-finite loss (not saved) or out of memory; ``code`` is the exit
    status, :attr:`reason` what RUN/summary.json calls the stop."""

    REASONS = {
        ExitCode.INTERRUPTED: "interrupted", ExitCode.DIVERGED: "diverged", ExitCode.OUT_OF_MEMORY: "out of memory"
    }  # fmt: skip

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code

    @property
    def reason(self) -> str:
        return self.REASONS[self.code]


@dataclass
class _Trainer:
    """One process's part of a run: the loop, over the pieces :func:`_set_up` made."""

    config: TrainConfig
    env: Distributed
    log: RunLog
    spec: Spec
    scale: TrainingScale
    data: TrainingData
    network: TrainingModel  # .model holds the weights saved, .net runs forward and backward
    state: TrainingState
    checkpoints: Checkpoints
    faults: dict[int, str]  # tests only: steps of the run after which this process fails (:mod:`.faults`)
    stop_requested: bool = False  # SIGTERM or SIGINT: save and stop after the current step

    def run(self) -> None:
        """The epochs: each trains, validates, steps the plateau schedule and saves a checkpoint (best.pt too when
        its validation error is the lowest yet), to --epochs or, with early stopping, to the plateau the schedule
        has no drop left for. A stop on the way leaves with its exit status, said. RUN/summary.json says how the
        run ended, either way."""
        config, env, state, data = self.config, self.env, self.state, self.data
        if env.main:
            with writing(self.checkpoints.run_dir):
                self.log.start(
                    config, self.spec, data.train_set.folder, data.val_set.folder, data.stats,
                    data.steps_per_epoch, data.batches, env.world, torch.get_num_threads(), decided=self._decided(),
                )  # fmt: skip
        started, first_epoch = time.perf_counter(), state.epoch
        with self._stopping_on_signals(), self._leaving_on_a_stop(started, first_epoch):
            while self._ended() is None:
                phase = "training"
                try:
                    train_loss, train_error, seen, seconds, wait = self._train_epoch()
                    phase = "validation"
                    top1, top5, val_loss = self._validate()
                except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
                    if not out_of_memory(err):
                        raise
                    raise _Stop(self._out_of_memory(phase), code=ExitCode.OUT_OF_MEMORY) from None
                improved = state.best is None or top1 < state.best["val_top1_err"]
                record = {
                    "epoch": state.epoch + 1,
                    "train_loss": train_loss,
                    "train_top1_err": train_error,  # of the augmented crops, as the steps saw them
                    "val_loss": val_loss,
                    "val_top1_err": top1,
                    "val_top5_err": top5,
                    "lr": state.lr,
                    "images_per_s": seen / max(seconds, 1e-9),
                    "data_wait": wait / max(seconds, 1e-9),
                    "broken_images": int(env.sum([data.broken])[0]),
                    "seconds": seconds,
                }
                state.history.append(record)
                if improved:
                    state.best = dict(record)  # a copy: the record may yet say that the run ends with this epoch
                if state.learning_began is None and has_begun_to_learn(train_loss, top1, self.classes):
                    state.learning_began = state.epoch + 1
                    if state.epoch > 0:
                        self.log.note(f"learning began in epoch {state.epoch + 1}: the lr schedule counts from here")
                if state.learning_began is not None:  # a drop before anything is learned only stalls the run
                    no_drop_left = state.step_schedule(1.0 - top1)
                    if no_drop_left and config.early_stop:
                        state.stopped = "plateau"
                state.end_epoch()
                if ended := self._ended():
                    record["stopped"] = ended  # metrics.jsonl's last line says why the run ended there
                self.checkpoints.save(self.network.model, state, best=improved)
                if env.main:
                    with writing(self.checkpoints.run_dir):
                        self.log.epoch_done(record, state.history)
                        if state.stopped:
                            self.log.event(self._plateau())
            if state.learning_began is None and len(state.history) > config.lr_patience + 1:
                self.log.note(
                    f"note: the training loss never fell below {LEARNING_BEGAN:g} × chance's (ln {self.classes} = "
                    f"{math.log(self.classes):.3g}) nor the validation error below {LEARNING_BEGAN_ERROR:g} × "
                    "chance's, so the learning rate was never lowered; try another --lr, --init or --batch-size"
                )
            ended = self._ended()
            with writing(self.checkpoints.run_dir):
                self.log.finish(
                    state.history, state.best, time.perf_counter() - started, first_epoch=first_epoch, stopped=ended,
                    message=self._plateau() if ended == "plateau" else None,
                )  # fmt: skip

    def _ended(self) -> str | None:
        """Why the run has ended, or None while it goes on: ``plateau`` (stopped early), ``epochs`` (--epochs)."""
        if self.state.stopped is not None:
            return self.state.stopped
        return "epochs" if self.state.epoch >= self.config.epochs else None

    def _plateau(self) -> str:
        """The line that says why the run stopped early."""
        return stopped_on_a_plateau(self.state.epoch, self.state.best, self.config.lr_drops)

    def _train_epoch(self) -> tuple[float, float, int, float, float]:
        """One epoch (the rest of it, resumed): every step accumulates the gradients of this process's
        micro-batches, then takes one SGD step over the global batch. Returns the mean loss of the epoch's
        steps, the top-1 error of the scores they computed (on augmented crops, with dropout: no extra pass),
        the images seen, the seconds taken and those spent waiting for data."""
        config, env, state, data = self.config, self.env, self.state, self.data
        mean_share, per_step = config.batch_size / env.world, data.batches.per_step
        self.network.train_mode()
        micro_batches = data.epoch(state.epoch, from_step=state.step)
        progress = self.log.progress(state.epoch, config.epochs, state.step, data.steps_per_epoch)
        seen, data_wait, compute, micro_index, step_loss = 0, 0.0, 0.0, 0, 0.0
        step_wrong: torch.Tensor | int = 0  # on the device: read once a step, with the loss
        step_images = 0
        tick = time.perf_counter()
        for batch in micro_batches:
            now = time.perf_counter()
            data_wait += now - tick
            data.skipped(batch.broken)
            images, labels = self._inputs(batch)
            last_micro = micro_index == per_step - 1
            with nullcontext() if last_micro or env.world == 1 else self.network.net.no_sync():  # sync on the last
                with self._autocast():
                    scores = self.network.net(images)
                    # sum over this micro-batch / the mean share (batch / processes), in every process,
                    # whatever its own share: DDP's mean over processes then gives the mean over the
                    # global batch, whatever the split (the first batch % world processes take one more).
                    loss = nn.functional.cross_entropy(scores.float(), labels, reduction="sum") / mean_share
                state.scaler.scale(loss).backward()
            step_loss += loss.item()
            step_wrong += (scores.detach().argmax(dim=1) != labels).sum()
            step_images += len(labels)
            micro_index += 1
            if not last_micro:
                compute += time.perf_counter() - now
                tick = time.perf_counter()
                continue
            if env.any(not math.isfinite(step_loss)):
                raise _Stop(self._diverged(step_loss), code=ExitCode.DIVERGED)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            state.optimizer.zero_grad(set_to_none=True)
            summed_loss, wrong, images = env.sum([step_loss, float(step_wrong), step_images])
            global_loss = summed_loss / env.world
            state.loss_sum += global_loss
            state.top1_wrong += round(wrong)
            state.images_seen += round(images)
            seen += config.batch_size
            state.step += 1
            micro_index, step_loss, step_wrong, step_images = 0, 0.0, 0, 0
            compute += time.perf_counter() - now
            progress.update(global_loss, config.batch_size, data_wait, compute)
            every = config.checkpoint_every
            if every and state.step % every == 0 and state.step < data.steps_per_epoch:
                self.checkpoints.save(self.network.model, state)
            if env.any(self.stop_requested):
                self.checkpoints.save(self.network.model, state)
                raise _Stop(
                    f"interrupted: saved {self.checkpoints.last} at {self.position()}; continue with: "
                    f"vggspec train --out {self.checkpoints.run_dir} --resume",
                    code=ExitCode.INTERRUPTED,
                )
            if fault := self.faults.get(state.epoch * data.steps_per_epoch + state.step):
                fail_for_a_test(fault)
            tick = time.perf_counter()
        progress.close()
        train_error = state.top1_wrong / state.images_seen if state.images_seen else 1.0
        return state.loss_sum / max(1, data.steps_per_epoch), train_error, seen, data_wait + compute, data_wait

    @torch.no_grad()
    def _validate(self) -> tuple[float, float, float]:
        """Top-1 and top-5 error and the mean cross-entropy over every validation image, each counted exactly
        once (NaN for the loss when no image could be read)."""
        self.network.model.eval()
        correct, count, loss_sum = torch.zeros(2, dtype=torch.float64), 0, 0.0
        for batch in self.data.validation():
            images, labels = self._inputs(batch)
            with self._autocast():
                scores = self.network.model(images).float()
            correct += top_k_correct(scores.cpu(), labels.cpu())
            loss_sum += nn.functional.cross_entropy(scores, labels, reduction="sum").item()
            count += len(labels)
        correct1, correct5, loss_sum, count = self.env.sum([*correct.tolist(), loss_sum, count])
        if count == 0:
            return 1.0, 1.0, math.nan
        return 1 - correct1 / count, 1 - correct5 / count, loss_sum / count

    def _inputs(self, batch: datalib.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A micro-batch on the device, normalised as the network's preprocessing says (and colour-shifted)."""
        preprocessing, device = self.network.model.preprocessing, self.env.device
        return datalib.to_device(batch, preprocessing, device, channels_last=self.config.channels_last)

    def _autocast(self):
        if self.config.amp is None:
            return nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.env.device.type, dtype=dtype)

    @property
    def classes(self) -> int:
        return len(self.data.train_set.folder.classes)

    def position(self) -> str:
        """``epoch 2, step 3``: where the run is (steps finished in the epoch under way)."""
        return position(self.state.epoch, self.state.step)

    @contextmanager
    def _stopping_on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT ask the loop to save and stop after the current step; the caller's handlers after."""

        def request_stop(signum: int, frame: Any) -> None:
            self.stop_requested = True

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def _leaving_on_a_stop(self, started: float, first_epoch: int) -> Iterator[None]:
        """A stop (:class:`_Stop`) said, by the process it happened in (out of memory) or by each machine's first
        (a stop all the processes made together), written down in RUN/summary.json (by rank 0, when it stopped too:
        the session began at ``started``, after ``first_epoch`` epochs), and the program left with its exit status."""
        try:
            yield
        except _Stop as stop:
            if stop.code == ExitCode.OUT_OF_MEMORY:
                log.info(str(stop) if self.env.world == 1 else f"process {self.env.rank}: {stop}")
            elif self.env.speaks:
                log.info(str(stop))
            state = self.state
            with suppress(SpecError), writing(self.checkpoints.run_dir):  # unwritable: the stop's message is the news
                self.log.close(
                    state.history, state.best, time.perf_counter() - started, first_epoch=first_epoch,
                    stopped=stop.reason, message=str(stop),
                )  # fmt: skip
            raise SystemExit(stop.code) from None

    def _decided(self) -> dict[str, str]:
        """The settings the run decided, as the configuration shows them: S, and what auto chose."""
        size, scale = self.spec.input.size, self.scale
        shown = str(scale) if self.config.scale else f"{scale} (for {size}×{size} inputs)"
        return {"scale": shown, **self.network.decided(self.config)}

    def _diverged(self, loss: float) -> str:
        """What a NaN or infinite loss left behind, and what to try: only what was not tried."""
        tries = [f"a lower --lr (this run: {self.config.lr:g})", *self.network.gentler_starts(self.spec, self.config)]
        return (
            f"the loss became {loss} at epoch {self.state.epoch + 1}, step {self.state.step + 1}: training stopped; "
            f"{kept(self.checkpoints.run_dir)}. Try {', or '.join(tries)}."
        )

    def _out_of_memory(self, phase: str) -> str:
        """What running out of memory left behind, and the smaller pass that keeps the recipe.

        Alone, the steps finished in this epoch are saved first: the weights and the optimizer are
        as they were after the last step (a step's half-accumulated gradients are not kept). With
        several processes the others wait in a collective that will not come, so nothing more is saved.
        """
        state, micro, last = self.state, self.data.batches.micro, self.checkpoints.last
        where = f"epoch {state.epoch + 1}, " + (f"step {state.step + 1}" if phase == "training" else "validation")
        if phase == "training" and self.env.world == 1 and state.step > 0:
            state.optimizer.zero_grad(set_to_none=True)
            self.checkpoints.save(self.network.model, state)
            kept_now = f"the {state.step} finished steps of this epoch are saved in {last}"
        elif last.exists():
            kept_now = f"the last checkpoint is kept ({last})"
        else:
            kept_now = "no checkpoint had been saved yet"
        size, device = self.spec.input.size, self.env.device
        return (
            f"out of memory in {where}: a pass of {micro} images of {size}×{size} does not fit on {device}; "
            f"{kept_now}. Continue with fewer images per pass and the same batch (gradient accumulation): "
            f"vggspec train --out {self.checkpoints.run_dir} --resume --micro-batch {max(1, micro // 2)}"
            + (" (or --micro-batch auto: the largest that fits)" if device.type == "cuda" else "")
        )


def _set_up(config: TrainConfig, env: Distributed, spec: Spec, scale: TrainingScale, held: ExitStack) -> _Trainer:
    """Everything one process's loop runs over, in order: the run folder (held by this run alone while ``held``
    lasts), its checkpoint to resume from, its data, the batch split, the colour statistics, the network, the
    optimizer's state, and the resumed state put back."""
    run_dir = Path(config.out)
    log = RunLog(run_dir, enabled=env.main and config.progress, quiet=not env.main)
    checkpoints = Checkpoints(run_dir, env, log)
    # What each process checks alone (its run folder, its copy of the data): a problem is told to the others
    # at the exchange that follows, where they would otherwise wait for this process until torch's timeout.
    try:
        held.enter_context(runs.held(run_dir, holder=env.main))  # before anything in it is read or written
        resumed = checkpoints.resumable(config, spec)
        checkpoints.make_folder(resumed=resumed is not None)
        train_folder, val_folder = scan(config, spec, env)
        config = with_batch_and_lr(config, train_folder, env, log)
    except SpecError as problem:
        env.agree({}, "the run", problem=problem)
        raise
    # Machines started with different commands (or data) would train different runs in lockstep.
    recipe = {key: value for key, value in config.model_dump().items() if key not in PER_MACHINE}
    env.agree(
        {"spec": spec_hash(spec)[:12], **recipe, "classes": len(train_folder.classes),
         "training images": len(train_folder.samples)},
        "the run",
    )  # fmt: skip
    batches: BatchSplit = config.batch_split(env.world, micro_batch_that_fits(config, spec, env, log), rank=env.rank)
    check_the_step_fits(config, spec, env, batches.micro)  # before the network is built and a batch read
    faults = planned_faults(env.rank)
    steps = steps_per_epoch(train_folder, config.batch_size)
    stats = colour_stats(config, spec, train_folder, env, log, resumed)
    classes = list(train_folder.classes)
    network = TrainingModel.build(config, spec, env, log, stats, classes, resumed)
    data = TrainingData(train_folder, val_folder, spec=spec, scale=scale, stats=stats, config=config, env=env,
                        batches=batches)  # fmt: skip
    state = TrainingState.start(network.model, config, network.new_layers, env.device)
    checkpoints.facts = {  # what the run is, in every checkpoint: how to continue it and what its numbers mean
        "config": config.model_dump(),
        "colour_stats": stats.model_dump_json(),
        "preprocessing": network.model.preprocessing.model_dump_json(),
        "classes": classes,
        "train_scale": scale.to_checkpoint(),
    }
    if job := Attempt.current().job:  # the torchrun job that writes the run resumes it when started again
        checkpoints.facts["torchrun_job"] = job
    if resumed is not None:
        checkpoints.restore(resumed, network.model, state, data_root=train_folder.root, config=config,
                            steps_per_epoch=steps, batches=batches)  # fmt: skip
    return _Trainer(config, env, log, spec, scale, data, network, state, checkpoints, faults)


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: vggspec train SPEC --data DIR")
