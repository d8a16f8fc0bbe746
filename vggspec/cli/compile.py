"""``vggspec compile``: build a spec with PyTorch and check it against the analysis, or write it (or a trained
network) as a checkpoint, safetensors, torch.export, TorchScript, ONNX or Python source. Torch is imported
after the spec has been read."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import typing
from pathlib import Path

from .. import files
from ..errors import ExitCode, SpecError
from ..nn.weights_file import is_weights_file
from ..run import runs
from ..spec.bundled import spec_path
from ..spec.parser import load
from .common import (
    INTERRUPTED,
    SPEC_HELP,
    Commands,
    ExitCodes,
    add_init_option,
    add_input_option,
    add_num_classes_option,
    fixed_class_count,
    need_torch,
)

if typing.TYPE_CHECKING:
    from ..nn.compiler import VGG


EXIT_CODES: ExitCodes = {
    ExitCode.OK: "without -o: every layer's real output shape and parameters agree with the analysis; with -o: "
    "the network written",
    ExitCode.DIFFERS: "without -o: a layer's real output shape or parameters disagree with the analysis",
    ExitCode.BAD_INPUT: "bad input: a spec error, weights that do not fit, an output suffix or format it does not "
    "know, a file that cannot be written",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "compile",
        help="build a spec with PyTorch: check it, or save it as a checkpoint, safetensors, torch.export, "
        "TorchScript, ONNX or Python",
        description="Compile SPEC into a PyTorch module. Without -o: build it, run one forward pass at the "
        "spec's input size (or --input's, with --dense) and print each layer's real output shape and parameters "
        "next to the analysis. With -o: write a vggspec checkpoint (load it with vggspec.load_model), a "
        ".safetensors file (the weights, with the spec, its hash and the preprocessing in its metadata), a "
        "torch.export program (.pt2: torch.export.load(FILE).module() runs it without vggspec), TorchScript, "
        "ONNX, or a standalone PyTorch source file that does not need vggspec. SPEC may also be a checkpoint or "
        "run folder: 'vggspec compile RUN -o model.safetensors' converts a trained network.",
    )
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP + "; or a checkpoint or run folder (its best.pt)")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write the compiled network to FILE (-: standard output, with --format)"
    )
    p.add_argument(
        "--format",
        choices=(*NETWORK_FORMATS, "json"),
        help=f"output format (default: from FILE's suffix: {_suffixes_text()}); without -o, json prints the check "
        "(each layer's real output shape and parameters beside the analysis') as JSON",
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
    add_init_option(p, default="auto")
    p.add_argument("--seed", type=int, help="seed of the random initialisation (reproducible weights)")
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="a trained A's checkpoint or run folder: copy its first four conv and last three FC layers (Section 3.1)",
    )
    add_input_option(p)
    add_num_classes_option(p)
    p.set_defaults(run=_compile, exit_codes=EXIT_CODES)


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
FORMAT_SUFFIXES = {fmt: suffix for suffix, fmt in reversed(SUFFIX_FORMATS.items())}  # each format's first suffix
# What -o writes: vggspec's own formats, then nn.export.FORMATS (named here, as that module imports torch;
# tests/test_help.py keeps them equal).
NETWORK_FORMATS = ("checkpoint", "safetensors", "pt2", "torchscript", "onnx", "python")
# What --help calls each format after its suffixes (none: the suffix says it).
FORMAT_WORDS = {
    "checkpoint": "a vggspec checkpoint",
    "pt2": "a torch.export program",
    "torchscript": "TorchScript (legacy: PyTorch deprecates it for torch.export)",
    "python": "Python source",
}


def _suffixes_text() -> str:
    """``.pt, .pth, .ckpt: a vggspec checkpoint; .safetensors; ...``: every suffix -o knows, by format."""
    by_format: dict[str, list[str]] = {}
    for suffix, fmt in SUFFIX_FORMATS.items():
        by_format.setdefault(fmt, []).append(suffix)
    return "; ".join(
        ", ".join(suffixes) + (f": {FORMAT_WORDS[fmt]}" if fmt in FORMAT_WORDS else "")
        for fmt, suffixes in by_format.items()
    )


def _compile(args: argparse.Namespace) -> int:
    classes = fixed_class_count(args, "compile")
    if _is_checkpoint(args.spec):
        return _compile_checkpoint(args)
    spec = load(args.spec)  # spec errors first, before the seconds torch takes to import
    if classes is not None:
        spec = spec.with_classes(classes)
    if args.output:
        inputs = [spec_path(args.spec), *_checkpoint_files(args.weights), *_checkpoint_files(args.init_from)]
        files.refuse_overwriting(args.output, inputs, "compile")
        output_format(args.output, args.format)  # an unknown suffix is said before the build, not after
    need_torch("vggspec compile")
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
        print(json.dumps(result.to_dict(), indent=2) if args.format == "json" else result)
        return ExitCode.OK if result.ok else ExitCode.DIFFERS
    return _write_compiled(model, args)


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def _is_checkpoint(name: str) -> bool:
    """A run folder, or a checkpoint file, rather than a spec (a file or a bundled name)."""
    path = Path(name)
    return path.suffix.lower() in CHECKPOINT_SUFFIXES or (path.is_dir() and (path / runs.BEST).exists()) or (
        path.is_file() and is_weights_file(path)  # a checkpoint under another name: told by its content
    )


def _compile_checkpoint(args: argparse.Namespace) -> int:
    """A trained network written again in another format: its weights, spec and preprocessing as they are."""
    if args.weights or args.init_from or args.seed is not None or args.strict_weights:
        raise SpecError("a checkpoint brings its own weights: --weights, --init-from, --seed do not apply to it")
    if args.num_classes is not None:
        raise SpecError("a checkpoint's network classifies into the classes it was trained for: --num-classes does "
                        "not apply to it")  # fmt: skip
    if not args.output:
        raise SpecError(f"{args.spec} is a trained network: give -o FILE to write it in another format")
    files.refuse_overwriting(args.output, [runs.checkpoint_path(args.spec)], "compile")
    output_format(args.output, args.format)
    need_torch("vggspec compile")
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
    checkpoint keeps beside the weights (a trained network's training scale, classes, settings). ``-o -``
    writes to standard output, in the format --format names."""
    fmt = output_format(args.output, args.format)
    if files.is_stdout(args.output):
        with tempfile.TemporaryDirectory(prefix="vggspec-") as folder:  # the writers want a file name
            written = _write(model, Path(folder) / f"network{FORMAT_SUFFIXES[fmt]}", fmt, facts)
            files.write_bytes(files.STDOUT, written.read_bytes())
        where = "standard output"
    else:
        where = str(_write(model, Path(args.output), fmt, facts))
    print(f"wrote {where} ({fmt}{', dense' if model.dense else ''})", file=sys.stderr)
    if model.preprocessing is not None and fmt == "safetensors":
        print(f"its metadata records the inputs: {model.preprocessing.describe()}", file=sys.stderr)
    elif model.preprocessing is not None and fmt != "checkpoint":
        print(f"it takes raw pixels 0-255 and normalises them: {model.preprocessing.describe()}", file=sys.stderr)
    return ExitCode.OK


def output_format(output: str, chosen: str | None) -> str:
    """The format --format names, else the one ``output``'s suffix says: an unknown suffix (``x.safetensor``)
    is refused, not written as a pickle."""
    if chosen == "json":
        raise SpecError(
            "--format json is the check's report, printed without -o: it writes no network",
            hint="leave -o out to print the check as JSON, or name a network format (--format checkpoint, ...)",
        )
    if chosen:
        return chosen
    if files.is_stdout(output):
        raise SpecError(
            "-o - writes to standard output: say what to write with --format",
            hint=f"e.g. --format python; formats: {', '.join(sorted(FORMAT_SUFFIXES))}",
        )
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        known = ", ".join(SUFFIX_FORMATS)
        raise SpecError(
            f"-o {output}: vggspec does not know what to write for the suffix '{suffix or '(none)'}'",
            hint=f"use one of {known}, or say what to write with --format",
        )
    return SUFFIX_FORMATS[suffix]


def _write(model: VGG, output: Path, fmt: str, facts: dict[str, object]) -> Path:
    if fmt in ("checkpoint", "safetensors"):
        from ..nn.checkpoint import save_checkpoint

        return save_checkpoint(model, output, safetensors=fmt == "safetensors", **facts)
    from ..nn.export import export_model

    export_model(model, output, fmt)
    return output


def _checkpoint_files(name: str | None) -> list[Path]:
    """The files a checkpoint argument may read: the file, or a run folder's best.pt and last.pt."""
    if not name:
        return []
    return [Path(name), Path(name) / runs.BEST, Path(name) / runs.LAST]
