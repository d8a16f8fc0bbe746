"""Failures at known points, for the tests of restarts and stops: none but in tests.

``VGGSPEC_TEST_FAULT_AT=RANK:STEP[:STARTS[:WHAT]],...`` makes process RANK fail once it has finished
step STEP of the run (counted over the epochs, from 1), in the first STARTS starts of the processes
(default 1): WHAT is ``kill`` (SIGKILL itself, the default), ``oom`` (run out of memory as the next
step begins) or ``term`` (SIGTERM its launcher, as a user stopping the run on that machine). No
timing decides where the run was when it failed.
"""

from __future__ import annotations

import os
import signal

import torch

from .distributed import Attempt

TEST_FAULT_AT = "VGGSPEC_TEST_FAULT_AT"
_TEST_FAULTS = ("kill", "oom", "term")


def planned_faults(rank: int) -> dict[int, str]:
    """The steps of the run after which this process fails, and how (:data:`TEST_FAULT_AT`)."""
    faults = {}
    for entry in filter(None, os.environ.get(TEST_FAULT_AT, "").split(",")):
        victim, step, starts, what = (entry.split(":") + ["", ""])[:4]
        starts, what = starts or "1", what or "kill"
        if what not in _TEST_FAULTS:
            raise ValueError(f"{TEST_FAULT_AT}: {what!r} is not one of {', '.join(_TEST_FAULTS)}")
        if int(victim) == rank and Attempt.current().restarts < int(starts):
            faults[int(step)] = what
    return faults


def fail_for_a_test(what: str) -> None:
    """Fail as planned: ``kill`` and ``oom`` do not return; ``term`` does (the launcher then stops the process)."""
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif what == "term":
        os.kill(os.getppid(), signal.SIGTERM)
        return
    raise torch.OutOfMemoryError("CUDA out of memory (VGGSPEC_TEST_FAULT_AT). Tried to allocate 2.00 GiB")
