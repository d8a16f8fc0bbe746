"""Errors a spec can have, each pointing at the spot in the source that causes it.

Every error raised for bad input is a :class:`SpecError`, so callers (and the CLI, which turns
them into exit code 2) need to catch only one type. ``str(error)`` renders the compiler-style
report: ``file:line:col: error: ...``, the offending line, a caret under the spot, what was
expected, and a hint such as "did you mean 'maxpool'?".
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """The vggspec program's exit statuses: the numbers, one table for the command line, the trainer and the
    processes it launches. What each means for a command, and which a command can return, that command says:
    the ``EXIT_CODES`` its module in :mod:`vggspec.cli` declares (:func:`vggspec.cli.exit_codes`), which its
    ``--help`` ends with."""

    OK = 0
    DIFFERS = 1  # a check's answer is no: what was compared differs
    NO_MATCH = 1  # a search found nothing (grep's 1; an alias of DIFFERS)
    DOES_NOT_FIT = 1  # a plan found no way to fit (an alias of DIFFERS)
    BAD_INPUT = 2  # a spec error, a missing or unwritable file, a setting that cannot work: said in one line
    DIVERGED = 3  # a training run's loss became NaN or infinite
    LOST = 4  # a process died or lost the others, and no restart was left
    OUT_OF_MEMORY = 5  # a device ran out of memory
    INTERRUPTED = 130  # Ctrl-C (or, to a training run, SIGTERM)


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocator refusing memory: Python's MemoryError, torch's OutOfMemoryError
    (CUDA's), or the CPU allocator's RuntimeError. By name, so that this module needs no torch (a
    Linux kernel that overcommits kills the process instead of refusing)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class SpecError(Exception):
    """A spec that cannot be parsed, is inconsistent, or does not fit its input size."""

    exit_code: ExitCode = ExitCode.BAD_INPUT  # what the program exits with, having printed the message

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        width: int = 1,
        filename: str | None = None,
        text: str | None = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.width = max(1, width)
        self.filename = filename
        self.text = text
        self.expected = expected
        self.hint = hint

    def located(self, filename: str | None, text: str | None) -> SpecError:
        """Attach the source so the report can name the file and draw the caret."""
        if self.filename is None:
            self.filename = filename
        if self.text is None:
            self.text = text
        return self

    def __str__(self) -> str:
        return self.render()

    @property
    def headline(self) -> str:
        """The message on one line, with where it was found (``typo.vgg:2:1: unknown layer 'conv3_8'``): the
        news of it that another machine's terminal shows."""
        where = self._where()
        return f"{where}: {self.message}" if where else self.message

    def _where(self) -> str:
        where = self.filename or ("<spec>" if self.line is not None else "")
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def render(self) -> str:
        where = self._where()
        out = [f"{where}: error: {self.message}" if where else f"error: {self.message}"]
        source_line = self._source_line()
        if source_line is not None:
            gutter = f"{self.line:>5} | "
            shown, column = _window(source_line, self.column or 1)
            out.append(gutter + shown)
            if self.column is not None:
                # Tabs stay tabs so the caret lines up however the terminal expands them.
                pad = "".join("\t" if ch == "\t" else " " for ch in shown[: column - 1])
                out.append(" " * (len(gutter) - 2) + "| " + pad + "^" * min(self.width, SHOWN_LINE))
        if self.expected:
            out.append(f"expected: {self.expected}")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def _source_line(self) -> str | None:
        if self.text is None or self.line is None:
            return None
        lines = source_lines(self.text)
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1].rstrip()
        return None


class SpecSyntaxError(SpecError):
    """The text does not follow the grammar (grammar.lark)."""


class UnknownLayerError(SpecError):
    """A word in layer position that no layer kind recognises."""


class SpecValueError(SpecError):
    """Well-formed text with a value that makes no sense: a kernel of 2, 0 channels, a bad attribute."""


class ShapeError(SpecError):
    """The network does not fit its input: a spatial size reaches zero, a layer after the classifier."""


class InputSizeError(SpecError, ValueError):
    """A tensor that does not have the shape the spec declares."""


class WeightsError(SpecError):
    """Weights that do not fit the network: another architecture, a missing layer, a bad file."""


class CheckpointError(SpecError):
    """A file that is not a vggspec checkpoint, or whose spec does not match."""


class ProcessLost(SpecError):
    """A training process died, or lost contact with the others, and was not restarted: not bad input,
    but said as plainly (one line, and where the run stands)."""

    exit_code = ExitCode.LOST


SHOWN_LINE = 100  # characters of a source line an error shows: the spot and what is around it


def _window(line: str, column: int) -> tuple[str, int]:
    """A long line cut to about :data:`SHOWN_LINE` characters around ``column`` (marked '…' where
    cut), and the column's place in what is shown: a 10 MB one-line spec is not echoed whole."""
    line = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in line)  # NUL & co. made visible
    if len(line) <= SHOWN_LINE:
        return line, column
    start = max(0, min(column - 1 - SHOWN_LINE // 2, len(line) - SHOWN_LINE))
    shown = line[start : start + SHOWN_LINE]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + SHOWN_LINE < len(line) else ""
    return prefix + shown + suffix, column - start + len(prefix)


def describe_character(char: str) -> str:
    """``'с' (U+0441 CYRILLIC SMALL LETTER ES)``: what an unexpected character really is, so that a
    look-alike, an invisible space or a control character can be found and replaced."""
    name = unicodedata.name(char, "")
    if not name:  # control characters have no name in unicodedata
        name = {"\0": "NULL", "\t": "TAB", "\r": "CARRIAGE RETURN", "\x0b": "LINE TABULATION", "\x0c": "FORM FEED"}.get(
            char, "a control character"
        )
    if char.isprintable() and not char.isspace():
        return f"{char!r} (U+{ord(char):04X} {name})"
    return f"U+{ord(char):04X} {name} (invisible)"


def source_lines(text: str) -> list[str]:
    """Lines as the parser counts them: split at '\n' only (not at '\f', '\x85', ... as splitlines does)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate, compared case-insensitively and ignoring '-' and '_'."""

    def norm(s: str) -> str:
        return s.lower().replace("-", "").replace("_", "")

    by_norm = {norm(c): c for c in candidates}
    if norm(word) in by_norm:
        return by_norm[norm(word)]
    close = difflib.get_close_matches(norm(word), list(by_norm), n=1, cutoff=0.7)
    return by_norm[close[0]] if close else None
