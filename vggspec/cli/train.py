"""``vggspec train``: its flags are TrainConfig's fields; the spec and the settings are checked before torch is
imported."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ExitCode, SpecError
from ..logs import quiet_torch_native_logs
from ..run.config import TrainConfig, load_config_file, machines, validated
from ..run.runs import SUMMARY, started_data
from ..spec.parser import load
from .common import Commands, ExitCodes, FlagGroups, add_model_options, given, need_torch, told_to_the_machines

# How --help groups train's flags (TrainConfig's fields): every field in one group, or tests/test_help.py fails.
FLAG_GROUPS: FlagGroups = {
    "data": (
        "the image folders, and the input the network sees",
        ("data", "train_split", "val_split", "num_classes", "normalise", "stats_images"),
    ),
    "schedule": (
        "SGD with momentum, and when its learning rate drops (Section 3.1)",
        ("epochs", "early_stop", "batch_size", "lr", "momentum", "weight_decay", "decay_biases", "lr_factor",
         "lr_patience", "lr_drops"),
    ),
    "augmentation": ("what is done to each training image (Section 3.1)", ("scale", "flip", "colour_std")),
    "weights": (
        "where the network starts: random weights, or trained ones to fine-tune",
        ("init", "init_from", "weights", "strict_weights", "freeze", "new_layer_lr_mult"),
    ),
    "machines": (
        "the processes, GPUs and machines that train together, and their restarts",
        ("gpus", "nproc", "nnodes", "rdzv_endpoint", "rdzv_timeout", "max_restarts", "sync_bn"),
    ),
    "performance": (
        "how fast it runs, and in how much memory", ("micro_batch", "amp", "channels_last", "compile", "workers")
    ),
    "run": (
        "the run's folder and checkpoints, resuming, reproducibility, progress bars",
        ("out", "resume", "checkpoint_every", "seed", "deterministic", "progress"),
    ),
}  # fmt: skip

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the run is done: its epochs trained, or stopped early (--early-stop)",
    ExitCode.BAD_INPUT: "bad input, or a run folder that cannot be written",
    ExitCode.DIVERGED: "the loss became NaN or infinite (the last good checkpoint is kept)",
    ExitCode.LOST: "a process died or lost the others, and no restart was left (RUN/last.pt kept: --resume "
    "continues)",
    ExitCode.OUT_OF_MEMORY: "a device ran out of memory (the finished steps saved)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM; saved first: --resume continues)",
}

# The stops after which the run has written RUN/summary.json (when rank 0 stopped too): bad input comes before.
SUMMARISED_STOPS = (ExitCode.DIVERGED, ExitCode.OUT_OF_MEMORY, ExitCode.INTERRUPTED)


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "train",
        help="train a spec with the paper's recipe on an image folder (CPU, one GPU or many)",
        description="Train SPEC with Section 3.1's recipe (every value below can be changed; defaults are "
        "the paper's) on DATA/train/<class>/*, validating on DATA/val/<class>/* after every epoch. "
        "--gpus N runs N data-parallel processes (DDP over NCCL), --nproc N runs N CPU processes (gloo); when one "
        "dies, all start again from RUN/last.pt (--max-restarts). On several machines, start the same command on "
        "each with --nnodes M --rdzv-endpoint HOST:PORT (HOST one of them) and the same --out, on a folder they "
        "all reach (or under torchrun, one per machine: README, 'Training on several machines'). Checkpoints go "
        "to RUN/last.pt and RUN/best.pt every epoch; 'vggspec train --out RUN --resume' continues a run, mid-epoch "
        "included, with its spec and settings.",
    )
    p.add_argument("--config", metavar="FILE", help="settings from a .json or .toml file; flags override them")
    groups = add_model_options(p, TrainConfig, FLAG_GROUPS)
    groups["run"].add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format (default: text). json: when the run ends (done, stopped early, interrupted, diverged, out "
        "of memory), its summary as one JSON object on standard output, as RUN/summary.json keeps it: why it "
        "stopped, epochs, the best epoch's errors and losses, the run folder and its files, seconds; progress and "
        "notes stay on standard error",
    )
    p.set_defaults(run=_train, exit_codes=EXIT_CODES)


def _train(args: argparse.Namespace) -> int:
    values = load_config_file(args.config) if args.config else {}
    values.update(given(args, TrainConfig))
    with told_to_the_machines(values):
        # Which spec (a resumed run's own) and its errors first, before the seconds torch takes to import.
        load(TrainConfig.model_construct(**values).spec_file())
        if "data" not in values and values.get("resume") and values.get("out"):
            values["data"] = started_data(values["out"])  # a run knows its data
        if values.get("data") is None:
            raise SpecError("where is the data? give --data DIR (DIR/train/<class>/*, DIR/val/<class>/*)")
        config = validated(TrainConfig, values, "training")
    if machines(config).several:  # this process serves the rendezvous, or reaches it: one line for its troubles
        quiet_torch_native_logs()
    need_torch("vggspec train")
    from ..run.train import RunStopped, train

    try:
        run_dir = train(config)
    except RunStopped as stop:  # said already; a stop the run wrote down is printed too
        if args.format == "json" and stop.code in SUMMARISED_STOPS:
            _print_summary(stop.run_dir)
        raise
    if args.format == "json":
        _print_summary(run_dir)
    return ExitCode.OK


def _print_summary(run_dir: Path) -> None:
    """RUN/summary.json on standard output, as one line of JSON: when the run wrote none (a process stopped
    before rank 0 could), nothing."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    print(json.dumps(summary), flush=True)
