"""A run's checkpoints: what one holds, how a run resumes from one, and what a stopped run leaves.

``RUN/last.pt`` is written every epoch and every ``--checkpoint-every`` steps, whole or not at all (a
killed writer leaves a temporary, removed when the run resumes); ``RUN/best.pt`` is another name for
the best epoch's. Each holds the weights, the :class:`~.optimizer.TrainingState`, every process's
RNG states and what the run is (its settings, colour statistics, preprocessing, classes and S): all
that continuing it bit for bit needs, with one process or another number of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import files
from ..errors import CheckpointError, SpecError
from ..nn.checkpoint import (
    atomic_link,
    check_weights,
    checkpoint_spec,
    read_checkpoint,
    save_checkpoint,
    spec_hash,
    verify_checksums,
)
from ..plan.batch import BatchSplit, shares_text
from ..spec.spec import Spec
from ..units import human_bytes
from . import runs
from .config import TrainConfig
from .distributed import Attempt, Distributed
from .optimizer import TrainingState
from .runlog import RunLog, stopped_on_a_plateau


class Checkpoints:
    """One process's part in its run's checkpoints: every process hands its RNG states to rank 0, which writes."""

    def __init__(self, run_dir: Path, env: Distributed, log: RunLog) -> None:
        self.run_dir, self.env, self.log = run_dir, env, log
        self.last = run_dir / runs.LAST
        self.facts: dict[str, Any] = {}  # what the run is, in every checkpoint: how to continue it, what it means

    def resumable(self, config: TrainConfig, spec: Spec) -> dict[str, Any] | None:
        """The checkpoint ``--resume`` continues from, every entry checked; None for a new run (whose folder must
        hold no run)."""
        if not config.resume:
            if self.last.exists():
                raise SpecError(
                    f"{self.run_dir} already holds a run ({runs.LAST})",
                    hint="continue it with --resume, or choose another --out",
                )
            return None
        path = self.last  # there: TrainConfig.spec_file checked
        state = read_checkpoint(path)  # every entry checked to have the form vggspec writes
        if state.get("spec_hash") != spec_hash(spec):
            own = self.run_dir / runs.SPEC
            if Path(config.spec_file()).resolve() == own.resolve():  # SPEC left out: the run's own copy was edited
                raise CheckpointError(
                    f"{own} was changed after the run started: {path} was trained with another network",
                    hint=f"undo the edit to resume, or start a new run from its weights: vggspec train SPEC "
                    f"--weights {self.run_dir} --out NEW_RUN",
                )
            raise CheckpointError(
                f"{path} was trained with another spec than {config.spec}",
                hint=f"leave SPEC out to resume with the run's own ({own})",
            )
        if "rng" not in state:
            raise CheckpointError(f"{path} is corrupt: its 'rng' is missing (a run cannot resume without it)")
        check_weights(state, checkpoint_spec(state, path), path)  # the classes and statistics fit the network
        verify_checksums(state, path)  # the optimizer's state and the RNGs too
        return state

    def make_folder(self, *, resumed: bool) -> None:
        """RUN, created by rank 0; a resumed run's cleared of what a killed writer left (``.last.pt.XXXX.tmp``: a
        checkpoint's size each), since a resumed run owns its folder, and of the last session's RUN/summary.json,
        which this session's replaces when it ends (none: it did not get that far)."""
        if not self.env.main:
            return
        with writing(self.run_dir, hint="give --out a folder that can be created and written"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resumed:
            return
        with writing(self.run_dir):
            (self.run_dir / runs.SUMMARY).unlink(missing_ok=True)
        count, freed = files.remove_temporaries(self.run_dir, runs.RUN_FILES)
        if count:
            self.log.note(
                f"removed {count} temporary file{'s' if count > 1 else ''} a killed run left in {self.run_dir} "
                f"({human_bytes(freed)} freed)"
            )

    def save(self, model: nn.Module, state: TrainingState, *, best: bool = False) -> None:
        """RUN/last.pt (and RUN/best.pt: the same bytes, a second name). Every process hands rank 0 its RNG
        states, so resumes are exact with N processes too: each draws its own dropout masks."""
        rngs = self.env.gather(_rng_state(self.env.device))
        if not self.env.main:
            return
        with writing(self.run_dir):
            save_checkpoint(model, self.last, **state.state_dict(), rng=rngs, **self.facts)
            if best:
                atomic_link(self.last, self.run_dir / runs.BEST)

    def restore(
        self,
        checkpoint: dict[str, Any],
        model: nn.Module,
        state: TrainingState,
        *,
        data_root: Path,
        config: TrainConfig,
        steps_per_epoch: int,
        batches: BatchSplit,
    ) -> None:
        """The weights, the training state and this process's RNG states as ``checkpoint`` saved them, and where
        the run resumes said (the run's events log keeps it)."""
        trained_on, here = list(checkpoint.get("classes") or []), list(self.facts["classes"])
        if trained_on and trained_on != here:  # as many (checkpoint_spec and the data's check), but not the same
            i = next(i for i, (was, now) in enumerate(zip(trained_on, here)) if was != now)
            raise SpecError(
                f"{self.run_dir} was trained on other classes than {data_root} holds: "
                f"class {i} was '{trained_on[i]}', here it is '{here[i]}'",
                hint="resume with the data the run was started on (--data), or start a new run",
            )
        model.load_state_dict(checkpoint["state_dict"])
        try:
            state.load_state_dict(checkpoint)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            why = str(err).splitlines()[0] if str(err) else ""
            raise CheckpointError(
                f"{self.last} is corrupt: its training state cannot be restored ({type(err).__name__}: {why})"
            ) from None
        rngs, env = checkpoint["rng"], self.env
        rng = rngs[env.rank] if env.rank < len(rngs) else rngs[0]  # more processes than before
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and env.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], env.device)
        if state.stopped is None and state.epoch < config.epochs and state.history:
            state.history[-1].pop("stopped", None)  # its --epochs were not the end: given more, the run goes on
        if not env.main:
            return
        with writing(self.run_dir):
            self.log.rewrite_metrics(state.history)
        if state.stopped == "plateau":
            stop = stopped_on_a_plateau(state.epoch, state.best, config.lr_drops)
            self.log.note(f"{self.run_dir} {stop}: nothing to train")
            return
        if state.epoch >= config.epochs:
            self.log.note(
                f"{self.run_dir} has finished its {state.epoch} epochs: nothing to train "
                "(give a larger --epochs to train on)"
            )
            return
        with writing(self.run_dir):
            self._say_resumed(state, config, steps_per_epoch, batches, saved_by=len(rngs))

    def _say_resumed(
        self, state: TrainingState, config: TrainConfig, steps_per_epoch: int, batches: BatchSplit, saved_by: int
    ) -> None:
        """Where the run resumes, and why: a restart says what stopped the processes. Saved by another number of
        processes: the same global batch, and the same images in each step."""
        attempt, world = Attempt.current(), self.env.world
        saved = time.strftime("%H:%M:%S", time.localtime(self.last.stat().st_mtime))
        where = f"epoch {state.epoch + 1}, step {state.step}/{steps_per_epoch} ({self.last}, saved at {saved})"
        again = attempt.restarts or attempt.job  # a restart (torchrun's or launch's), or the job started again
        said = f"{attempt.describe()}: resuming at" if again else f"resuming {self.run_dir} at"
        self.log.event(f"{said} {where}")
        if saved_by != world:
            shares = shares_text(config.batch_size, world)
            self.log.event(
                f"saved by {saved_by} process{'es' if saved_by > 1 else ''}, resumed by {world}: each now "
                f"takes {shares} images a step (micro-batches of {batches.micro}); the global batch stays "
                f"{config.batch_size}, and each step sees the same images"
            )


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def position(epoch: int, step: int) -> str:
    """``epoch 2, step 3``: where a run is, from its epochs finished and its steps in the one under way."""
    return f"epoch {epoch + 1}, step {step}"


def kept(run_dir: Path) -> str:
    """What a stopped run leaves to continue from: its last checkpoint, and where it is."""
    last = run_dir / runs.LAST
    if not last.exists():
        return "no checkpoint had been saved yet (--checkpoint-every N saves within an epoch)"
    try:
        state = read_checkpoint(last, mmap=True)
        where = f": {position(state.get('epoch', 0), state.get('step', 0))}"
    except SpecError:  # said when it is resumed
        where = ""
    return f"the last good checkpoint is kept ({last}{where})"


@contextmanager
def writing(run_dir: Path, hint: str | None = None) -> Iterator[None]:
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
        if hint is None and (run_dir / runs.LAST).exists():
            hint = (
                f"checkpoints are written whole or not at all: {runs.LAST} is the last one saved; "
                "make room (or mend the folder), then continue with --resume"
            )
        raise SpecError(
            f"cannot write {where}: {failure.strerror or failure}",
            hint=hint or "nothing was saved yet: make room, or give --out a folder that can be written",
        ) from None
