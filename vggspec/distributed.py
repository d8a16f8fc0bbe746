"""Several processes: torchrun's elastic launcher, and what each process knows of the others.

The trainer and the evaluator both run one function per process; :func:`launch` starts them
(the user never calls torchrun on one machine), :class:`Distributed` is the rank, the device and
the few collective operations they need. With one process nothing of torch.distributed is used.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as distributed

from .errors import ExitCode, ProcessLost, SpecError
from .logs import log, show_messages, shown_level

# What :func:`launch` tells the processes of a restart (torchrun's agent sets its own
# TORCHELASTIC_RESTART_COUNT to 0 in every process it starts, and launch starts each attempt anew).
RESTART_COUNT, MAX_RESTARTS, RESTART_CAUSE = "VGGSPEC_RESTART_COUNT", "VGGSPEC_MAX_RESTARTS", "VGGSPEC_RESTART_CAUSE"
LAUNCHED = "VGGSPEC_LAUNCHED"  # set in the processes :func:`launch` starts


_STOPPED = "stopped"  # what a process that stops before it joined the others tells them (:func:`stop_the_others`)
_joined = False  # whether this process has been in a process group: it cannot join one again


def stop_the_others(error: SpecError, *, gpu: bool) -> None:
    """Under torchrun, a process that stopped on bad input before it joined the others (its spec, its data, its
    flags), and has said why, joins them only to tell them: they would wait for it until torch's timeout (30
    minutes), then end in a traceback. They stop at their first exchange (:meth:`Distributed.meet`), saying
    which process stopped and why. ``gpu``: it joins over NCCL, as the others do with --gpus."""
    if not under_torchrun() or _joined or int(os.environ["WORLD_SIZE"]) == 1:
        return
    env = Distributed.setup(gpu=gpu)
    try:
        env.meet({_STOPPED: error.message})
    finally:
        env.close()


def under_torchrun() -> bool:
    """Whether torchrun (or a launcher like it), not :func:`launch`, started this process: the processes,
    and their restarts, are then its own."""
    return "WORLD_SIZE" in os.environ and LAUNCHED not in os.environ


@dataclass(frozen=True)
class Attempt:
    """Which start of the processes this one belongs to: ``restarts`` 0 is the first; after a restart,
    what stopped the previous one (``cause``, when :func:`launch` restarted them; torchrun keeps it in
    its own log)."""

    restarts: int = 0
    max_restarts: int = 0
    cause: str | None = None
    job: str | None = None  # torchrun's --rdzv-id, when one was given: the same at every start of a job

    @classmethod
    def current(cls) -> Attempt:
        env = os.environ
        if int(env.get(RESTART_COUNT) or 0) > 0:
            return cls(int(env[RESTART_COUNT]), int(env.get(MAX_RESTARTS) or 0), env.get(RESTART_CAUSE))
        job = env.get("TORCHELASTIC_RUN_ID") if under_torchrun() else None
        return cls(
            int(env.get("TORCHELASTIC_RESTART_COUNT") or 0),
            int(env.get("TORCHELASTIC_MAX_RESTARTS") or 0),
            job=job if job and job != "none" else None,  # "none": torchrun's default, every job's
        )

    def describe(self) -> str:
        """``restart 1 of 3, after process 1 was killed by SIGKILL at 11:05:12``."""
        if not self.restarts:
            return f"torchrun job {self.job} started again"
        cause = self.cause or "a process stopped (torchrun's log says which)"
        return f"restart {self.restarts} of {self.max_restarts}, after {cause}"


def local_processes(gpus: int, nproc: int, given: Collection[str]) -> int:
    """How many processes to run on this machine: ``--gpus N`` or ``--nproc N``. Under torchrun its
    ``--nproc-per-node`` has started them, and a ``--gpus`` or ``--nproc`` given must say the same."""
    asked = gpus or nproc
    if not under_torchrun():
        return asked
    started = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ["WORLD_SIZE"])
    flag = "--gpus" if gpus else "--nproc"
    if flag[2:] in given and asked != started:
        raise SpecError(
            f"{flag} {asked}, but torchrun started {_count(started, 'process')} on this node "
            f"(--nproc-per-node {started})",
            hint=f"give torchrun's --nproc-per-node and {flag} the same number"
            + (", or leave --nproc out: under torchrun, processes without --gpus run on the CPU" if not gpus else ""),
        )
    return started


def lost_contact(err: BaseException) -> bool:
    """Whether a collective failed because another process is gone (gloo: the connection closed or reset;
    NCCL: torch's DistBackendError), rather than for a fault of this one."""
    return isinstance(err, distributed.DistError) or "gloo/transport" in str(err)


# How long a process that lost contact with the others waits for its launcher to stop it (:func:`await_the_launcher`).
LOST_CONTACT_GRACE = 30.0


SAME_INPUT_GRACE = 10.0  # seconds a process that met bad input waits for rank 0 to say it (and stop all)


def await_the_launcher(grace: float = LOST_CONTACT_GRACE) -> None:
    """A process of :func:`launch` that lost contact with the others waits for the launcher to end it
    (SIGTERM), then leaves.

    The launcher sees the dead process and stops the rest within its monitor interval (0.5 s): it sees
    the dead one first and names it, which it would not if a survivor left first (torch reports only
    the first exit it sees). Should nothing come, this one leaves after ``grace`` seconds.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(grace)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"


class Distributed:
    """Rank, world size and device; a process group when there is more than one process."""

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device) -> None:
        self.rank, self.world, self.local_rank, self.device = rank, world, local_rank, device

    @classmethod
    def setup(cls, *, gpu: bool) -> Distributed:
        """From torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if gpu:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        if world > 1:
            global _joined
            distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
            _joined = True
        return cls(rank, world, local_rank, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            distributed.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def barrier(self) -> None:
        if self.world > 1:
            distributed.barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj`` on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.main else None
        distributed.gather_object(obj, out, dst=0)
        return out

    def meet(self, news: dict[str, Any]) -> list[dict[str, Any]]:
        """The processes' first exchange: every one's ``news`` (whether it is a restart), in rank order. A
        process that stopped before it could run (:func:`stop_the_others`) stops them all here, each machine
        saying which and why."""
        everyone = self._everyone(news)
        for rank, (host, theirs) in enumerate(everyone):
            if _STOPPED in theirs:  # all stop at the first: one barrier, whoever else stopped
                problem = f"process {rank} on {host} stopped: {theirs[_STOPPED]}"
                self._stop_all(SpecError(problem, hint="mend it, then start every node"), said=_STOPPED in news)
                break
        return [theirs for _, theirs in everyone]

    def agree(self, facts: dict[str, Any], what: str) -> None:
        """Every process holds the same ``facts`` (a spec's hash, the recipe): processes started on several
        machines with different commands stop here, all of them (SystemExit, status 2), each machine saying
        which process differs from process 0, and in what."""
        everyone = self._everyone(facts)
        first_host, first = everyone[0]
        for rank, (host, theirs) in enumerate(everyone):
            if differing := [key for key in first if theirs.get(key) != first[key]]:
                shown = ", ".join(
                    f"{key} {_first_line(theirs.get(key), 40)} (process 0: {_first_line(first[key], 40)})"
                    for key in differing
                )
                self._stop_all(
                    SpecError(
                        f"the processes disagree on {what}: process {rank} on {host} has {shown}; process 0 runs on "
                        f"{first_host}",
                        hint="start every node with the same SPEC and settings (the data may be a copy of the same "
                        "images)",
                    ),
                    said=False,
                )

    def _everyone(self, item: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Every process's (host, ``item``), in rank order."""
        if self.world == 1:
            return [(socket.gethostname(), item)]
        everyone: list[Any] = [None] * self.world
        distributed.all_gather_object(everyone, (socket.gethostname(), item))
        return everyone

    def _stop_all(self, problem: SpecError, *, said: bool) -> None:
        """Every process leaves (status 2) once the first of each machine has said ``problem`` (unless this
        process ``said`` its own already): said before any leaves, as under torchrun a machine whose process
        leaves first can take the rendezvous store with it, and the launcher of another ends its processes
        before they speak."""
        if self.local_rank == 0 and not said:
            print(problem, file=sys.stderr, flush=True)
        distributed.barrier()
        if not said:
            raise SystemExit(problem.exit_code)

    def close(self) -> None:
        """Leave the group; a group the others have left already (on an error, theirs or ours) is left quietly."""
        if self.world > 1 and distributed.is_initialized():
            with contextlib.suppress(RuntimeError):
                distributed.destroy_process_group()


def launch(
    worker: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    *,
    world: int,
    max_restarts: int = 0,
) -> None:
    """``worker(config)`` in ``world`` processes on this machine, through torchrun's elastic launcher;
    when one dies (SIGKILL, the OOM killer, a crash), all are started again, up to ``max_restarts`` times.

    One process (or a process that torchrun started, on one machine of several): call it here, and
    restarts are torchrun's (its ``--max-restarts``).

    The restarts are this loop's, not the launcher's own (each attempt runs with ``max_restarts=0``):
    the launcher would also restart a planned stop (bad input, a diverged loss, a saved interrupt),
    which only repeats itself, and it tells neither the user nor the new processes which process
    died, nor when. Here the launcher's report of the attempt says it, and the next attempt's
    processes find it in their environment (:class:`Attempt`).
    """
    if world <= 1 or under_torchrun():
        worker(config)
        return
    # Each process imports torch and joins the group before it can say anything: seconds of silence.
    log.info(f"starting {world} processes on this machine ...")
    # As torchrun does, keep N processes from each running a thread per core, which oversubscribes
    # the machine N times (2 CPU processes on 2 cores: 3.4× slower epochs); unlike torchrun's 1
    # thread, share the cores. A user's setting stands. The processes inherit the environment.
    ours = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, _cpus() // world)), LAUNCHED: "1"}
    before = {name: os.environ.get(name) for name in (*ours, RESTART_COUNT, MAX_RESTARTS, RESTART_CAUSE)}
    # The launcher logs every worker's exit with a traceback, even a planned one (a NaN stop, an
    # interrupt): rank 0 has said what happened, and a death is said below.
    quiet = _loggers("torch.distributed.elastic", "torch.multiprocessing")
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        for restarts in range(max_restarts + 1):
            os.environ.update(ours)
            died = _attempt(worker, config, world, run_id=f"vggspec-{os.getpid()}-{restarts}")
            if died is None:
                return
            if restarts == max_restarts:
                raise ProcessLost(died + (f"; {_count(max_restarts, 'restart')} used up" if max_restarts else ""))
            log.info(f"{died}: starting the {world} processes again (restart {restarts + 1} of {max_restarts})")
            ours.update({RESTART_COUNT: str(restarts + 1), MAX_RESTARTS: str(max_restarts), RESTART_CAUSE: died})
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _attempt(worker: Callable[[dict[str, Any]], None], config: dict[str, Any], world: int, run_id: str) -> str | None:
    """One start of the ``world`` processes: None when they finished; what died when one did. A planned
    stop (which rank 0 has explained) ends the program with its status, bad input on another rank in one line."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    settings = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    try:
        elastic_launch(settings, _guarded)(worker, config, shown_level())
    except SignalException:  # Ctrl-C or kill: the launcher passed it on, and the processes saved
        raise SystemExit(ExitCode.INTERRUPTED) from None
    except Exception as err:  # noqa: BLE001 - the launcher wraps a worker's failure
        failures = getattr(err, "failures", None)
        if not failures:
            raise SpecError(f"the processes could not be started: {_first_line(err)}") from None
        codes = {rank: failure.exitcode for rank, failure in failures.items()}
        for rank in sorted(codes, key=lambda r: r != 0):  # rank 0 first: it is the one that speaks
            # Planned stops, which rank 0 has explained: interrupted (saved), diverged, bad input.
            planned = (ExitCode.INTERRUPTED, ExitCode.DIVERGED, ExitCode.OUT_OF_MEMORY)
            planned += (ExitCode.BAD_INPUT,) if rank == 0 else ()  # out of memory: said by the process it hit
            if codes[rank] in planned:
                raise SystemExit(codes[rank]) from None
            if codes[rank] == ExitCode.BAD_INPUT:
                raise SpecError(
                    f"process {rank} stopped on bad input that process 0 did not see",
                    hint="run with one process (no --nproc or --gpus) to read its message",
                ) from None
        return _first_failure(failures)
    return None


def _first_failure(failures: dict[int, Any]) -> str:
    """``process 1 was killed by SIGKILL at 11:05:12``: the first of the launcher's failures (the others
    stopped, or lost it, after), a signal first at the same second."""
    rank, failure = min(failures.items(), key=lambda item: (item[1].timestamp, item[1].exitcode >= 0, item[0]))
    when = time.strftime("%H:%M:%S", time.localtime(failure.timestamp))
    if failure.exitcode < 0:
        return f"process {rank} was killed by {failure.signal_name()} at {when}"
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message
    why = "" if message.startswith("To enable traceback") else f" ({_first_line(message)})"
    return f"process {rank} failed with status {failure.exitcode} at {when}{why}"


def _first_line(text: object, width: int = 200) -> str:
    """The first line of ``text``, cut to ``width`` characters: a message's gist, a value shown in one."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def worker_start_method(workers: int) -> str | None:
    """How DataLoader workers start: forked on Linux, as in any process torchrun starts.

    Processes that the elastic launcher spawns inherit "spawn" as their default, and a spawned
    worker imports torch and torchvision again, for every loader and epoch: a 2-process run on
    400 small images took 68 s instead of 22 s. Elsewhere, the platform's default.
    """
    return "fork" if workers > 0 and sys.platform == "linux" else None


def _guarded(worker: Callable[[dict[str, Any]], None], config: dict[str, Any], messages: int | None = None) -> None:
    """``worker(config)``, with bad input said once and cleanly (by rank 0), as one process says it,
    and vggspec's messages shown as the launching process shows them (``messages``: their level).

    Every process usually meets the same bad input (a missing folder, a class count); without
    this, each would end in a traceback that the launcher then prints.
    """
    if messages is not None:
        show_messages(messages)
    try:
        worker(config)
    except SpecError as err:
        if os.environ.get("RANK", "0") == "0":
            print(err, file=sys.stderr, flush=True)
        elif err.exit_code == ExitCode.BAD_INPUT:
            # Rank 0 usually meets the same input a moment later and says it; leaving first would have
            # the launcher end rank 0 before it speaks (seen on a loaded machine), leaving only "process
            # 1 stopped on bad input". So wait for the launcher to end this one, a few seconds at most.
            await_the_launcher(SAME_INPUT_GRACE)
        raise SystemExit(err.exit_code) from None
    finally:
        gc.freeze()  # the process exits next: skip the last collections, as the vggspec program does


def _loggers(*prefixes: str) -> list[logging.Logger]:
    """The loggers under ``prefixes`` that exist (some set their own level, so each is set)."""
    names = set(prefixes) | {
        name for name in logging.root.manager.loggerDict if any(name.startswith(p + ".") for p in prefixes)
    }
    return [logging.getLogger(name) for name in sorted(names)]


def _cpus() -> int:
    """The cores this process may run on (its affinity, e.g. under taskset or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
