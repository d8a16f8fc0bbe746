"""Every example in the README and the docs, run as a reader would run it, its output held to the page.

A page is read top to bottom in a fresh folder of its own (with ``specs/`` beside it, as in a clone of
the repository), each example after the ones above it, so a tutorial's steps build on each other:

- A ``console`` block: each ``$ COMMAND`` line is run by bash in that folder, and what the command
  prints (standard output and standard error, in the order they were written) must match the lines
  below it, up to the next ``$``. A command exits 0 unless its line ends with ``# exits N``. A line
  ending in ``\\`` continues on the next.
- A ``pycon`` block (``>>>``) is a doctest: every page's Python examples share one namespace.
- A ``bash``/``sh`` block is run as a script and must exit 0; a ``python`` block is run and must not
  raise. Neither shows output.
- A block with ``title="NAME"`` in its fence (```` ```vgg title="tiny.vgg" ````) is a file the reader
  writes: it is written to NAME before the examples below it run.
- A block after the line ``<!-- not run: REASON -->`` (a download, a GPU, a data set the reader has) is
  not run, but every ``vggspec`` command in it is parsed by vggspec's own parser: a flag that does not
  exist, or a value it refuses, fails the test all the same.

How an output is compared (the normalisation rule, applied to what the page shows and to what the
command printed alike):

1. Line ends: trailing spaces and trailing blank lines are dropped; a line redrawn with ``\\r`` counts as
   its last drawing.
2. What differs from run to run is replaced by a placeholder: durations (``350 ms``, ``4.2 s``,
   ``3m07s``, ``2h05m00s``) by ``<time>``, rates (``780 images/s``) by ``<rate>``, the share of time spent
   waiting for data (``data wait 37%``) by ``data wait <n>%``, the page's folder by ``.``, and the
   repository's folder is dropped from paths (``/home/me/vggspec/specs/D.vgg`` reads ``specs/D.vgg``).
3. ``...`` in the page matches anything within its line; a line that is just ``...`` matches any number
   of lines, none included. Everything else must be equal, every number included.
"""

from __future__ import annotations

import argparse
import contextlib
import doctest
import functools
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT = 600  # seconds: the tutorial's training run takes well under a minute

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>.+?)\s*-->")
_EXITS = re.compile(r"\s+#\s*exits\s+(?P<code>\d+)\s*$")
_TITLE = re.compile(r"""title=["'](?P<title>[^"']+)["']""")


@dataclass
class Block:
    """A fenced code block of a page: its language, where it starts, its text and how it is marked."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    title: str | None = None
    not_run: str | None = None  # the reason, when the page says it is not run

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, indented ones (in lists, admonitions, tabs) included."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence[0] * len(fence)) and lines[j].strip().strip(fence[0]) == ""
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        language = info.split()[0].lstrip("{.").rstrip("}") if info else ""
        title = _TITLE.search(info)
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        not_run = _NOT_RUN.search(before)
        found.append(
            Block(
                path,
                i + 1,
                language,
                "\n".join(body) + "\n",
                title["title"] if title else None,
                not_run["reason"] if not_run else None,
            )
        )
        i = j + 1
    return found


@dataclass
class Command:
    """One ``$`` line of a console block (continuations joined) and the output the page shows for it."""

    line: int
    text: str
    expected: str
    exit_code: int = 0


def console_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if commands:
                commands[-1].expected += lines[i] + "\n"
            elif lines[i].strip():
                raise ValueError(f"{block.where}: a console block starts with '$ COMMAND', not {lines[i]!r}")
            i += 1
            continue
        line = block.line + 1 + i
        text = lines[i][2:]
        while text.endswith("\\") and i + 1 < len(lines):  # bash reads the backslash-newline as a space
            i += 1
            text += "\n" + lines[i]
        exits = _EXITS.search(text)
        code = int(exits["code"]) if exits else 0
        commands.append(Command(line, text[: exits.start()] if exits else text, "", code))
        i += 1
    return commands


# -- the normalisation rule ------------------------------------------------------------------------------

_DURATION = re.compile(r"\b(?:\d+h\d\dm\d\ds|\d+m\d\ds|\d+(?:\.\d+)?\s?(?:ms|µs|s|min)\b)")
_RATE = re.compile(r"\b\d[\d.,]*k?\s?(?:images|img|steps|it|samples)/s\b")
_DATA_WAIT = re.compile(r"data wait \d+%")


def normalise(text: str, folder: Path | None = None) -> str:
    """The normalisation rule of the module docstring, steps 1 and 2."""
    if folder is not None:
        for spelling in {str(folder), str(folder.resolve())}:
            text = text.replace(spelling + os.sep, "").replace(spelling, ".")
    text = text.replace(str(ROOT) + os.sep, "")
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).rstrip("\n")
    text = _DURATION.sub("<time>", text)
    text = _RATE.sub("<rate>", text)
    return _DATA_WAIT.sub("data wait <n>%", text)


def output_matches(expected: str, actual: str) -> bool:
    """Step 3 of the rule: ``...`` matches within a line, a ``...`` line matches any lines."""
    want, got = expected.split("\n") if expected else [], actual.split("\n") if actual else []

    @functools.cache
    def from_here(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i].strip() == "...":
            return any(from_here(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_matches(want[i], got[j]) and from_here(i + 1, j + 1)

    return from_here(0, 0)


def _line_matches(want: str, got: str) -> bool:
    return want == got or re.fullmatch(".*?".join(map(re.escape, want.split("..."))), got) is not None


# -- running a page -----------------------------------------------------------------------------------


class ExampleFailed(AssertionError):
    """An example did not do what its page says: where, what ran, and the difference."""


@dataclass
class Page:
    """A page being read: its folder, its Python namespace, the shell that runs its commands."""

    path: Path
    folder: Path
    namespace: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        specs = self.folder / "specs"
        if not specs.exists():
            specs.symlink_to(ROOT / "specs", target_is_directory=True)
        self.bin = self.folder.parent / f"{self.folder.name}-bin"
        self.bin.mkdir(exist_ok=True)
        shim = self.bin / "vggspec"  # the vggspec of this tree, whatever is installed
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vggspec "$@"\n')
        shim.chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",  # standard output and error in the order they were written
            "COLUMNS": "100",
            "LC_ALL": "C.UTF-8",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
        self.env.pop("CUDA_VISIBLE_DEVICES", None)

    def run(self) -> int:
        """Run every example of the page in order; the number run. Raises ExampleFailed at the first miss."""
        count = 0
        for block in blocks(self.path):
            if block.title and block.language not in ("console", "pycon"):
                target = self.folder / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text, encoding="utf-8")
            if block.not_run:
                check_flags(block)
                continue
            if block.language == "console":
                for command in console_commands(block):
                    self._console(block, command)
                    count += 1
            elif block.language == "pycon":
                self._doctest(block)
                count += 1
            elif block.language in ("bash", "sh", "shell") and not block.title:
                self._script(block)
                count += 1
            elif block.language == "python" and not block.title:
                with self._here():
                    exec(compile(block.text, block.where, "exec"), self.namespace)  # noqa: S102
                count += 1
        return count

    def _console(self, block: Block, command: Command) -> None:
        done = subprocess.run(
            ["bash", "-c", command.text],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        actual = normalise(done.stdout, self.folder)
        expected = normalise(command.expected)
        where = f"{block.path.name}:{command.line}"
        if done.returncode != command.exit_code:
            raise ExampleFailed(
                f"{where}: `{command.text}` exited {done.returncode}, the page says {command.exit_code}"
                f"\n--- it printed:\n{done.stdout}"
            )
        if not output_matches(expected, actual):
            raise ExampleFailed(f"{where}: `{command.text}` printed\n{actual}\n--- the page shows\n{expected}")

    def _script(self, block: Block) -> None:
        done = subprocess.run(
            ["bash", "-e", "-c", block.text],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if done.returncode:
            raise ExampleFailed(f"{block.where}: the script exited {done.returncode}\n{done.stdout}{done.stderr}")

    def _doctest(self, block: Block) -> None:
        test = doctest.DocTestParser().get_doctest(block.text, self.namespace, block.where, str(block.path), block.line)
        runner = doctest.DocTestRunner(
            checker=_NormalisedChecker(self.folder), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        )
        report: list[str] = []
        with self._here():
            runner.run(test, out=report.append, clear_globs=False)
        self.namespace.update(test.globs)  # the runner works on a copy: the page's next examples see its names
        if runner.failures:
            raise ExampleFailed("".join(report))

    @contextlib.contextmanager
    def _here(self) -> Iterator[None]:
        before = Path.cwd()
        os.chdir(self.folder)
        try:
            yield
        finally:
            os.chdir(before)


class _NormalisedChecker(doctest.OutputChecker):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(normalise(want), normalise(got, self.folder), optionflags) or output_matches(
            normalise(want), normalise(got, self.folder)
        )


# -- examples that are not run: their flags still meet the parser ----------------------------------------


def vggspec_argvs(command: str) -> list[list[str]]:
    """The arguments given to vggspec in a shell line, one list per ``vggspec ...``, ``python -m vggspec
    ...`` or ``torchrun ... -m vggspec ...`` in it (commands joined by ``&&``, ``;`` or ``|`` included)."""
    lexer = shlex.shlex(_EXITS.sub("", command), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:
        return []
    found: list[list[str]] = []
    simple: list[str] = []
    for word in [*words, ";"]:
        if word not in ("&&", "||", "|", ";", "&"):
            simple.append(word)
            continue
        for i, name in enumerate(simple):
            if name == "vggspec" and (i == 0 or simple[i - 1] in ("-m", "exec") or "=" in simple[i - 1]):
                found.append(simple[i + 1 :])
                break
        simple = []
    return found


def check_flags(block: Block) -> int:
    """Parse every vggspec command of a block that is not run; the number checked."""
    from vggspec.cli import _parser

    if block.language == "console":
        lines = [command.text.replace("\n", " ") for command in console_commands(block)]
    else:
        lines = textwrap.dedent(block.text).replace("\\\n", " ").splitlines()
    checked = 0
    for line in lines:
        for argv in vggspec_argvs(line):
            try:
                with contextlib.redirect_stderr(_Discard()):
                    _, unknown = _parser().parse_known_args(argv)
            except SystemExit as stop:
                raise ExampleFailed(f"{block.where}: vggspec's parser refuses `{line}`") from stop
            if unknown:
                raise ExampleFailed(f"{block.where}: `{line}`: vggspec has no {' '.join(unknown)}")
            checked += 1
    return checked


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def pages() -> list[Path]:
    """The pages whose examples are tests: the README, every page under docs/ and the root files the site
    shows (docs/generated/ is written from the code, and holds no examples)."""
    written = [path for path in sorted((ROOT / "docs").rglob("*.md")) if not {"generated", "_build"} & set(path.parts)]
    return [ROOT / name for name in ("README.md", "BENCHMARKS.md", "ARCHITECTURE.md", "CHANGELOG.md")] + written


def main() -> int:
    """``python tools/doc_examples.py [PAGE...]``: run pages' examples here, as the tests do."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pages", nargs="*", type=Path, help="pages to run (default: README.md and docs/)")
    args = parser.parse_args()
    failed = 0
    for path in args.pages or pages():
        with tempfile.TemporaryDirectory() as folder:
            try:
                count = Page(path.resolve(), Path(folder) / "page").run()
                print(f"{path}: {count} examples ok")
            except ExampleFailed as err:
                failed += 1
                print(f"{path}: FAILED\n{err}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
