"""``vggspec fmt``: specs in canonical form, printed, checked (``--check``) or rewritten (``--write``)."""

from __future__ import annotations

import argparse
import sys

from .. import files
from ..errors import ExitCode, SpecError
from ..spec.bundled import spec_path
from ..spec.formatter import format_spec
from ..spec.parser import load, parse
from .common import INTERRUPTED, Commands, ExitCodes

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the specs printed or rewritten; with --check: every one is canonical",
    ExitCode.DIFFERS: "with --check: a spec is not canonical (each is named: would reformat FILE)",
    ExitCode.BAD_INPUT: "bad input: a spec that cannot be read or a file that cannot be written (the others are "
    "still done), --check with --write",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "fmt",
        help="print specs in canonical form",
        description="Print specs in canonical form (comments kept, runs of equal layers as ×N). "
        "parse(fmt(spec)) is the same network.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or bundled names ('-' reads standard input)")
    p.add_argument(
        "--check",
        action="store_true",
        help="change nothing; name the files that are not canonical (the exit code says whether any is)",
    )
    p.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")
    p.set_defaults(run=_fmt, exit_codes=EXIT_CODES)


def _fmt(args: argparse.Namespace) -> int:
    if args.check and args.write:
        raise SpecError("--check and --write exclude each other")
    failed = False
    unformatted = []
    for name in args.specs:
        try:
            if name == "-":
                text, source = sys.stdin.read(), "<stdin>"
                spec = parse(text, source)
            else:
                path = spec_path(name)  # a bundled spec's name: its file
                source = name
                text = path.read_text(encoding="utf-8") if path.is_file() else ""
                spec = load(path)
        except SpecError as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        formatted = format_spec(spec)
        if args.check:
            if formatted != text:
                unformatted.append(source)
                print(f"would reformat {source}", file=sys.stderr)
        elif args.write and name != "-":
            if formatted != text:
                try:  # whole or not at all: a full disk leaves the spec as it was
                    files.write_text(path, formatted)
                except OSError as err:
                    print(f"error: cannot write {err.filename or path}: {err.strerror or err}", file=sys.stderr)
                    failed = True
                    continue
                print(f"reformatted {source}", file=sys.stderr)
        else:
            sys.stdout.write(formatted)
    if failed:
        return ExitCode.BAD_INPUT
    return ExitCode.DIFFERS if unformatted else ExitCode.OK
