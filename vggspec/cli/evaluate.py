"""``vggspec evaluate``: its flags are EvaluateConfig's fields; the settings are checked before torch is
imported."""

from __future__ import annotations

import argparse

from ..errors import ExitCode, SpecError
from ..files import is_stdout
from ..logs import quiet_torch_native_logs
from ..run.config import EvaluateConfig, machines, validated
from .common import (
    INTERRUPTED,
    Commands,
    ExitCodes,
    FlagGroups,
    add_model_options,
    given,
    need_torch,
    told_to_the_machines,
)

# How --help groups evaluate's flags (EvaluateConfig's fields): every field in one group, or tests/test_help.py
# fails.
FLAG_GROUPS: FlagGroups = {
    "networks": ("what CKPT is, when it is not a trained network", ("weights", "num_classes", "from_probs")),
    "data": ("the images evaluated on", ("data", "split")),
    "protocol": ("how each image is scored (Sections 3.2, 4)", ("scales", "method", "flip")),
    "output": ("what is written besides the table", ("json_path", "save_probs", "progress")),
    "machines": (
        "the processes, GPUs and machines that evaluate together",
        ("gpus", "nproc", "nnodes", "rdzv_endpoint", "rdzv_timeout"),
    ),
    "performance": ("how fast it runs, and in how much memory", ("batch_size", "dtype", "compile")),
}

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the table printed (images that could not be read are counted as errors, and named)",
    ExitCode.BAD_INPUT: "bad input: a checkpoint or folder that cannot be read, a setting that cannot work, "
    "networks trained on other classes (not fused)",
    ExitCode.LOST: "with --gpus, --nproc or --nnodes: a process died or lost the others (an evaluation is not "
    "restarted)",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "evaluate",
        help="top-1/top-5 error of trained networks: dense, multi-crop, several scales, fusion (Sections 3.2, 4)",
        description="Evaluate checkpoints written by 'vggspec train' on DATA/<split>/<class>/*. Per test scale Q "
        "the image's smallest side is rescaled to Q; 'dense' runs the fully-convolutional network on the whole "
        "image and averages its class score map, 'multi-crop' averages 50 crops (5×5 grid × 2 flips), 'both' "
        "averages the two, 'center' takes one centre crop as the run's validation did; posteriors are averaged "
        "over scales and, with several checkpoints, over networks (fusion rows last). On ILSVRC-2012 val the "
        "paper's numbers are printed beside the measured ones.",
    )
    add_model_options(p, EvaluateConfig, FLAG_GROUPS)
    output = next(group for group in p._action_groups if group.title == "output")
    output.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: the table on standard output; json: one document on standard output, what --json FILE "
        "writes ({images, rows: [{network, method, scales, flip, top1_err, top5_err, paper}]}, errors as "
        "fractions), the table and the notes on standard error (default: text)",
    )
    p.set_defaults(run=_evaluate, exit_codes=EXIT_CODES)


def _evaluate(args: argparse.Namespace) -> int:
    values = given(args, EvaluateConfig)
    if args.format == "json":
        values["json_path"] = _json_to_standard_output(values)
    with told_to_the_machines(values):
        config = validated(EvaluateConfig, values, "evaluation")
    if machines(config).several:
        quiet_torch_native_logs()
    need_torch("vggspec evaluate")
    from ..run.evaluate import evaluate

    evaluate(config)
    return ExitCode.OK


def _json_to_standard_output(values: dict[str, object]) -> str:
    """``--format json``: the JSON document to standard output, as ``--json -`` writes it; --json FILE or
    --save-probs - would want that place too, said in one line."""
    if values.get("json_path") is not None and not is_stdout(values["json_path"]):
        raise SpecError(
            f"--format json writes the JSON to standard output, --json {values['json_path']} to a file: give one"
        )
    if is_stdout(values.get("save_probs")):
        raise SpecError(
            "--format json writes the JSON to standard output, where --save-probs - writes the posteriors",
            hint="give --save-probs FILE",
        )
    return "-"
