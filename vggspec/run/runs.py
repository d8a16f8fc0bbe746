"""A training run's folder: what ``vggspec train --out RUN`` writes there, and how a path that
names a run or a checkpoint is resolved.

    RUN/last.pt            the latest checkpoint (every epoch, every --checkpoint-every steps)
    RUN/best.pt            another name for the best epoch's last.pt
    RUN/spec.vgg           the spec the run was started with, comments kept (--resume reads it)
    RUN/config.json        the resolved training configuration
    RUN/colour_stats.json  mean RGB and colour PCA of the training images
    RUN/metrics.jsonl      one line per epoch
    RUN/events.log         resumes and restarts: when, what stopped the run, where it went on
    RUN/curves.png         loss, errors and learning rate against epochs
    RUN/summary.json       how the run's last session ended: why, its best epoch, its files (train --format json)
    RUN/tensorboard/       TensorBoard event files
    RUN/.vggspec.lock      who holds the folder: one run at a time (:func:`held`)

Torch-free: the command line reads a run's data folder without importing torch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SpecError
from ..logs import log
from ..nn.weights_file import BEST, LAST, checkpoint_path  # noqa: F401  (the run folder's checkpoints)

SPEC, CONFIG = "spec.vgg", "config.json"
COLOUR_STATS, METRICS, CURVES, TENSORBOARD = "colour_stats.json", "metrics.jsonl", "curves.png", "tensorboard"
EVENTS = "events.log"  # appended to, a line at a time, as metrics.jsonl is between its rewrites
SUMMARY = "summary.json"
RUN_FILES = (LAST, BEST, SPEC, CONFIG, COLOUR_STATS, METRICS, CURVES, SUMMARY)
"""The files of a run folder that are written whole (:mod:`vggspec.files`): their temporaries are ``.NAME.*.tmp``."""
LOCK = ".vggspec.lock"


@contextmanager
def held(run_dir: Path, *, holder: bool = True) -> Iterator[None]:
    """``run_dir`` held by this run alone for the block: a second run started on it is refused (a SpecError that
    names the process holding it) before it reads or writes anything there.

    The hold is the operating system's lock on ``RUN/.vggspec.lock`` (``flock``), which dies with its process:
    a killed run leaves no lock that stops the next, only its name in the file, which the next run reads to
    say that it took the folder over. A folder this run created and left with nothing in it (it stopped on
    bad input) is removed again. ``holder``: this process is the one that writes the folder (rank 0); the
    others hold nothing.
    """
    if not holder:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock to take
        yield
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        where = err.filename if err.filename is not None and Path(os.fsdecode(err.filename)) != run_dir else None
        raise SpecError(
            f"cannot write {where or f'in {run_dir}'}: {err.strerror or err}",
            hint="give --out a folder that can be created and written",
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpecError(
                f"{run_dir} is in use by another run ({_holder_text(_read_holder(fd))})",
                hint="one run writes a folder at a time: wait for that one to finish (or stop it), or give --out "
                "another folder",
            ) from None
        previous = _read_holder(fd)
        if previous:  # written by a run that never released it: killed, or its machine went down
            log.info(f"note: took over {run_dir} from a run that did not finish ({_holder_text(previous)})")
        _write_holder(fd, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                           "command": " ".join(sys.argv)})  # fmt: skip
        try:
            yield
        finally:
            _write_holder(fd, None)  # released whole: the next run has nothing to take over
            if created and {p.name for p in run_dir.iterdir()} == {LOCK}:  # nothing but the lock: as it was
                os.unlink(run_dir / LOCK)
                run_dir.rmdir()
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _write_holder(fd: int, holder: dict | None) -> None:
    os.ftruncate(fd, 0)
    if holder is not None:
        os.pwrite(fd, json.dumps(holder).encode(), 0)


def _holder_text(holder: dict | None) -> str:
    """``process 4242 on node1, started 14:02:11: vggspec train D --out runs/d``."""
    if not holder:
        return "a process that has not said which"
    started = holder.get("started")
    when = time.strftime(", started %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    command = f": {holder['command']}" if holder.get("command") else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}{when}{command}"


def new_run_folder(spec_file: str | Path) -> Path:
    """Where a run goes when ``--out`` is not given: ``runs/<spec>-<date>-<time>``."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(spec_file).stem}-{stamp}"


def started_data(run: str | Path) -> str | None:
    """The data folder a run was started on (its ``config.json``), or None when there is no run."""
    try:
        return json.loads((Path(run) / CONFIG).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
