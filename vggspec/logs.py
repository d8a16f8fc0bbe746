"""vggspec's messages: notes and warnings go to the ``vggspec`` logger, never straight to stderr.

A program that calls :func:`vggspec.run.train.train` or :func:`vggspec.run.evaluate.evaluate` hears from
them as from any library: warnings reach stderr through Python's last-resort handler, notes only
once the caller configures logging, and ``logging.getLogger("vggspec").setLevel(...)`` silences
them. The ``vggspec`` program calls :func:`show_messages` and prints every note as a plain line,
and so do the processes it launches (:func:`shown_level` tells them at which level).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("vggspec")


class _Stderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each message (redirected, or captured by a test), not
    as it was when the handler was made."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_messages(level: int = logging.INFO) -> None:
    """Print vggspec's messages from ``level`` up on stderr, as plain lines (what the program does)."""
    if not any(isinstance(handler, _Stderr) for handler in log.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False  # said once, not again by a root handler the caller has


def shown_level() -> int | None:
    """The level :func:`show_messages` set in this process, or None if it was not called: what a
    launched process should do likewise."""
    return log.level if any(isinstance(handler, _Stderr) for handler in log.handlers) else None


TORCH_NATIVE_LOG_LEVEL = "TORCH_CPP_LOG_LEVEL"  # read once, when torch is imported
_users_native_level: list[str | None] = []  # the user's own, once quiet_torch_native_logs replaced it


def quiet_torch_native_logs() -> None:
    """Keep torch's C++ logging of this process to fatal errors; call before torch is imported.

    For the launcher of a run over several machines: its rendezvous client logs every retry of a
    connection, with a C++ stack, where vggspec says in one line what went wrong. The processes it
    starts log as the user's environment says (:func:`restore_torch_native_logs`).
    """
    if "torch" not in sys.modules and not _users_native_level:
        _users_native_level.append(os.environ.get(TORCH_NATIVE_LOG_LEVEL))
        os.environ[TORCH_NATIVE_LOG_LEVEL] = "FATAL"


def restore_torch_native_logs() -> None:
    """The user's ``TORCH_CPP_LOG_LEVEL`` in the environment again (torch, imported, keeps the quiet one):
    for the processes this one starts."""
    if _users_native_level:
        level = _users_native_level[0]
        if level is None:
            os.environ.pop(TORCH_NATIVE_LOG_LEVEL, None)
        else:
            os.environ[TORCH_NATIVE_LOG_LEVEL] = level
