"""The ``vggspec`` command: a thin shell over the Python API.

Exit codes (:class:`vggspec.errors.ExitCode`): 0 success, 1 ``fmt --check`` found files to reformat
(``compile``: the network disagrees with the analysis; ``diff``: the networks differ; ``list``: the pattern
matched nothing; ``analyze --memory``: a batch does not fit), 2 bad input (a spec error, a missing file) —
reported as ``file:line:col: error: ...``, never as a traceback —, 3 a training run diverged, 4 a process
died with no restart left, 5 it ran out of memory, 130 interrupted.

A module per command, its flags (``add(commands)``) next to its handler, which calls the Python API and
returns an exit code:

    analyze.py    list and analyze (no torch)
    compile.py    compile
    train.py      train
    evaluate.py   evaluate
    predict.py    predict
    fmt.py        fmt
    table.py      table
    diff.py       diff
    graph.py      graph
    common.py     the arguments several commands share, the flags generated from the configuration
                  models, and the helpers the handlers call (load_all, need_torch, ...)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from .. import __version__
from ..errors import ExitCode, SpecError
from ..logs import show_messages
from . import analyze, compile, diff, evaluate, fmt, graph, predict, table, train
from .common import file_in_the_way


def run() -> None:
    """The ``vggspec`` program: :func:`main`, then exit without Python's last garbage collections.

    They walk every object that importing torch and torchvision created: 1.2 s after the work
    was done. By then vggspec has closed what it wrote, so there is nothing left for them to do.
    """
    try:
        code = main()
    finally:
        gc.freeze()
    sys.exit(code)


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
    except BrokenPipeError:  # `vggspec analyze | head`
        sys.stderr.close()
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
        epilog="Run 'vggspec COMMAND --help' for a command's options. Exit codes: 0 ok, "
        "1 'fmt --check' would reformat, 'diff' found differences, 'list' matched nothing or 'analyze --memory' "
        "found a batch that does not fit, 2 bad input.",
    )
    parser.add_argument("--version", action="version", version=f"vggspec {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    analyze.add_list(commands)
    analyze.add(commands)
    compile.add(commands)
    train.add(commands)
    evaluate.add(commands)
    predict.add(commands)
    fmt.add(commands)
    table.add(commands)
    diff.add(commands)
    graph.add(commands)
    for command in commands.choices.values():  # an unknown flag gets the command's usage, not vggspec's
        command.set_defaults(command_parser=command)
    return parser
