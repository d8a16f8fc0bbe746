"""The ``vggspec`` command: a thin shell over the Python API.

Exit codes: the numbers are :class:`vggspec.errors.ExitCode`'s; each command's module declares which it can
return and what each means for it (``EXIT_CODES``, given to its parser as the default ``exit_codes``), which its
``--help`` ends with; :func:`exit_codes` returns a command's table, and the program's ``--help`` sums them up.
Bad input is reported as ``file:line:col: error: ...``, never as a traceback.

A module per command, its flags (``add(commands)``) next to its handler, which calls the Python API and
returns one of its exit codes:

    analyze.py    list and analyze (no torch)
    compile.py    compile
    train.py      train
    evaluate.py   evaluate
    predict.py    predict
    study.py      study (train and evaluate specs as the paper's Tables 3-6)
    fmt.py        fmt
    table.py      table
    diff.py       diff
    graph.py      graph
    samples.py    samples (a generated image folder to try the others on)
    completion.py completion: the shell completion scripts, written from the parser
    reference.py  the parser as Markdown: the docs' page per command (docs/generate.py writes them)
    common.py     the arguments several commands share, the flags generated from the configuration
                  models, and the helpers the handlers call (load_all, need_torch, ...)
"""

from __future__ import annotations

import argparse
import codecs
import gc
import os
import sys
from typing import TextIO

from .. import __version__
from ..errors import ExitCode, SpecError
from ..logs import show_messages
from . import analyze, compile, completion, diff, evaluate, fmt, graph, predict, samples, study, table, train
from .common import ExitCodes, exit_codes_text, file_in_the_way, with_exit_codes_layout


def run() -> None:
    """The ``vggspec`` program: :func:`main` for a person's terminal or pipe, then exit without Python's last
    garbage collections.

    - A terminal or pipe that cannot encode ``×`` (``LC_ALL=C``, ``PYTHONIOENCODING=ascii``) gets ``x``:
      :func:`plain_text_fallback`.
    - A reader that stops reading (``vggspec diff D E | head -1``) ends the output, not the command: its exit
      status is the command's own (1 for differing networks), with no word of the closed pipe.
    - Ctrl-C exits with status 130 without a traceback, whenever it comes.
    - The last garbage collections walk every object that importing torch and torchvision created: 1.2 s
      after the work was done. By then vggspec has closed what it wrote, so there is nothing left for them.
    """
    try:
        for stream in (sys.stdout, sys.stderr):
            plain_text_fallback(stream)
        sys.stdout = _PipeGuard(sys.stdout)
        code = main()
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    finally:
        gc.freeze()
    sys.exit(code)


# What a stream that cannot encode them shows instead of the characters vggspec's messages use.
PLAIN_TEXT = {
    "×": "x", "→": "->", "←": "<-", "·": ".", "²": "^2", "³": "^3", "—": "--", "–": "-", "−": "-", "≥": ">=",
    "≤": "<=", "…": "...", "≈": "~", "±": "+-", "½": "1/2", "⁻": "^-", "α": "alpha", "β": "beta", "γ": "gamma",
    "λ": "lambda", "Σ": "sum", "✓": "ok", "✗": "x", "°": " deg",
}  # fmt: skip


def _plain_text(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start : err.end]
    return "".join(PLAIN_TEXT.get(ch, "?") for ch in text), err.end


codecs.register_error("vggspec-plain-text", _plain_text)


def plain_text_fallback(stream: TextIO) -> None:
    """Make ``stream`` write ``x`` for ``×`` (and so on: :data:`PLAIN_TEXT`) where its encoding has no such
    characters, instead of raising ``UnicodeEncodeError`` in the middle of a table."""
    try:
        "×→≥".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="vggspec-plain-text")


class _PipeGuard:
    """Standard output that a closed pipe does not stop: once the reader is gone, what is left goes nowhere
    (the descriptor is pointed at the null device), and the command finishes and says its own status."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _closed_pipe(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed_pipe()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed_pipe()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    show_messages()  # the library's notes (training progress, what was written) as plain lines
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        try:  # a value of its own that is wrong says more than the words left over (--memory 12 parsecs)
            getattr(args, "check_values", lambda args: None)(args)
        except SpecError as err:
            print(err, file=sys.stderr)
            return ExitCode.BAD_INPUT
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "run", None):
        parser.print_help()
        return ExitCode.BAD_INPUT
    try:
        return args.run(args)
    except SpecError as err:
        print(err, file=sys.stderr, flush=True)
        if "WORLD_SIZE" in os.environ:  # started by torchrun: the other processes wait for this one
            from ..run.distributed import stop_the_others

            stop_the_others(err, gpu=bool(getattr(args, "gpus", None)))
        return err.exit_code
    except BrokenPipeError:  # written past the guard (sys.stdout.buffer): the output is what was asked for
        _PipeGuard(sys.__stdout__)._closed_pipe()
        return 0
    except OSError as err:  # a file that cannot be written or read: -o under a file, a full disk, ...
        blocker = file_in_the_way(err)
        if blocker is not None:
            print(f"error: {blocker} is a file, where a folder is needed", file=sys.stderr)
        else:
            print(f"error: {f'{err.filename}: ' if err.filename else ''}{err.strerror or err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


# -- the parser: a sub-parser per command, added by the command's module --------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggspec",
        description="Describe VGG networks the way Table 1 of Simonyan & Zisserman writes them, "
        "and check them: shapes, parameters, FLOPs, memory, receptive fields.",
        formatter_class=with_exit_codes_layout(argparse.HelpFormatter),
    )
    parser.add_argument("--version", action="version", version=f"vggspec {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    analyze.add_list(commands)
    analyze.add(commands)
    compile.add(commands)
    train.add(commands)
    evaluate.add(commands)
    study.add(commands)
    predict.add(commands)
    fmt.add(commands)
    table.add(commands)
    diff.add(commands)
    graph.add(commands)
    samples.add(commands)
    completion.add(commands, parser)
    tables = {}
    for name, command in commands.choices.items():
        command.set_defaults(command_parser=command)  # an unknown flag gets the command's usage, not vggspec's
        tables[name] = command.get_default("exit_codes") or {}
        if tables[name]:  # the end of its --help
            command.epilog = exit_codes_text(tables[name])
            command.formatter_class = with_exit_codes_layout(command.formatter_class)
    parser.epilog = "Run 'vggspec COMMAND --help' for a command's options, and what its exit codes mean.\n\n"
    parser.epilog += exit_codes_text(_every_command(tables))
    return parser


# What the codes every command can return mean, in the program's --help (each command's says more).
SHARED_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.BAD_INPUT: "bad input (a spec error, a missing file, a setting that cannot work), said in one line",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C; a training run saves first)",
}


def _every_command(tables: dict[str, ExitCodes]) -> dict[int, list[str]]:
    """The program's table of exit codes, from the commands' own: a shared code's meaning in general words, any
    other code's with the commands that return it (those that mean the same by it together)."""
    found: dict[int, dict[str, list[str]]] = {}  # code → meaning → commands
    for name, codes in tables.items():
        for code, meaning in codes.items():
            found.setdefault(int(code), {}).setdefault(meaning, []).append(name)
    return {
        code: [SHARED_MEANINGS[code]]
        if code in SHARED_MEANINGS
        else [f"{', '.join(names)}: {meaning}" for meaning, names in by_meaning.items()]
        for code, by_meaning in found.items()
    }


def exit_codes(command: str | None = None) -> ExitCodes:
    """The exit codes ``command`` (``"diff"``) can return, in order, and what each means for it: its module's
    ``EXIT_CODES``, which its ``--help`` ends with. Without a command, the program's: every code any command
    returns, as ``vggspec --help`` ends with them."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    if command is None:
        every = _every_command({name: p.get_default("exit_codes") or {} for name, p in sub.choices.items()})
        return {code: "; ".join(every[code]) for code in sorted(every)}
    if command not in sub.choices:
        raise ValueError(f"vggspec has no command {command!r}: its commands are {', '.join(sub.choices)}")
    table = sub.choices[command].get_default("exit_codes") or {}
    return {int(code): table[code] for code in sorted(table)}
