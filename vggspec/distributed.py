"""Several processes: torchrun's elastic launcher, and what each process knows of the others.

The trainer and the evaluator both run one function per process; :func:`launch` starts them
(the user never calls torchrun on one machine), :class:`Distributed` is the rank, the device and
the few collective operations they need. With one process nothing of torch.distributed is used.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as distributed

from .errors import ExitCode, SpecError
from .logs import log, show_messages, shown_level


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
            distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
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

    def close(self) -> None:
        if self.world > 1 and distributed.is_initialized():
            distributed.destroy_process_group()


def launch(worker: Callable[[dict[str, Any]], None], config: dict[str, Any], *, world: int) -> None:
    """``worker(config)`` in ``world`` processes on this machine, through torchrun's elastic launcher.

    One process (or a process that torchrun started, on one machine of several): call it here.
    """
    if world <= 1 or "WORLD_SIZE" in os.environ:
        worker(config)
        return
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Each process imports torch and joins the group before it can say anything: seconds of silence.
    log.info(f"starting {world} processes on this machine ...")
    settings = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world,
        run_id=f"vggspec-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    # As torchrun does, keep N processes from each running a thread per core, which oversubscribes
    # the machine N times (2 CPU processes on 2 cores: 3.4× slower epochs); unlike torchrun's 1
    # thread, share the cores. A user's setting stands. The processes inherit the environment.
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads or str(max(1, _cpus() // world))
    # The launcher logs every worker's exit with a traceback, even a planned one (a NaN stop, an
    # interrupt): rank 0 has said what happened, and a crash's traceback is in the error below.
    quiet = _loggers("torch.distributed.elastic", "torch.multiprocessing")
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        elastic_launch(settings, _guarded)(worker, config, shown_level())
    except SignalException:  # Ctrl-C or kill: the launcher passed it on, and the processes saved
        raise SystemExit(ExitCode.INTERRUPTED) from None
    except Exception as err:  # noqa: BLE001 - the launcher wraps a worker's failure
        failures = getattr(err, "failures", {}) or {}
        codes = {rank: getattr(failure, "exitcode", None) for rank, failure in failures.items()}
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
        raise SpecError(f"a worker process failed: {err}") from None
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


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
        raise SystemExit(ExitCode.BAD_INPUT) from None
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
