"""vggspec's messages: notes and warnings go to the ``vggspec`` logger, never straight to stderr.

A program that calls :func:`vggspec.train.train` or :func:`vggspec.evaluate.evaluate` hears from
them as from any library: warnings reach stderr through Python's last-resort handler, notes only
once the caller configures logging, and ``logging.getLogger("vggspec").setLevel(...)`` silences
them. The ``vggspec`` program calls :func:`show_messages` and prints every note as a plain line,
and so do the processes it launches (:func:`shown_level` tells them at which level).
"""

from __future__ import annotations

import logging
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
