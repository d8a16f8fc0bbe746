"""What train and evaluate do before their processes start, and the start itself.

Both commands read the machines their flags ask for (:mod:`.rendezvous`), check what this machine
can check before anything runs (the data given, its GPUs, how many processes it runs), and then
start the processes (:func:`.distributed.launch`: here, or N of them, on one machine or several).
A machine that stops on bad input before its processes start tells the other machines, which would
otherwise wait for it at the rendezvous until ``--rdzv-timeout``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ..errors import SpecError
from .config import EvaluateConfig, TrainConfig
from .distributed import launch, local_processes, tell_the_machines
from .rendezvous import Machines, machines


class Launcher:
    """One command's processes (``command``: ``train`` or ``evaluate``): the machines its flags ask for, the checks
    made before any process starts, and the start."""

    def __init__(self, command: str, config: TrainConfig | EvaluateConfig) -> None:
        self.command, self.gpus = command, config.gpus
        self.machines: Machines = machines(config)  # a rendezvous half given: a SpecError, nobody to tell

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Bad input found in this block, before any process starts: said, and told to the other machines."""
        try:
            yield
        except SpecError as err:
            tell_the_machines(err, self.machines, gpu=bool(self.gpus))

    def processes(self, gpus: int, nproc: int, given: Collection[str]) -> int:
        """How many processes this machine runs: ``--gpus N`` (GPUs it must have) or ``--nproc N``; under
        torchrun, those it started (:func:`.distributed.local_processes`)."""
        if gpus and gpus > (available := torch.cuda.device_count()):
            raise SpecError(
                f"--gpus {gpus} asks for more GPUs than this machine has ({available})",
                hint=f"use --gpus 0 (or leave it out) to {self.command} on the CPU, --nproc N for N CPU processes",
            )
        return local_processes(gpus, nproc, given)

    def start(
        self, worker: Callable[[dict[str, Any]], Any], values: dict[str, Any], *, world: int, max_restarts: int = 0
    ) -> Any:
        """``worker(values)`` in ``world`` processes on each machine (its result, when it ran here alone)."""
        return launch(worker, values, world=world, max_restarts=max_restarts, machines=self.machines)


def where_is_the_data(data: str | None, layout: str) -> str:
    """``data``, given: else a SpecError that asks for it and says how its images are laid out (``layout``)."""
    if data is None:
        raise SpecError(f"where is the data? give --data DIR ({layout})")
    return data
