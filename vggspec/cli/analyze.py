"""``vggspec list`` and ``vggspec analyze``: the bundled specs, and the analysis of any spec (shapes, parameters,
FLOPs, memory, receptive fields, a training step's budget). Neither imports torch, so that they run without it;
the one exception is ``analyze --train --memory`` with no size, which reads this machine's free GPU memory."""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing

from ..errors import ExitCode, SpecError
from ..plan.batch import PAPER_BATCH
from ..plan.budget import (
    IMAGENET_TRAIN_IMAGES,
    PLANNING_MARGIN,
    Plan,
    TimeBound,
    TrainBudget,
    TrainSettings,
    parse_flops,
    parse_size,
    plan,
    time_bound,
    train_budget,
)
from ..plan.gpus import GPUS, gpu, rates
from ..plan.report import (
    Columns,
    catalogue,
    classes,
    per_layer,
    per_layer_csv,
    per_layer_markdown,
    plan_text,
    rms_at_init,
    side_by_side,
    time_text,
    training_step,
    training_step_csv,
    training_step_markdown,
)
from ..spec.analysis import Analysis, analyze
from ..spec.bundled import matching, spec_path
from ..spec.parser import load
from ..units import human_count
from .common import (
    INTERRUPTED,
    Commands,
    ExitCodes,
    add_init_option,
    add_input_option,
    add_num_classes_option,
    add_specs_argument,
    fixed_class_count,
    load_all,
)

# -- list ----------------------------------------------------------------------------------

LIST_EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the bundled specs (those PATTERN matches) listed",
    ExitCode.NO_MATCH: "PATTERN matched no bundled spec (as grep's 1: a script can tell 'no such spec' from a listing)",
    ExitCode.BAD_INPUT: "bad input: a flag or value it does not take",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add_list(commands: Commands) -> None:
    p = commands.add_parser(
        "list",
        help="the bundled specs: name, input, classes, parameters, MACs",
        description="List the specs that ship with vggspec, each by the name every other command takes "
        "(vggspec analyze small/A-narrow-32). Torch is not imported.",
    )
    p.add_argument(
        "pattern",
        nargs="?",
        metavar="PATTERN",
        help="keep the names containing PATTERN, or matching it as a glob (small/*, [DE]); case-insensitive",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(run=_list, exit_codes=LIST_EXIT_CODES)


def _list(args: argparse.Namespace) -> int:
    names = matching(args.pattern)
    if not names:
        print(f"no bundled spec matches '{args.pattern}'; 'vggspec list' shows them all", file=sys.stderr)
        return ExitCode.NO_MATCH
    entries = [(name, analyze(load(spec_path(name)))) for name in names]
    if args.format == "json":
        print(json.dumps([_list_json(name, a) for name, a in entries], indent=2))
    else:
        print(catalogue(entries))
    return ExitCode.OK


def _list_json(name: str, analysis: Analysis) -> dict:
    return {
        "name": name,
        "display_name": analysis.spec.display_name,
        "source": analysis.spec.source,
        "input": list(analysis.input_shape),
        "classes": classes(analysis),
        "params": analysis.params,
        "macs": analysis.macs,
    }


# -- analyze -------------------------------------------------------------------------------

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the numbers printed (with --train and --memory: every spec's training step fits)",
    ExitCode.DOES_NOT_FIT: "with --train and --memory: a spec's training step does not fit the memory even at one "
    "image a forward pass (the budget is still printed)",
    ExitCode.BAD_INPUT: "bad input: a spec that cannot be read or does not fit its input (the others are still "
    "analysed), a value that cannot work",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "analyze",
        help="shapes, parameters, MACs/FLOPs, memory and receptive fields of specs",
        description="Analyse specs without building them (torch is not imported). One spec: a "
        "row per layer. Several: a column per spec ('vggspec analyze --params' prints Table 2). "
        "With no number chosen, all are shown. --init NAME adds each layer's output RMS in a network so "
        "initialised, in training mode, on the inputs a run gives it (--normalise auto: mean-subtracted pixels of "
        "RMS 58, or divided by their std for Glorot's or Kaiming's start on a network 512 channels wide).",
    )
    add_specs_argument(p)
    numbers = p.add_argument_group("numbers", "the columns shown; with none chosen, all but --init's")
    numbers.add_argument("--params", action="store_true", help="parameters (weights + biases)")
    numbers.add_argument(
        "--flops", action="store_true", help="compute: MACs of conv and FC layers (fvcore's count), FLOPs = 2 × MACs"
    )
    numbers.add_argument(
        "--memory",
        nargs="?",
        const=FREE_MEMORY,
        metavar="SIZE",
        help="alone: activations, output values per image and their float32 bytes. With a size (80GiB, 16GB, "
        "512MiB; KiB/MiB/GiB are powers of 1024, KB/MB/GB of 1000), a training budget (--train) that plans the "
        "largest micro-batch fitting that memory per GPU and the gradient-accumulation steps that give the batch; "
        f"{PLANNING_MARGIN * 100:.0f}%% of it is left for the CUDA context, cuDNN and fragmentation. With --train "
        "and no size: this machine's free GPU memory",
    )
    numbers.add_argument(
        "--receptive-field",
        action="store_true",
        help="receptive field, effective stride and effective padding (Araujo et al., Distill 2019)",
    )
    numbers.add_argument("--shapes", action="store_true", help="output shapes and the smallest valid input size")
    add_init_option(numbers, default=None)
    network = p.add_argument_group("network", "the network analysed, when it is not the spec's as declared")
    add_input_option(network)
    network.add_argument(
        "--dense",
        action="store_true",
        help="the fully-convolutional network of dense evaluation (FC layers as convolutions, Section 3.2); "
        "with --input, the class score map",
    )
    add_num_classes_option(network)
    output = p.add_argument_group("output", "how the numbers are laid out")
    output.add_argument("--per-layer", action="store_true", help="a per-layer table for every spec, not side by side")
    output.add_argument(
        "--format",
        choices=("text", "json", "markdown", "csv"),
        default="text",
        help="output format (default: text). markdown: a pipe table per spec, totals last; csv: a row per layer "
        "per spec, the spec's name first, plain numbers and no totals row; both with the text table's columns",
    )
    train = p.add_argument_group(
        "training budget",
        "--train: the memory of one training step of one process, per layer and in total (weights, gradients, "
        "SGD's momentum, the activations the forward pass keeps for the backward, the input, and the step's "
        "peak, as PyTorch allocates them on a GPU; held within 5% of PyTorch's MemTracker by the tests), and its "
        "forward and backward FLOPs. Any option of this group implies --train. Torch is still not imported.",
    )
    train.add_argument("--train", action="store_true", help="a training step's budget (SGD with momentum)")
    train.add_argument("--batch", metavar="N", help=f"the global batch (default: the paper's {PAPER_BATCH})")
    train.add_argument(
        "--gpus",
        metavar="N",
        help="processes (GPUs) the batch is split over; where N does not divide it, the budget is of the largest "
        "share, one image more than the smallest (default: 1)",
    )
    train.add_argument(
        "--micro-batch", metavar="N", help="images per forward pass, gradients accumulated (default: a GPU's share)"
    )
    train.add_argument("--amp", choices=("bf16", "fp16"), help="autocast (default: float32)")
    train.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    train.add_argument(
        "--device",
        metavar="GPU",
        help=f"a lower bound on the time per step and per epoch at a known GPU's peak rates: {', '.join(GPUS)} "
        "(float32: TF32 for convolutions as cuDNN does by default, FP32 for FC layers)",
    )
    train.add_argument("--device-flops", metavar="F", help="the same bound at F FLOP/s (312e12, 312T) for every layer")
    train.add_argument(
        "--images",
        metavar="N",
        help=f"images an epoch, for the time bound (default: ImageNet's {IMAGENET_TRAIN_IMAGES:,})",
    )
    p.set_defaults(check_values=_training_request)
    p.set_defaults(run=_analyze, exit_codes=EXIT_CODES)


def _analyze(args: argparse.Namespace) -> int:
    request = _training_request(args)  # bad numbers said first, before any spec is read
    classes = fixed_class_count(args, "analyze")
    specs, failed = load_all(args.specs)
    analyses = []
    for spec in specs:
        try:
            if classes is not None:
                spec = spec.with_classes(classes)
            analyses.append(analyze(spec, input_size=args.input, dense=args.dense))
        except SpecError as err:
            print(err.located(spec.source, spec.text), file=sys.stderr)
            failed = True
    if request is not None:
        fit = _analyze_training(analyses, request, args.format)
        return ExitCode.BAD_INPUT if failed else ExitCode.OK if fit else ExitCode.DOES_NOT_FIT
    memory = args.memory is not None
    columns = Columns(args.shapes, args.params, args.flops, memory, args.receptive_field, args.init)
    if args.format == "json":
        print(json.dumps([_json(a, args.init) for a in analyses], indent=2))
    elif args.format == "markdown":
        print("\n".join(per_layer_markdown(a, columns) for a in analyses), end="")
    elif args.format == "csv":
        sys.stdout.write(per_layer_csv(analyses, columns))
    elif analyses:
        if len(analyses) == 1 or args.per_layer:
            print("\n\n".join(per_layer(a, columns) for a in analyses))
        else:
            print(side_by_side(analyses, columns))
        _note_input_override(analyses, args.input)
    return ExitCode.BAD_INPUT if failed else 0


FREE_MEMORY = "free"  # --memory without a size


class _TrainingRequest(typing.NamedTuple):
    """What analyze --train was asked: the step's settings, the memory to plan for, the time bound's device."""

    settings: TrainSettings
    memory: int | None
    device: str | None  # a known GPU's name
    device_flops: float | None
    images: int


def _training_request(args: argparse.Namespace) -> _TrainingRequest | None:
    """The training budget's settings, or None for the plain analysis. ``--memory`` alone keeps its first
    meaning (the activations column); a word after it that is no size is a spec (``--memory D``)."""
    memory = args.memory
    if memory not in (None, FREE_MEMORY) and not re.match(r"\s*[-+.0-9]", memory):
        args.specs.insert(0, memory)
        memory = FREE_MEMORY
    options = (args.batch, args.gpus, args.micro_batch, args.amp, args.device, args.device_flops, args.images)
    wanted = args.train or args.channels_last or any(value is not None for value in options)
    if not wanted and memory in (None, FREE_MEMORY):
        return None
    if args.device and args.device_flops:
        raise SpecError("--device and --device-flops both give the rate: give one")
    if args.micro_batch is not None and memory is not None:
        raise SpecError("--memory chooses the micro-batch: give --memory or --micro-batch, not both")
    if args.input is not None or args.dense:
        raise SpecError("--train budgets the network as it trains: at its declared input, with its classifier")
    settings = TrainSettings(
        batch=_count(args.batch, "--batch") if args.batch is not None else PAPER_BATCH,
        processes=_count(args.gpus, "--gpus") if args.gpus is not None else 1,
        micro_batch=_count(args.micro_batch, "--micro-batch") if args.micro_batch is not None else None,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    if memory == FREE_MEMORY:
        memory_bytes: int | None = _free_gpu_memory()
    else:
        memory_bytes = parse_size(memory) if memory is not None else None
    device_flops = parse_flops(args.device_flops) if args.device_flops is not None else None
    images = _count(args.images, "--images") if args.images is not None else IMAGENET_TRAIN_IMAGES
    device = gpu(args.device).name if args.device else None
    return _TrainingRequest(settings, memory_bytes, device, device_flops, images)


def _count(text: str, flag: str) -> int:
    """A whole number of at least 1, or a SpecError in one line."""
    try:
        value = int(text)
    except ValueError:
        raise SpecError(f"{flag} takes a whole number, not '{text}'") from None
    if value < 1:
        raise SpecError(f"{flag} must be at least 1, got {value}")
    return value


def _free_gpu_memory() -> int:
    """This machine's free GPU memory (the first GPU's), read with PyTorch: imported only here."""
    hint = "give the memory: --memory 80GiB"
    try:
        import torch
    except ImportError:
        raise SpecError("--memory without a size reads the free GPU memory, which needs PyTorch", hint=hint) from None
    if not torch.cuda.is_available():
        raise SpecError("--memory without a size reads the free GPU memory, and this machine has no GPU", hint=hint)
    from ..nn.devices import free_memory

    return free_memory(torch.device("cuda"))


def _analyze_training(analyses: list[Analysis], request: _TrainingRequest, fmt: str) -> bool:
    """Print the training budget of each spec; whether each fits the ``--memory`` given (True without one)."""
    blocks, documents, budgets, fit = [], [], [], True
    for analysis in analyses:
        spec = analysis.spec
        found = plan(spec, request.memory, request.settings) if request.memory is not None else None
        fit = fit and (found is None or found.fits)
        budget = found.budget if found is not None and found.budget is not None else None
        budget = budget or train_budget(spec, request.settings)
        budgets.append(budget)
        bound, rate = _time_bound(budget, request)
        if fmt == "json":
            documents.append(_training_json(analysis, budget, found, bound))
            continue
        notes = [plan_text(found)] if found is not None else []
        notes += [time_text(bound, rate)] if bound is not None else []
        if fmt == "markdown":
            blocks.append(training_step_markdown(budget, notes))
        else:
            blocks.append("\n".join([training_step(budget), *notes]))
    if fmt == "json":
        print(json.dumps(documents, indent=2))
    elif fmt == "csv":  # the table's numbers alone: the plan and the bound are in the text and the JSON
        print(training_step_csv(budgets), end="")
    else:
        print("\n\n".join(blocks))
    return fit


def _time_bound(budget: TrainBudget, request: _TrainingRequest) -> tuple[TimeBound | None, str]:
    """The time bound asked for, and its rates in words."""
    if request.device is not None:
        conv, fc = rates(gpu(request.device), budget.settings.amp)
        said = f"{human_count(conv)}FLOP/s"
        if fc != conv:
            said += f" for convolutions, {human_count(fc)}FLOP/s for FC layers"
        return time_bound(budget, conv, fc, device=request.device, images=request.images), said
    if request.device_flops is not None:
        flops = request.device_flops
        bound = time_bound(budget, flops, device=f"a device of {human_count(flops)}FLOP/s", images=request.images)
        return bound, "every layer at that rate"
    return None, ""


def _training_json(analysis: Analysis, budget: TrainBudget, found: Plan | None, bound: TimeBound | None) -> dict:
    """analyze --format json's object, with the training budget: ``total.train``, and per layer
    ``train_saved_bytes``, ``forward_flops``, ``backward_flops`` (of the step of one process)."""
    out = analysis.to_dict()
    for layer, step in zip(out["layers"], budget.layers):
        layer.update(train_saved_bytes=step.saved_bytes, forward_flops=step.forward_flops)
        layer.update(backward_flops=step.backward_flops)
    train = budget.to_dict()
    if found is not None:
        train["plan"] = {
            "memory_bytes": found.memory,
            "usable_bytes": found.usable,
            "margin": PLANNING_MARGIN,
            "fits": found.fits,
            "largest_micro_batch": found.largest,
            "needed_bytes": found.needed,
        }
    if bound is not None:
        train["time"] = bound.to_dict()
    out["total"]["train"] = train
    return out


def _json(analysis: Analysis, init: str | None) -> dict:
    out = analysis.to_dict()
    if init:
        rms, pixels = rms_at_init(analysis.spec, init)
        for layer, value in zip(out["layers"], rms):
            layer["initial_rms"] = value
        out["total"]["initial_scale"] = {"init": init, "class_score_rms": rms[-1], "input_rms": pixels}
    return out


def _note_input_override(analyses: list[Analysis], size: int | None) -> None:
    if size is not None and not any(a.spec.is_dense for a in analyses):
        print(
            f"\nnote: analysed at {size}×{size}; fully-connected layers flatten the map that reaches "
            "them at that size, so their parameter counts follow the input.",
            file=sys.stderr,
        )
