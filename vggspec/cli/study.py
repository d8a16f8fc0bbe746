"""``vggspec study``: the paper's Tables 3–6 for the user's specs and folder, in one command that continues itself.
The recipe flags are train's (generated from TrainConfig), but for those the study decides for each cell."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..errors import ExitCode
from ..plan.budget import parse_flops
from ..plan.gpus import GPUS
from ..run.config import TrainConfig, load_config_file
from ..run.study import DEFAULT_DEVICE, GPU_CHOICE, MACHINE_SETTINGS, STUDY_DECIDES, StudyConfig
from .common import Commands, ExitCodes, add_field_option, need_torch

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "every cell trained and evaluated, the tables written (with --dry-run: the plan printed)",
    ExitCode.BAD_INPUT: "bad input: a spec error, a setting that cannot work, a folder that cannot be written",
    ExitCode.DIVERGED: "a cell's training diverged: the study stops there",
    ExitCode.LOST: "with --gpus or --nproc: a process of a cell's training or evaluation died, and no restart was "
    "left",
    ExitCode.OUT_OF_MEMORY: "a cell's training ran out of memory: the study stops there",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C; a cell in training saves first): the same command continues",
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "study",
        help="the paper's experiments on your data: train specs at several scales, evaluate as Tables 3-6",
        description="Train every SPEC at every training scale with one recipe (train's flags below), each cell a "
        "run folder STUDY/<spec>/S<scale>, then evaluate each as Section 4 did on DATA/val: at one test scale "
        "(Table 3: Q = S, or (S_min+S_max)/2 for a jittered S), at three (Table 4: S-32, S, S+32, or S_min, S, "
        "S_max), dense against multi-crop and both (Table 5), and the fusion of the best networks (Table 6). Writes "
        "STUDY/results.csv (a row per network × training scale × test protocol), STUDY/tables.md (the paper's "
        "layout, printed) and STUDY/error-vs-gflops.png. The paper's scales are for 224-pixel inputs; for others "
        "they go in proportion. The same command again continues: finished cells are neither retrained nor "
        "re-evaluated, a killed one resumes from its last.pt, and one whose recipe changed starts anew, said in one "
        f"line. {GPU_CHOICE}",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or bundled specs by name, shallowest first")
    p.add_argument("--data", required=True, metavar="DIR", help="image folder: DIR/train/<class>/*, DIR/val/<class>/*")
    p.add_argument(
        "--out", required=True, metavar="STUDY", help="the study's folder: a run folder per cell, the tables"
    )
    p.add_argument(
        "--train-scales",
        metavar="S,...",
        help="training scales as the paper writes them, fixed or jittered: 256,384,256-512; for 224-pixel inputs, in "
        "proportion for others (37,55,37-73 at 32 pixels) (default: each spec's S, the paper's 256 in proportion)",
    )
    p.add_argument(
        "--init-from-first",
        action="store_true",
        help="the first SPEC's run at each training scale initialises the others' (its first four conv and last "
        "three FC layers, as Section 3.1 started B-E from a trained A)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (each cell's network, parameters, FLOPs, "
        "training step's memory, a lower bound on its time, what would be done) and train nothing",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="standard output: the tables (or the plan) as markdown text, or JSON (default: text)",
    )
    p.add_argument(
        "--device",
        metavar="GPU",
        help=f"the plan's time bound at a known GPU's peak rates: {', '.join(GPUS)} (default: {DEFAULT_DEVICE})",
    )
    p.add_argument(
        "--device-flops", metavar="F", help="the plan's time bound at F FLOP/s (312e12, 312T) for every layer"
    )
    recipe = p.add_argument_group(
        "recipe",
        "vggspec train's settings, the same for every cell; the study sets --scale (--train-scales), the "
        "spec, the run folder and --resume itself, and runs on one machine (no --nnodes)",
    )
    recipe.add_argument("--config", metavar="FILE", help="settings from a .json or .toml file; flags override them")
    for name in recipe_flags():
        add_field_option(recipe, name, TrainConfig.model_fields[name])
    p.set_defaults(run=_study, exit_codes=EXIT_CODES)


def _study(args: argparse.Namespace) -> int:
    recipe = load_config_file(args.config) if args.config else {}
    recipe.update({k: v for k, v in vars(args).items() if k in recipe_flags() and v is not None})
    config = StudyConfig(
        specs=args.specs,
        data=args.data,
        out=args.out,
        recipe=recipe,
        train_scales=args.train_scales,
        init_from_first=args.init_from_first,
        device=args.device,
        device_flops=parse_flops(args.device_flops) if args.device_flops is not None else None,
    )
    if args.dry_run:
        from ..run.study import plan_study

        plan = plan_study(config)
        print(plan.text() if args.format == "text" else _json(plan.to_dict()))
        return ExitCode.OK
    if importlib.util.find_spec("torch") is None:  # not imported: a study whose cells are all done needs none
        need_torch("vggspec study")
    from ..run.study import run_study

    report = run_study(config)
    sys.stdout.write(report.markdown() if args.format == "text" else _json(report.to_dict()) + "\n")
    return ExitCode.OK


def recipe_flags() -> list[str]:
    """train's settings that a study takes as they are: all but those it decides for each cell."""
    return [name for name in TrainConfig.model_fields if name not in (*STUDY_DECIDES, *MACHINE_SETTINGS)]


def _json(document: dict) -> str:
    import json

    return json.dumps(document, indent=2)
