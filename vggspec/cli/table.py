"""``vggspec table``: the paper's Table 1 in markdown, a column per spec."""

from __future__ import annotations

import argparse
import sys

from .. import files
from ..errors import ExitCode
from ..plan.diff import new_layers
from ..plan.report import table1
from .common import INTERRUPTED, Commands, ExitCodes, add_specs_argument, load_all

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the table written",
    ExitCode.BAD_INPUT: "bad input: a spec that cannot be read (the others' table is still written), a file that "
    "cannot be written",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "table",
        help="render Table 1 (markdown) from spec files, side by side",
        description="Render the specs as the paper's Table 1: a column per spec, a row per layer, "
        "stages aligned at the max-pooling layers. Markdown.",
    )
    add_specs_argument(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (by default, or with -, to standard output)")
    p.add_argument(
        "--mark-added",
        action="store_true",
        help="set in bold (**conv3-256**) each column's layers that are added or changed against the column "
        "before it, as the paper does (aligned as 'vggspec diff' aligns them)",
    )
    p.set_defaults(run=_table, exit_codes=EXIT_CODES)


def _table(args: argparse.Namespace) -> int:
    specs, failed = load_all(args.specs)
    if specs:
        markdown = table1(specs, new_layers(specs) if args.mark_added else ())
        if args.output:
            files.refuse_overwriting(args.output, [spec.source for spec in specs], "table")
            files.write_text(args.output, markdown)
            if not files.is_stdout(args.output):
                print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(markdown)
    return ExitCode.BAD_INPUT if failed else ExitCode.OK
