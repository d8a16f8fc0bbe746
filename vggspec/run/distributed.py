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
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as distributed

from ..errors import ExitCode, ProcessLost, SpecError
from ..logs import log, restore_torch_native_logs, show_messages, shown_level
from .rendezvous import RDZV_PORT, Machines

# What :func:`launch` tells the processes of a restart (torchrun's agent sets its own
# TORCHELASTIC_RESTART_COUNT to 0 in every process it starts, and launch starts each attempt anew).
RESTART_COUNT, MAX_RESTARTS, RESTART_CAUSE = "VGGSPEC_RESTART_COUNT", "VGGSPEC_MAX_RESTARTS", "VGGSPEC_RESTART_CAUSE"
LAUNCHED = "VGGSPEC_LAUNCHED"  # set in the processes :func:`launch` starts
STATUS = "VGGSPEC_STATUS"  # a folder where each process :func:`launch` starts says it runs, and how it stopped


TELLING_TIMEOUT = 60  # seconds a machine that stops before its processes start waits to tell the others
_STOPPED = "stopped"  # what a process that stops before it joined the others tells them (:func:`stop_the_others`)
_joined = False  # whether this process has been in a process group: it cannot join one again


def stop_the_others(error: SpecError, *, gpu: bool) -> None:
    """Under torchrun, a process that stopped on bad input before it joined the others (its spec, its data, its
    flags), and has said why, joins them only to tell them: they would wait for it until torch's timeout (30
    minutes), then end in a traceback. They stop at their first exchange (:meth:`Distributed.meet`), saying
    which process stopped and why. ``gpu``: it joins over NCCL, as the others do with --gpus."""
    if not (under_torchrun() or several_machines()) or _joined or int(os.environ["WORLD_SIZE"]) == 1:
        return
    env = Distributed.setup(gpu=gpu)
    try:
        env.meet({_STOPPED: error.headline})
    finally:
        env.close()


def tell_the_machines(error: SpecError, machines: Machines, *, gpu: bool) -> NoReturn:
    """This machine's vggspec stops on ``error`` before it starts its processes (a spec it cannot read, GPUs it
    lacks): said here, then told to the other machines, which would otherwise wait out ``--rdzv-timeout`` at the
    rendezvous. One process joins them only to tell them (:func:`stop_the_others`): they stop at their first
    exchange, saying which machine stopped and why. Not for ``MIN:MAX`` machines (the others may go on without
    this one, and a late joiner would stop a running job), nor where the others' NCCL cannot be joined (no GPU)."""
    if not machines.several or machines.low != machines.high or (gpu and not torch.cuda.is_available()):
        raise error
    print(error, file=sys.stderr, flush=True)
    # Not the whole --rdzv-timeout: the same bad flag stops every machine, and each tells the others at once;
    # a command tried on one machine alone would wait for nobody.
    machines = machines._replace(timeout=min(machines.timeout, TELLING_TIMEOUT))
    with contextlib.suppress(SpecError, SystemExit):  # they could not be told (gone, never came): said already
        launch(
            _tell_the_others,
            {"message": error.headline, "gpu": gpu},
            world=1,
            machines=machines,
            announce=f"telling the other machines at {machines.endpoint} that this one stops (for up to "
            f"{machines.timeout} s) ...",
        )
    raise SystemExit(error.exit_code)


def _tell_the_others(message: dict[str, Any]) -> None:
    """Leaves with the status of bad input, said: a launcher whose processes all succeed waits for the other
    machines' launchers to end theirs (torch's exit barrier), and theirs stopped."""
    stop_the_others(SpecError(message["message"]), gpu=message["gpu"])
    raise SystemExit(ExitCode.BAD_INPUT)


def several_machines() -> bool:
    """Whether the processes of this run are on more than one machine (torchrun's or :func:`launch`'s)."""
    world = os.environ.get("WORLD_SIZE", "1")
    return os.environ.get("LOCAL_WORLD_SIZE", world) != world


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

    @property
    def speaks(self) -> bool:
        """The first process of its machine: it says, once for its machine, what all the processes saw (a
        stop that every process makes together), so that the terminal of every machine shows it."""
        return self.local_rank == 0

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
        self._stop_if_one_stopped(everyone, said=_STOPPED in news)
        return [theirs for _, theirs in everyone]

    def agree(self, facts: dict[str, Any], what: str, *, problem: SpecError | None = None) -> None:
        """Every process holds the same ``facts`` (a spec's hash, the recipe): processes started on several
        machines with different commands stop here, all of them (SystemExit, status 2), each machine saying
        which process differs from process 0, and in what. A process that met a ``problem`` of its own (its
        copy of the data) brings it here instead of its facts: the others stop, saying which and why, and it
        goes on to raise the problem itself."""
        if problem is not None and self.world == 1:
            return
        everyone = self._everyone({_STOPPED: problem.headline} if problem else facts)
        self._stop_if_one_stopped(everyone, said=problem is not None)
        if problem is not None:
            return
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

    def _stop_if_one_stopped(self, everyone: list[tuple[str, dict[str, Any]]], *, said: bool) -> None:
        """All stop at the first process that brought news of its stop: one barrier, whoever else stopped. One
        that ``said`` its own returns, to raise it."""
        for rank, (host, theirs) in enumerate(everyone):
            if _STOPPED in theirs:
                problem = f"process {rank} on {host} stopped: {theirs[_STOPPED]}"
                self._stop_all(SpecError(problem, hint="mend it, then start every node"), said=said)
                return

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
        if self.speaks and not said:
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
    worker: Callable[[dict[str, Any]], Any],
    config: dict[str, Any],
    *,
    world: int,
    max_restarts: int = 0,
    machines: Machines = Machines(),
    announce: str | None = None,
) -> Any:
    """``worker(config)`` in ``world`` processes on this machine, through torchrun's elastic launcher, with
    those of the other ``machines`` (which start the same command) when there are several; when one dies
    (SIGKILL, the OOM killer, a crash), all are started again, up to ``max_restarts`` times. ``announce``:
    the line said while the processes start, in place of the usual one.

    One process on one machine, or a process that torchrun started: call it here (and return what it
    returns), and restarts are torchrun's (its ``--max-restarts``). Several: None.

    The restarts are this loop's, not the launcher's own (each attempt runs with ``max_restarts=0``):
    the launcher would also restart a planned stop (bad input, a diverged loss, a saved interrupt),
    which only repeats itself, and it tells neither the user nor the new processes which process
    died, nor when. Here the launcher's report of the attempt says it, and the next attempt's
    processes find it in their environment (:class:`Attempt`). Every machine counts its own attempts,
    and the machines of attempt N meet under the rendezvous name ``vggspec-N``.
    """
    if under_torchrun() and machines.several:
        raise SpecError(
            "under torchrun, the machines are torchrun's: give --nnodes and --rdzv-endpoint to torchrun, not vggspec",
            hint="or start vggspec itself on every machine, without torchrun: vggspec train ... --nnodes N "
            "--rdzv-endpoint HOST:PORT",
        )
    if (world <= 1 and not machines.several) or under_torchrun():
        return worker(config)
    restore_torch_native_logs()  # the processes log as the user's environment says
    # Each process imports torch and joins the group before it can say anything: seconds of silence.
    if announce:
        log.info(announce)
    elif machines.several:
        log.info(
            f"meeting {machines.describe()} at {machines.endpoint}, {_count(world, 'process')} on this one "
            f"(waiting up to {machines.timeout} s: --rdzv-timeout) ..."
        )
    else:
        log.info(f"starting {world} processes on this machine ...")
    # As torchrun does, keep N processes from each running a thread per core, which oversubscribes
    # the machine N times (2 CPU processes on 2 cores: 3.4× slower epochs); unlike torchrun's 1
    # thread, share the cores. A user's setting stands. The processes inherit the environment.
    ours = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, _cpus() // world)), LAUNCHED: "1"}
    before = {name: os.environ.get(name) for name in (*ours, RESTART_COUNT, MAX_RESTARTS, RESTART_CAUSE, STATUS)}
    # The launcher logs every worker's exit with a traceback, even a planned one (a NaN stop, an
    # interrupt): the processes have said what happened, and a death is said below. Its modules set
    # their loggers' levels as they are imported: imported first, so that each logger is there to quiet.
    import torch.distributed.launcher.api  # noqa: F401

    quiet = _loggers("torch.distributed.elastic", "torch.multiprocessing")
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    store = _serve_the_rendezvous(machines) if machines.several else None  # noqa: F841 - held to the end
    try:
        for restarts in range(max_restarts + 1):
            os.environ.update(ours)
            run_id = f"vggspec-{restarts}" if machines.several else f"vggspec-{os.getpid()}-{restarts}"
            with tempfile.TemporaryDirectory(prefix="vggspec-status-") as status:
                os.environ[STATUS] = status
                died = _attempt(worker, config, world, run_id, machines, Path(status))
            if died is None:
                return None
            if restarts == max_restarts:
                raise ProcessLost(died + (f"; {_count(max_restarts, 'restart')} used up" if max_restarts else ""))
            again = f"the {world} processes" if world > 1 else "the process"
            here = " of this machine" if machines.several else ""
            log.info(f"{died}: starting {again}{here} again (restart {restarts + 1} of {max_restarts})")
            ours.update({RESTART_COUNT: str(restarts + 1), MAX_RESTARTS: str(max_restarts), RESTART_CAUSE: died})
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _attempt(
    worker: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    world: int,
    run_id: str,
    machines: Machines,
    status: Path,
) -> str | None:
    """One start of the ``world`` processes: None when they finished; what died when one did. A planned
    stop (which rank 0 has explained) ends the program with its status, bad input on another rank in one line."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.rendezvous.api import RendezvousError, RendezvousTimeoutError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    rendezvous: dict[str, Any] = {"endpoint": "localhost:0"}
    if machines.several:
        # How long to wait for the others, and for HOST:PORT to answer (torchrun's read_timeout, 60 s, would
        # give up on a machine that starts a minute after this one).
        timeouts = {"join_timeout": machines.timeout, "read_timeout": machines.timeout}
        # The store is the launch's (:func:`_serve_the_rendezvous`): every attempt's launcher only reaches it.
        rendezvous = {"endpoint": machines.endpoint, "configs": {**timeouts, "is_host": False}}
    settings = LaunchConfig(
        min_nodes=machines.low,
        max_nodes=machines.high,
        nproc_per_node=world,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint=rendezvous["endpoint"],
        rdzv_configs=rendezvous.get("configs", {}),
        max_restarts=0,
        monitor_interval=0.5,
    )
    watchdog = _Watchdog(machines, status) if machines.several else contextlib.nullcontext()
    try:
        with watchdog:
            elastic_launch(settings, _guarded)(worker, config, shown_level())
    except SignalException:  # Ctrl-C or kill: the launcher passed it on, and the processes saved
        raise SystemExit(ExitCode.INTERRUPTED) from None
    except Exception as err:  # noqa: BLE001 - the launcher wraps a worker's failure
        said = _said(status)
        failures = getattr(err, "failures", None)
        if not failures:
            if said:  # the processes ran, and stopped as they said; the rendezvous went with another machine
                raise SystemExit(said) from None
            if isinstance(err, RendezvousTimeoutError):
                raise _not_all_came(machines) from None
            if isinstance(err, RendezvousError) and not _running(status):
                raise _unreachable(machines, err) from None
            if isinstance(err, RendezvousError):  # the machine that held the rendezvous is gone
                return f"the rendezvous at {machines.endpoint} was lost ({_first_line(err)})"
            raise SpecError(f"the processes could not be started: {_first_line(err)}") from None
        codes = {rank: failure.exitcode for rank, failure in failures.items()}
        leader = min(codes)  # this machine's first process: the one that speaks for it
        for rank in sorted(codes):
            # Planned stops, which this machine's first process has explained: interrupted (saved), diverged,
            # bad input; out of memory is said by the process it hit.
            planned = (ExitCode.INTERRUPTED, ExitCode.DIVERGED, ExitCode.OUT_OF_MEMORY)
            planned += (ExitCode.BAD_INPUT,) if rank == leader else ()
            if codes[rank] in planned:
                raise SystemExit(codes[rank]) from None
            if codes[rank] == ExitCode.BAD_INPUT:
                raise SpecError(
                    f"process {rank} stopped on bad input that process {leader} did not see",
                    hint="run with one process (no --nproc or --gpus) to read its message",
                ) from None
        return _first_failure(failures)
    return None


def _serve_the_rendezvous(machines: Machines) -> Any | None:
    """The rendezvous's store, when ``machines.endpoint`` names this machine and its port is free here: kept for
    the whole launch, every restart included (None when another process serves it).

    Left to each attempt's launcher, the store goes with the attempt of the machine that served it: a machine
    that restarts sooner meets the old store, loses it a moment later, and the machines never meet again.
    """
    from torch.distributed import TCPStore
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    host, port = parse_rendezvous_endpoint(machines.endpoint, default_port=RDZV_PORT)
    if not _names_this_machine(host):
        return None
    try:
        return TCPStore(
            host, port, is_master=True, multi_tenant=True, wait_for_workers=False, timeout=timedelta(seconds=60)
        )
    except (RuntimeError, ValueError, OSError):  # the port is taken: by the launcher of another machine here, or not
        return None


def _names_this_machine(host: str) -> bool:
    """Whether ``host`` is this machine, as torch's c10d rendezvous decides who serves its store."""
    try:
        from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname
    except ImportError:  # a private helper of torch's: the plain cases without it
        return host in ("localhost", socket.gethostname(), socket.getfqdn()) or host.startswith("127.")
    return _matches_machine_hostname(host)


class _Watchdog:
    """Ends a launcher whose processes have not started ``machines.timeout`` seconds (and a margin) after the
    rendezvous began: the rendezvous's own timeouts do not cover a port held by another program, which torch's
    store client waits on for as long as that program keeps the connection open."""

    MARGIN = 15.0  # seconds past the timeout, for the rendezvous's own error to come first

    def __init__(self, machines: Machines, status: Path) -> None:
        self.machines, self.status = machines, status
        self.timer = threading.Timer(machines.timeout + self.MARGIN, self._expire)
        self.timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()

    def _expire(self) -> None:
        if _running(self.status):
            return
        print(_unreachable(self.machines, None), file=sys.stderr, flush=True)
        os._exit(ExitCode.BAD_INPUT)  # nothing started yet; the launcher's threads are stuck in torch's client


def _running(status: Path) -> bool:
    """Whether a process of this attempt has started: the rendezvous was done."""
    return any(status.iterdir())


def _said(status: Path) -> int:
    """The status a process of this attempt stopped with having said why (its first process's), 0 for none."""
    stops = [int(text) for path in sorted(status.iterdir()) if (text := path.read_text().strip()).isdigit()]
    return next((code for code in stops if code), 0)


def _not_all_came(machines: Machines) -> SpecError:
    return SpecError(
        f"not every machine came to the rendezvous at {machines.endpoint} within {machines.timeout} s: "
        f"--nnodes {machines.low if machines.low == machines.high else f'{machines.low}:{machines.high}'} "
        "waits for them all (for MIN of MIN:MAX)",
        hint="start the same command, with the same --nnodes and --rdzv-endpoint, on every machine within "
        "--rdzv-timeout seconds of the first",
    )


def _unreachable(machines: Machines, err: BaseException | None) -> SpecError:
    """Why the rendezvous at ``machines.endpoint`` did not happen: nothing answers there, or something that is
    not a rendezvous holds the port."""
    host, _, port = (machines.endpoint or "").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            answers = True
    except OSError as probe:
        answers, reason = False, probe.strerror or str(probe)
    if answers:
        return SpecError(
            f"{machines.endpoint} answers, but not as a rendezvous: another program holds port {port} on {host}",
            hint="choose a free port for --rdzv-endpoint, the same on every machine",
        )
    why = f": {reason}" if err is None else f" ({reason})"
    return SpecError(
        f"cannot reach the rendezvous at {machines.endpoint} within {machines.timeout} s{why}",
        hint=f"HOST must be one of the machines, started with the same command, and port {port} open to the others",
    )


def _first_failure(failures: dict[int, Any]) -> str:
    """``process 1 was killed by SIGKILL at 11:05:12``: the first of the launcher's failures (the others
    stopped, or lost it, after), a signal first at the same second."""
    rank, failure = min(failures.items(), key=lambda item: (item[1].timestamp, item[1].exitcode >= 0, item[0]))
    when = time.strftime("%H:%M:%S", time.localtime(failure.timestamp))
    if failure.exitcode < 0:
        return f"process {rank} was killed by {failure.signal_name()} at {when}"
    if failure.exitcode == ExitCode.LOST:  # it has said so: another process, here or on another machine, died
        return f"process {rank} lost contact with the others at {when}"
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message
    why = "" if message.startswith("To enable traceback") else f" ({_first_line(message)})"
    return f"process {rank} failed with status {failure.exitcode} at {when}{why}"


def _first_line(text: object, width: int = 200) -> str:
    """The first line of ``text``, cut to ``width`` characters: a message's gist, a value shown in one."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _guarded(worker: Callable[[dict[str, Any]], None], config: dict[str, Any], messages: int | None = None) -> None:
    """``worker(config)``, with bad input said once and cleanly (by rank 0), as one process says it,
    and vggspec's messages shown as the launching process shows them (``messages``: their level).

    Every process usually meets the same bad input (a missing folder, a class count); without
    this, each would end in a traceback that the launcher then prints.
    """
    if messages is not None:
        show_messages(messages)
    _record("")
    try:
        worker(config)
    except SpecError as err:
        if os.environ.get("LOCAL_RANK", "0") == "0":  # the first process of each machine
            print(err, file=sys.stderr, flush=True)
            _record(str(err.exit_code))
        elif err.exit_code == ExitCode.BAD_INPUT:
            # Rank 0 usually meets the same input a moment later and says it; leaving first would have
            # the launcher end rank 0 before it speaks (seen on a loaded machine), leaving only "process
            # 1 stopped on bad input". So wait for the launcher to end this one, a few seconds at most.
            await_the_launcher(SAME_INPUT_GRACE)
        raise SystemExit(err.exit_code) from None
    except SystemExit as stop:  # a planned stop, said (the others' news of a process that stopped, a NaN loss)
        if isinstance(stop.code, int) and stop.code in _SAID:
            _record(str(stop.code))
        raise
    finally:
        gc.freeze()  # the process exits next: skip the last collections, as the vggspec program does


_SAID = (ExitCode.BAD_INPUT, ExitCode.DIVERGED, ExitCode.OUT_OF_MEMORY, ExitCode.INTERRUPTED)


def _record(state: str) -> None:
    """This process's line in :func:`launch`'s status folder: empty while it runs, the status of a planned stop."""
    if folder := os.environ.get(STATUS):
        Path(folder, os.environ.get("LOCAL_RANK", "0")).write_text(state)


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
