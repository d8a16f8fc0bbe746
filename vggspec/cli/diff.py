"""``vggspec diff``: two networks layer by layer, its exit code as diff(1)'s. A checkpoint's or run folder's spec is
read with torch, imported only then."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ExitCode
from ..nn.weights_file import is_weights_file
from ..plan.diff import diff
from ..spec.parser import load
from ..spec.spec import Spec
from .common import INTERRUPTED, Commands, ExitCodes, need_torch

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the networks are the same",
    ExitCode.DIFFERS: "the networks differ (as diff(1) says of files)",
    ExitCode.BAD_INPUT: "bad input: a spec error, a file that is neither a spec nor a checkpoint",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "diff",
        help="compare two networks layer by layer: added, removed, changed, and what it costs",
        description="Align the layers of OLD and NEW (edit distance: a layer kept, changed within its kind, "
        "added or removed) and print a row per layer with the change in parameters, MACs and activations, the "
        "receptive field at each stage's end, and a summary. Names, comments and spelling (conv3-64 ×2 or two "
        "lines) do not count.",
    )
    for name in ("old", "new"):
        p.add_argument(
            name,
            metavar=name.upper(),
            help="a spec file, a bundled spec by name (D), or a checkpoint or run folder (the spec stored in it)",
        )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a table and a summary line; json: {old, new, same, input, layers: [{status, old, new, "
        "delta, receptive_field}], total: {params, macs, activations: {old, new, delta}}} (default: text)",
    )
    p.set_defaults(run=_diff, exit_codes=EXIT_CODES)


def _diff(args: argparse.Namespace) -> int:
    changes = diff(_network_spec(args.old), _network_spec(args.new))
    print(json.dumps(changes.to_dict(), indent=2) if args.format == "json" else changes)
    return ExitCode.OK if changes.same else ExitCode.DIFFERS


def _network_spec(name: str) -> Spec:
    """The spec a network argument names: a checkpoint's or a run folder's stored spec (read with torch,
    so only then, and with every checksum verified, as every reader of weights does), else a spec file or a
    bundled spec. What is a checkpoint is told by content (a truncated one too), not by the suffix."""
    path = Path(name)
    if not is_weights_file(path):
        return load(name)
    need_torch(f"reading the checkpoint {path}")
    from ..nn.checkpoint import stored_spec

    return stored_spec(path)
