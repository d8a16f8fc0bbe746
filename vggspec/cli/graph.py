"""``vggspec graph``: the layer graph drawn with Graphviz (or its DOT source)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import files
from ..errors import ExitCode
from ..spec.analysis import analyze
from ..spec.bundled import spec_path
from ..spec.parser import load
from .common import INTERRUPTED, Commands, ExitCodes, add_input_option, add_spec_argument

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the drawing written",
    ExitCode.BAD_INPUT: "bad input: a spec error, a format it cannot draw, no Graphviz 'dot' program for SVG, PNG "
    "or PDF, a file that cannot be written",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "graph",
        help="draw a spec with graphviz (SVG, PNG, PDF or DOT)",
        description="Draw the layer graph, each node with its output shape and parameters. SVG, PNG "
        "and PDF need Graphviz's 'dot' program (apt-get install graphviz); DOT source does not.",
    )
    add_spec_argument(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file (default: SPEC's name with the format's suffix; -: standard output)",
    )
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot"), help="default: from -o's suffix, else svg")
    add_input_option(p)
    p.set_defaults(run=_graph, exit_codes=EXIT_CODES)


def _graph(args: argparse.Namespace) -> int:
    from ..plan.drawing import draw

    spec = load(args.spec)
    output = Path(args.output or f"{Path(args.spec).stem}.{args.format or 'svg'}")
    files.refuse_overwriting(output, [spec_path(args.spec)], "graph")
    written = draw(analyze(spec, input_size=args.input), output, args.format)
    if not files.is_stdout(written):
        print(f"wrote {written}", file=sys.stderr)
    return ExitCode.OK
