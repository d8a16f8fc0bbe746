"""The ``vggspec`` command: a thin shell over the Python API.

Exit codes (:class:`vggspec.errors.ExitCode`): 0 success, 1 ``fmt --check`` found files to reformat
(``compile``: the network disagrees with the analysis; ``diff``: the networks differ; ``list``: the pattern
matched nothing; ``analyze --memory``: a batch does not fit), 2 bad input (a spec error, a missing file) —
reported as ``file:line:col: error: ...``, never as a traceback —, 3 a training run diverged, 4 a process
died with no restart left, 5 it ran out of memory, 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import types
import typing
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .. import __version__, files
from ..errors import ExitCode, SpecError
from ..logs import quiet_torch_native_logs, show_messages
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
from ..plan.diff import diff, new_layers
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
    table1,
    time_text,
    training_step,
    training_step_csv,
    training_step_markdown,
)
from ..run import runs
from ..run.config import (
    PREDICT_METHODS,
    EvaluateConfig,
    Rendezvous,
    TrainConfig,
    load_config_file,
    machines,
    validated,
)
from ..run.runs import started_data
from ..spec.analysis import Analysis, analyze
from ..spec.bundled import matching, paper_specs, spec_files, spec_path
from ..spec.formatter import format_spec
from ..spec.initialisation import parse_init
from ..spec.parser import load, parse
from ..spec.spec import Spec
from ..units import human_count

if typing.TYPE_CHECKING:
    from ..nn.compiler import VGG


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
        blocker = _file_in_the_way(err)
        if blocker is not None:
            print(f"error: {blocker} is a file, where a folder is needed", file=sys.stderr)
        else:
            print(f"error: {f'{err.filename}: ' if err.filename else ''}{err.strerror or err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


# -- the parser: a block per command, its flags next to its handler ------------------------


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
    _add_list(commands)
    _add_analyze(commands)
    _add_compile(commands)
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_fmt(commands)
    _add_table(commands)
    _add_diff(commands)
    _add_graph(commands)
    for command in commands.choices.values():  # an unknown flag gets the command's usage, not vggspec's
        command.set_defaults(command_parser=command)
    return parser


Commands = argparse._SubParsersAction  # what add_subparsers returns: add_parser(name, ...) per command


# -- list ----------------------------------------------------------------------------------


def _add_list(commands: Commands) -> None:
    p = commands.add_parser(
        "list",
        help="the bundled specs: name, input, classes, parameters, MACs",
        description="List the specs that ship with vggspec, each by the name every other command takes "
        "(vggspec analyze small/A-narrow-32). Torch is not imported. A PATTERN that matches none exits 1, "
        "as grep does, so that a script can tell 'no such spec' from a listing.",
    )
    p.add_argument(
        "pattern",
        nargs="?",
        metavar="PATTERN",
        help="keep the names containing PATTERN, or matching it as a glob (small/*, [DE]); case-insensitive",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(run=_list)


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


def _add_analyze(commands: Commands) -> None:
    p = commands.add_parser(
        "analyze",
        help="shapes, parameters, MACs/FLOPs, memory and receptive fields of specs",
        description="Analyse specs without building them (torch is not imported). One spec: a "
        "row per layer. Several: a column per spec ('vggspec analyze --params' prints Table 2). "
        "With no number chosen, all are shown. --init NAME adds each layer's output RMS in a network so "
        "initialised, in training mode, on the inputs a run gives it (--normalise auto: mean-subtracted pixels of "
        "RMS 58, or divided by their std for Glorot's or Kaiming's start on a network 512 channels wide).",
    )
    _add_specs_argument(p)
    p.add_argument("--params", action="store_true", help="parameters (weights + biases)")
    p.add_argument(
        "--flops", action="store_true", help="compute: MACs of conv and FC layers (fvcore's count), FLOPs = 2 × MACs"
    )
    p.add_argument(
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
    p.add_argument(
        "--receptive-field",
        action="store_true",
        help="receptive field, effective stride and effective padding (Araujo et al., Distill 2019)",
    )
    p.add_argument("--shapes", action="store_true", help="output shapes and the smallest valid input size")
    _add_input_option(p)
    p.add_argument(
        "--dense",
        action="store_true",
        help="the fully-convolutional network of dense evaluation (FC layers as convolutions, Section 3.2); "
        "with --input, the class score map",
    )
    _add_init_option(p, default=None)
    train = p.add_argument_group(
        "training budget",
        "--train: the memory of one training step of one process, per layer and in total (weights, gradients, "
        "SGD's momentum, the activations the forward pass keeps for the backward, the input, and the step's "
        "peak, as PyTorch allocates them on a GPU; held within 5% of PyTorch's MemTracker by the tests), and its "
        "forward and backward FLOPs. Any option of this group implies --train. Torch is still not imported.",
    )
    train.add_argument("--train", action="store_true", help="a training step's budget (SGD with momentum)")
    train.add_argument("--batch", metavar="N", help=f"the global batch (default: the paper's {PAPER_BATCH})")
    train.add_argument("--gpus", metavar="N", help="processes (GPUs) the batch is split over (default: 1)")
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
    p.add_argument("--per-layer", action="store_true", help="a per-layer table for every spec, not side by side")
    p.set_defaults(check_values=_training_request)
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown", "csv"),
        default="text",
        help="output format (default: text). markdown: a pipe table per spec, totals last; csv: a row per layer "
        "per spec, the spec's name first, plain numbers and no totals row; both with the text table's columns",
    )
    p.set_defaults(run=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    request = _training_request(args)  # bad numbers said first, before any spec is read
    specs, failed = _load_all(args.specs)
    analyses = []
    for spec in specs:
        try:
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


def _need_torch(what: str) -> None:
    """PyTorch is importable, or one line saying ``what`` needs it and how to install it (it is an extra: the
    analysis commands run without it)."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise SpecError(f"{what} needs PyTorch: pip install 'vggspec[torch]' ({err})") from None


def _free_gpu_memory() -> int:
    """This machine's free GPU memory (the first GPU's), read with PyTorch: imported only here."""
    hint = "give the memory: --memory 80GiB"
    try:
        import torch
    except ImportError:
        raise SpecError("--memory without a size reads the free GPU memory, which needs PyTorch", hint=hint) from None
    if not torch.cuda.is_available():
        raise SpecError("--memory without a size reads the free GPU memory, and this machine has no GPU", hint=hint)
    return torch.cuda.mem_get_info()[0]


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


# -- compile -------------------------------------------------------------------------------


def _add_compile(commands: Commands) -> None:
    p = commands.add_parser(
        "compile",
        help="build a spec with PyTorch: check it, or save it as a checkpoint, TorchScript, ONNX or Python",
        description="Compile SPEC into a PyTorch module. Without -o: build it, run one forward pass at the "
        "spec's input size (or --input's, with --dense) and print each layer's real output shape and parameters "
        "next to the analysis. With -o: write a vggspec checkpoint (load it with vggspec.load_model), a "
        ".safetensors file (the weights, with the spec, its hash and the preprocessing in its metadata), "
        "TorchScript, ONNX, or a standalone PyTorch source file that does not need vggspec. SPEC may also be a "
        "checkpoint or run folder: 'vggspec compile RUN -o model.safetensors' converts a trained network.",
    )
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP + "; or a checkpoint or run folder (its best.pt)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the compiled network to FILE")
    p.add_argument(
        "--format",
        choices=("checkpoint", "safetensors", "pt2", "torchscript", "onnx", "python"),
        help="output format (default: from FILE's suffix: .pt checkpoint, .safetensors, .pt2 torch.export program, "
        ".ts torchscript (legacy: PyTorch deprecates it for torch.export), .onnx, .py python)",
    )
    p.add_argument("--dense", action="store_true", help="the fully-convolutional network (Section 3.2)")
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="a state dict to load: vggspec's (a checkpoint, or a run folder: its best.pt), torchvision's "
        "(vgg11/13/16/19[_bn]), or torchvision's pretrained by name: torchvision:vgg16[_bn][:ENUM] (downloaded "
        "once into the torch hub cache). Layers whose shape differs (another number of classes) are drawn by "
        "--init, a first conv for gray or N-channel input adapted from the RGB kernels; the loading is printed",
    )
    p.add_argument(
        "--strict-weights",
        action="store_true",
        help="every layer of --weights must fit: refuse weights of another shape instead of drawing those layers",
    )
    _add_init_option(p, default="auto")
    p.add_argument("--seed", type=int, help="seed of the random initialisation (reproducible weights)")
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="a trained A's checkpoint or run folder: copy its first four conv and last three FC layers (Section 3.1)",
    )
    _add_input_option(p)
    p.set_defaults(run=_compile)


SUFFIX_FORMATS = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".ckpt": "checkpoint",
    ".safetensors": "safetensors",
    ".pt2": "pt2",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".jit": "torchscript",
    ".onnx": "onnx",
    ".py": "python",
}


def _compile(args: argparse.Namespace) -> int:
    if _is_checkpoint(args.spec):
        return _compile_checkpoint(args)
    spec = load(args.spec)  # spec errors first, before the seconds torch takes to import
    if args.output:
        inputs = [spec_path(args.spec), *_checkpoint_files(args.weights), *_checkpoint_files(args.init_from)]
        files.refuse_overwriting(args.output, inputs, "compile")
    _need_torch("vggspec compile")
    print(f"building {spec.display_name} with PyTorch ...", file=sys.stderr)
    from ..nn.compiler import build
    from ..nn.dense import to_dense
    from ..nn.transfer import transfer_from

    model = build(spec, init=args.init, weights=args.weights, seed=args.seed, strict_weights=args.strict_weights)
    if model.weights_report is not None:
        print(model.weights_report, file=sys.stderr)
    if args.init_from:
        print(transfer_from(args.init_from, model), file=sys.stderr)
    if args.dense:
        model = to_dense(model)
    model.eval()
    if not args.output:
        from ..nn.verify import verify

        result = verify(model, args.input)
        print(result)
        return ExitCode.OK if result.ok else ExitCode.DIFFERS
    return _write_compiled(model, args)


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def _is_checkpoint(name: str) -> bool:
    """A run folder, or a checkpoint file, rather than a spec (a file or a bundled name)."""
    path = Path(name)
    return path.suffix.lower() in CHECKPOINT_SUFFIXES or (path.is_dir() and (path / runs.BEST).exists())


def _compile_checkpoint(args: argparse.Namespace) -> int:
    """A trained network written again in another format: its weights, spec and preprocessing as they are."""
    if args.weights or args.init_from or args.seed is not None or args.strict_weights:
        raise SpecError("a checkpoint brings its own weights: --weights, --init-from, --seed do not apply to it")
    if not args.output:
        raise SpecError(f"{args.spec} is a trained network: give -o FILE to write it in another format")
    files.refuse_overwriting(args.output, [runs.checkpoint_path(args.spec)], "compile")
    _need_torch("vggspec compile")
    from ..nn.checkpoint import model_from_checkpoint, read_checkpoint
    from ..nn.dense import to_dense

    facts = read_checkpoint(args.spec, mmap=True)  # what its numbers mean travels along: S, classes, flips
    model = model_from_checkpoint(facts, runs.checkpoint_path(args.spec))
    kept = {key: facts[key] for key in ("classes", "train_scale", "config", "colour_stats") if key in facts}
    if args.dense and not model.dense:
        model = to_dense(model)
    return _write_compiled(model.eval(), args, **kept)


def _write_compiled(model: VGG, args: argparse.Namespace, **facts: object) -> int:
    """``model`` to ``args.output`` in the format its suffix (or --format) says; ``facts``: entries a
    checkpoint keeps beside the weights (a trained network's training scale, classes, settings)."""
    output = Path(args.output)
    fmt = args.format or SUFFIX_FORMATS.get(output.suffix.lower(), "checkpoint")
    if fmt in ("checkpoint", "safetensors"):
        from ..nn.checkpoint import save_checkpoint

        save_checkpoint(model, output, safetensors=fmt == "safetensors", **facts)
    else:
        from ..nn.export import export_model

        export_model(model, output, fmt)
    print(f"wrote {output} ({fmt}{', dense' if model.dense else ''})", file=sys.stderr)
    if model.preprocessing is not None and fmt == "safetensors":
        print(f"its metadata records the inputs: {model.preprocessing.describe()}", file=sys.stderr)
    elif model.preprocessing is not None and fmt != "checkpoint":
        print(f"it takes raw pixels 0-255 and normalises them: {model.preprocessing.describe()}", file=sys.stderr)
    return 0


# -- train ---------------------------------------------------------------------------------


def _add_train(commands: Commands) -> None:
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
        "included, with its spec and settings. Exit codes: 0 done, 2 bad input or a run folder that cannot be "
        "written, 3 the loss diverged, 4 a process died and no restart was left (last.pt kept), 5 out of memory "
        "(finished steps saved), 130 interrupted (saved).",
    )
    p.add_argument("--config", metavar="FILE", help="settings from a .json or .toml file; flags override them")
    _add_model_options(p, TrainConfig)
    p.set_defaults(run=_train)


@contextmanager
def _told_to_the_machines(values: dict[str, Any]) -> Iterator[None]:
    """Bad input this machine finds before it starts its processes, told to the other machines of ``--nnodes``
    (which would wait for it at the rendezvous): torch is imported for it only then."""
    try:
        yield
    except SpecError as err:
        try:
            several = machines(Rendezvous.model_validate(values))
        except (SpecError, ValidationError):  # the rendezvous flags themselves: nobody to tell
            raise err from None
        if not several.several:
            raise
        quiet_torch_native_logs()
        try:
            from ..run.distributed import tell_the_machines
        except ImportError:  # no torch here: it is said when this machine runs
            raise err from None
        tell_the_machines(err, several, gpu=bool(values.get("gpus")))


def _train(args: argparse.Namespace) -> int:
    values = load_config_file(args.config) if args.config else {}
    values.update(_given(args, TrainConfig))
    with _told_to_the_machines(values):
        # Which spec (a resumed run's own) and its errors first, before the seconds torch takes to import.
        load(TrainConfig.model_construct(**values).spec_file())
        if "data" not in values and values.get("resume") and values.get("out"):
            values["data"] = started_data(values["out"])  # a run knows its data
        if values.get("data") is None:
            raise SpecError("where is the data? give --data DIR (DIR/train/<class>/*, DIR/val/<class>/*)")
        config = validated(TrainConfig, values, "training")
    if machines(config).several:  # this process serves the rendezvous, or reaches it: one line for its troubles
        quiet_torch_native_logs()
    _need_torch("vggspec train")
    from ..run.train import train

    train(config)
    return 0


# -- evaluate ------------------------------------------------------------------------------


def _add_evaluate(commands: Commands) -> None:
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
    _add_model_options(p, EvaluateConfig)
    p.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    values = _given(args, EvaluateConfig)
    with _told_to_the_machines(values):
        config = validated(EvaluateConfig, values, "evaluation")
    if machines(config).several:
        quiet_torch_native_logs()
    _need_torch("vggspec evaluate")
    from ..run.evaluate import evaluate

    evaluate(config)
    return 0


# -- predict -------------------------------------------------------------------------------


def _add_predict(commands: Commands) -> None:
    p = commands.add_parser(
        "predict",
        help="the top classes of images, with probabilities",
        description="Classify images with a trained checkpoint, or a spec and --weights (vggspec predict D "
        "--weights torchvision:vgg16 cat.jpg): dense evaluation at the training scale (or --scale), averaged "
        "with the flipped image if the network was trained with flips; class names from the training run or "
        "the weights. Inputs are prepared as the weights were trained on (the paper's mean subtraction, or "
        "torchvision's normalisation).",
    )
    p.add_argument(
        "checkpoint",
        metavar="CKPT|SPEC",
        help="a checkpoint written by 'vggspec train' or 'vggspec compile -o', or its run folder (its best.pt); "
        "with --weights, the spec (file or bundled name) to load them into",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    p.add_argument(
        "--weights",
        metavar="W",
        help="weights to load into SPEC: torchvision:NAME[:ENUM] (e.g. torchvision:vgg16 with spec D; downloaded "
        "once into the torch hub cache) or a state dict file; every layer must fit",
    )
    p.add_argument(
        "--method",
        "--crop",
        choices=PREDICT_METHODS,
        default="dense",
        help="dense: the fully-convolutional network on the whole image, as the paper evaluates; center: one "
        "centre crop, no flip, resampled as torchvision's evaluation transform does (for torchvision's weights "
        "at the default Q = 256: resize 256, centre crop 224, its probabilities); multi-crop: 50 crops; both: "
        "dense and multi-crop averaged (default: dense)",
    )
    p.add_argument("--scale", type=_positive_int, metavar="Q", help="rescale the smallest side to Q (default: S)")
    p.add_argument("--top", type=_positive_int, default=5, metavar="K", help="how many classes (default: 5)")
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: each image and its classes; json: one document, {network, weights, method, scale, flip, "
        "preprocessing, images: [{path, top: [{class, probability}]} or {path, error}]} (default: text)",
    )
    _add_flip_option(p)
    _add_dtype_option(p)
    p.set_defaults(run=_predict)


def _predict(args: argparse.Namespace) -> int:
    _need_torch("vggspec predict")
    from ..run.evaluate import predictions

    failed = False
    options = {"scale": args.scale, "top": args.top, "flip": args.flip, "dtype": args.dtype}
    found = predictions(args.checkpoint, args.images, weights=args.weights, method=args.method, **options)
    images: list[dict[str, object]] = []  # for --format json
    for path, top in found:
        if isinstance(top, SpecError):  # said, and the other images go on
            print(top, file=sys.stderr, flush=True)
            images.append({"path": path, "error": top.message})
            failed = True
            continue
        images.append({"path": path, "top": [{"class": name, "probability": p} for name, p in top]})
        if args.format == "text":
            print(path)
            for name, p in top:
                print(f"  {p:7.2%}  {name}")
            sys.stdout.flush()
    if args.format == "json":
        print(json.dumps({**found.describe(), "images": images}, indent=2))
    return ExitCode.BAD_INPUT if failed else 0


# -- fmt -----------------------------------------------------------------------------------


def _add_fmt(commands: Commands) -> None:
    p = commands.add_parser(
        "fmt",
        help="print specs in canonical form",
        description="Print specs in canonical form (comments kept, runs of equal layers as ×N). "
        "parse(fmt(spec)) is the same network.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or bundled names ('-' reads standard input)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not canonical")
    p.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")
    p.set_defaults(run=_fmt)


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


# -- table ---------------------------------------------------------------------------------


def _add_table(commands: Commands) -> None:
    p = commands.add_parser(
        "table",
        help="render Table 1 (markdown) from spec files, side by side",
        description="Render the specs as the paper's Table 1: a column per spec, a row per layer, "
        "stages aligned at the max-pooling layers. Markdown.",
    )
    _add_specs_argument(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument(
        "--mark-added",
        action="store_true",
        help="set in bold (**conv3-256**) each column's layers that are added or changed against the column "
        "before it, as the paper does (aligned as 'vggspec diff' aligns them)",
    )
    p.set_defaults(run=_table)


def _table(args: argparse.Namespace) -> int:
    specs, failed = _load_all(args.specs)
    if specs:
        markdown = table1(specs, new_layers(specs) if args.mark_added else ())
        if args.output:
            files.refuse_overwriting(args.output, [spec.source for spec in specs], "table")
            files.write_text(args.output, markdown)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(markdown)
    return ExitCode.BAD_INPUT if failed else 0


# -- diff ----------------------------------------------------------------------------------


def _add_diff(commands: Commands) -> None:
    p = commands.add_parser(
        "diff",
        help="compare two networks layer by layer: added, removed, changed, and what it costs",
        description="Align the layers of OLD and NEW (edit distance: a layer kept, changed within its kind, "
        "added or removed) and print a row per layer with the change in parameters, MACs and activations, the "
        "receptive field at each stage's end, and a summary. Names, comments and spelling (conv3-64 ×2 or two "
        "lines) do not count. Exit codes as diff(1): 0 the same network, 1 they differ, 2 bad input.",
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
    p.set_defaults(run=_diff)


def _diff(args: argparse.Namespace) -> int:
    changes = diff(_network_spec(args.old), _network_spec(args.new))
    print(json.dumps(changes.to_dict(), indent=2) if args.format == "json" else changes)
    return ExitCode.OK if changes.same else ExitCode.DIFFERS


def _network_spec(name: str) -> Spec:
    """The spec a network argument names: a checkpoint's or a run folder's stored spec (read with torch,
    so only then), else a spec file or a bundled spec."""
    path = Path(name)
    if not (path.is_dir() or (path.is_file() and zipfile.is_zipfile(path))):  # torch.save writes zip archives
        return load(name)
    _need_torch(f"reading the checkpoint {path}")
    from ..nn.checkpoint import checkpoint_spec, read_checkpoint

    return checkpoint_spec(read_checkpoint(path, mmap=True), path)


# -- graph ---------------------------------------------------------------------------------


def _add_graph(commands: Commands) -> None:
    p = commands.add_parser(
        "graph",
        help="draw a spec with graphviz (SVG, PNG, PDF or DOT)",
        description="Draw the layer graph, each node with its output shape and parameters. SVG, PNG "
        "and PDF need Graphviz's 'dot' program (apt-get install graphviz); DOT source does not.",
    )
    _add_spec_argument(p)
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: SPEC's name with the format's suffix)")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot"), help="default: from -o's suffix, else svg")
    _add_input_option(p)
    p.set_defaults(run=_graph)


def _graph(args: argparse.Namespace) -> int:
    from ..plan.drawing import draw

    spec = load(args.spec)
    output = Path(args.output or f"{Path(args.spec).stem}.{args.format or 'svg'}")
    files.refuse_overwriting(output, [spec_path(args.spec)], "graph")
    written = draw(analyze(spec, input_size=args.input), output, args.format)
    print(f"wrote {written}", file=sys.stderr)
    return 0


# -- arguments that several commands share: one definition and one help text each -----------

SPECS_HELP = (
    "spec files, directories of them, or bundled specs by name (D, small/A-narrow-32); "
    "default: Table 1's A, A-LRN, B, C, D, E"
)
SPEC_HELP = "a spec file, or a bundled spec by name (E)"
INPUT_HELP = (
    "work at N×N inputs instead of the spec's declared size (e.g. 384, a dense-evaluation scale): analyze and "
    "graph give the shapes there; compile, with --dense and no -o, runs the network on such images"
)


def _add_specs_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="*", metavar="SPEC", help=SPECS_HELP)


def _add_spec_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)


def _add_input_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=_positive_int, metavar="N", help=INPUT_HELP)


def _add_init_option(p: argparse.ArgumentParser, *, default: str | None) -> None:
    """``--init NAME``: train's field, with this command's default (none: analyze's RMS column stays off)."""
    _add_field_option(p, "init", TrainConfig.model_fields["init"], default=default, default_note=_note(default))


def _init_spelling(text: str) -> str:
    try:
        return parse_init(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_flip_option(p: argparse.ArgumentParser) -> None:
    """``--flip/--no-flip`` as evaluate has it, with its default: on."""
    field = EvaluateConfig.model_fields["flip"]
    _add_field_option(p, "flip", field, default=field.default)


def _add_dtype_option(p: argparse.ArgumentParser) -> None:
    """``--dtype`` as evaluate has it, with its default: float32."""
    field = EvaluateConfig.model_fields["dtype"]
    _add_field_option(p, "dtype", field, default=field.default)


# -- flags generated from a configuration model ---------------------------------------------


def _add_model_options(p: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag (or positional argument) per field of ``model``, so that --help and the settings cannot
    disagree. Flags default to None: what was not given stays out, and the model's defaults apply."""
    for name, field in model.model_fields.items():
        _add_field_option(p, name, field)


def _add_field_option(
    p: argparse.ArgumentParser,
    name: str,
    field: FieldInfo,
    *,
    default: object = None,
    default_note: str | None = None,
) -> argparse.Action:
    """The command-line form of one field: its type or choices, and its description and default as help.
    ``default`` is what argparse fills in; ``default_note`` overrides what the help says of the default."""
    how = (field.json_schema_extra or {}).get("command_line", {})  # see config.command_line
    description = (field.description or "").replace("%", "%%")  # argparse formats help with %
    if "nargs" in how:
        return p.add_argument(name, nargs=how["nargs"], metavar=how.get("metavar"), help=description)
    if default_note is None:
        default_note = how.get("default_note") or ("(required)" if field.is_required() else _note(field.default))
    help_text = f"{description} {default_note}".strip()
    flag = "--" + how.get("flag", name).replace("_", "-")
    kind, choices = _flag_type(field.annotation)
    if kind is bool:
        return p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    if choices:
        return p.add_argument(flag, dest=name, choices=choices, default=default, help=help_text)
    metavar = how.get("metavar", name.split("_")[-1].upper())
    kind = _init_spelling if name == "init" else kind  # a misspelt initialisation is said as the flag is read
    return p.add_argument(flag, dest=name, type=kind, default=default, metavar=metavar, help=help_text)


def _note(default: object) -> str:
    """What --help says of a default: nothing for none."""
    return "" if default is None else f"(default: {default})"


def _flag_type(annotation: object) -> tuple[type, list[str]]:
    """(type, choices) of a field: Optional[...] unwrapped, Literal[...] as choices."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(typing.get_args(annotation))
    return annotation if annotation in (bool, int, float) else str, []


def _given(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, object]:
    """The settings of ``model`` given on the command line (flags not given are None)."""
    return {key: value for key, value in vars(args).items() if key in model.model_fields and value is not None}


# -- helpers -------------------------------------------------------------------------------


def _load_all(names: list[str]) -> tuple[list[Spec], bool]:
    """Specs from files and directories (all .vgg files in it); none given: Table 1's six."""
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = spec_files(path)
            if not found:
                raise SpecError(f"no .vgg spec files in {path}")
            paths.extend(found)
        else:
            paths.append(path)
    if not names:
        paths = paper_specs()
    specs, failed = [], False
    for path in paths:
        try:
            specs.append(load(path))
        except SpecError as err:
            print(err, file=sys.stderr)
            failed = True
    return specs, failed


def _file_in_the_way(err: OSError) -> Path | None:
    """The file standing where a folder of ``err.filename``'s path should be (mkdir's EEXIST, open's ENOTDIR)."""
    if not err.filename or not isinstance(err, (FileExistsError, NotADirectoryError)):
        return None
    path = Path(err.filename)
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if candidate.is_file() else None
    return None


def _checkpoint_files(name: str | None) -> list[Path]:
    """The files a checkpoint argument may read: the file, or a run folder's best.pt and last.pt."""
    if not name:
        return []
    return [Path(name), Path(name) / runs.BEST, Path(name) / runs.LAST]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
