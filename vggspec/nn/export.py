"""Compiled network → a file other programs load without vggspec: TorchScript, ONNX or Python source.

:func:`export_model` writes one of :data:`FORMATS`:

* ``pt2``: a :func:`torch.export.export` program with a dynamic batch dimension (a dense model:
  height and width too, from one stride above its input size on), saved with
  :func:`torch.export.save`; ``torch.export.load(path).module()`` runs it without vggspec, and its
  extra file ``vggspec.json`` states the input. PyTorch's way forward from TorchScript.
* ``torchscript`` (legacy: PyTorch deprecates TorchScript for torch.export; kept while PyTorch has
  it): the network traced (:func:`torch.jit.trace`) on an input of the spec's shape and saved with
  :func:`torch.jit.save`; ``torch.jit.load`` gives it back.
* ``onnx``: :func:`torch.onnx.export` through PyTorch's torch.export-based exporter
  (``dynamo=True``, opset 18; needs ``onnx`` and ``onnxscript``), dynamic as ``pt2`` is, input
  ``images``, output ``scores``, checked with ``onnx.checker``. The TorchScript-based exporter it
  replaces is deprecated; this one takes a few seconds where that one took a fraction of one.
* ``python``: a standalone PyTorch source file (:func:`python_source`) defining the same
  network as a class whose ``state_dict()`` keys are vggspec's, so
  ``build().load_state_dict(model.state_dict())`` works. It imports only torch.

When the model records its preprocessing (``model.preprocessing``: a trained checkpoint, torchvision's
weights), every format takes raw pixels, 0-255 in the record's channel order, and normalises them itself
(:class:`RawPixels`; the Python source's ``forward``); the ONNX file's ``metadata_props`` and the Python
file's docstring state the record and the class names. A model without one takes its inputs as given.

Every format is exported in evaluation mode (dropout off, batch norm on its running
statistics); the model's own training flags are restored afterwards. Files are written whole or
not at all (:mod:`vggspec.files`), TorchScript through memory (torch's C++ file writer aborts
the process on a full disk), so a failed export never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from .. import files
from ..data.preprocessing import normalised
from ..data.scales import MAX_TEST_SCALE
from ..errors import SpecError
from .compiler import VGG

FORMATS = ("pt2", "torchscript", "onnx", "python")
"""The formats :func:`export_model` writes."""

ONNX_OPSET = 18
"""The ONNX opset exported: the torch.export-based exporter's first, readable by runtimes of the last years."""
ONNX_INPUT = "images"
ONNX_OUTPUT = "scores"

_LINE_LENGTH = 79  # of the generated Python source (PEP 8)


def export_model(model: VGG, path: str | Path, fmt: str, *, batch_size: int | None = None) -> Path:
    """Write ``model`` to ``path`` in format ``fmt`` (one of :data:`FORMATS`); returns the path.

    ``batch_size`` is the batch of the example input traced for ``torchscript`` and ``onnx``
    (default 2). For ``onnx`` it also fixes the batch dimension; without it the batch is
    dynamic. A TorchScript trace takes any batch either way. ``python`` ignores it.

    Raises :class:`~vggspec.SpecError` for an unknown format, a path that cannot be written,
    or (``onnx``) a missing ``onnx`` package.
    """
    if fmt not in FORMATS:
        raise SpecError(
            f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}",
            hint="a checkpoint with weights and spec is vggspec.save_checkpoint's job",
        )
    if not isinstance(model, VGG):
        raise TypeError(f"export_model exports a vggspec VGG (vggspec.build), got {type(model).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise SpecError(f"batch_size must be a positive integer or None (a dynamic batch), got {batch_size!r}")
    path = Path(path)
    if fmt == "onnx":
        _require("onnx", "ONNX export")
        _require("onnxscript", "ONNX export (PyTorch's torch.export-based exporter)")
    _check_writable(path)
    with _evaluation_mode(model):
        graph = RawPixels(model).eval() if model.preprocessing is not None else model
        if fmt == "pt2":
            data = _program_bytes(graph, model, batch_size)
            _write(path, lambda tmp: files.write_bytes(tmp, data))
        elif fmt == "torchscript":  # saved to memory first: torch's file writer aborts the process on a full disk
            data = _torchscript_bytes(graph, model, batch_size)
            _write(path, lambda tmp: files.write_bytes(tmp, data))
        elif fmt == "onnx":
            data = _onnx_bytes(graph, model, batch_size)
            _write(path, lambda tmp: files.write_bytes(tmp, data))
        else:
            source = python_source(model)
            _write(path, lambda tmp: files.write_text(tmp, source))
    return path


# -- TorchScript and ONNX ---------------------------------------------------------------


def example_input(model: VGG, batch_size: int | None = None) -> torch.Tensor:
    """A reproducible random batch of the spec's declared input shape, on the model's device."""
    reference = next(model.parameters())
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((batch_size or 2, *model.input_shape), generator=generator)
    return x.to(device=reference.device, dtype=reference.dtype)


class RawPixels(nn.Module):
    """``model`` behind its preprocessing: takes raw pixel values (0-255, float) and normalises them as
    ``model.preprocessing`` says, with :func:`~vggspec.data.preprocessing.normalised` (the formula training
    and evaluation use, and the exported Python source carries), so that an exported graph needs no
    vggspec to be fed right."""

    def __init__(self, model: VGG) -> None:
        super().__init__()
        record = model.preprocessing
        if record is None:
            raise ValueError("RawPixels needs a model that records its preprocessing")
        self.model = model
        reference = next(model.parameters())
        options = {"device": reference.device, "dtype": reference.dtype}
        self.register_buffer("mean", torch.tensor(record.pixel_mean, **options).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("factor", torch.tensor(record.pixel_factor, **options).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalised(x, self.mean, self.factor))


METADATA_FILE = "vggspec.json"
"""The extra file of a ``.pt2`` that says what its input is (``torch.export.load(f, extra_files=...)``)."""


def _program_bytes(graph: nn.Module, model: VGG, batch_size: int | None) -> bytes:
    """The network as a ``torch.export`` program (``.pt2``), made in memory: a dynamic batch unless
    ``batch_size`` fixes it, and for a dense network dynamic height and width from one stride above the
    input size on (where its score map is at least 2×2: torch.export specialises the 1×1 case), the
    input metadata (:func:`input_metadata`) as the extra file :data:`METADATA_FILE`."""
    import json

    shapes, example = _dynamic_shapes(model, batch_size)
    with _expected_warnings(), torch.no_grad():
        program = torch.export.export(graph, (example,), dynamic_shapes=(shapes,) if shapes else None)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(input_metadata(model), indent=2)})
    return buffer.getvalue()


def _dynamic_shapes(model: VGG, batch_size: int | None) -> tuple[dict[int, object], torch.Tensor]:
    """torch.export's dynamic dimensions of the input, and an example input within them: the batch unless
    ``batch_size`` fixes it; for a dense network height and width too, from one stride above the input
    size on (its score map at least 2×2: torch.export specialises sizes of 1)."""
    from ..spec.analysis import analyze

    shapes: dict[int, object] = {} if batch_size else {0: torch.export.Dim("batch", min=1, max=1 << 16)}
    example = example_input(model, batch_size)
    if model.dense:
        stride = analyze(model.spec, dense=True).layers[-1].effective_stride
        low = model.spec.input.size + stride
        shapes[2], shapes[3] = (torch.export.Dim(side, min=low, max=MAX_TEST_SCALE) for side in ("height", "width"))
        example = torch.nn.functional.interpolate(example, size=(low + stride, low))  # not square, not the minimum
    return shapes, example


def _torchscript_bytes(graph: nn.Module, model: VGG, batch_size: int | None) -> bytes:
    """The traced network as the bytes :func:`torch.jit.save` writes, made in memory."""
    buffer = io.BytesIO()
    with _expected_warnings(), torch.no_grad():
        traced = torch.jit.trace(graph, example_input(model, batch_size))
        torch.jit.save(traced, buffer)  # deprecated too: said once in the docs, not at every export
    return buffer.getvalue()


def _onnx_bytes(graph: nn.Module, model: VGG, batch_size: int | None) -> bytes:
    """The exported network as ONNX bytes through PyTorch's torch.export-based exporter (``dynamo=True``),
    made in memory and checked (a VGG is far below protobuf's 2 GB), its preprocessing in
    ``metadata_props`` (:func:`input_metadata`). Dynamic as :func:`_program_bytes` makes the program."""
    import onnx

    shapes, example = _dynamic_shapes(model, batch_size)
    with _expected_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=(shapes,) if shapes else None,
            verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, input_metadata(model))
    data = proto.SerializeToString()
    try:
        onnx.checker.check_model(data, full_check=True)
    except onnx.checker.ValidationError as err:
        raise SpecError(f"torch exported an ONNX model that onnx.checker rejects: {err}") from err
    return data


def input_metadata(model: VGG) -> dict[str, str]:
    """What an exported file's input is, as string key/values: the preprocessing record's fields, and
    ``input`` saying in words what to feed."""
    record = model.preprocessing
    if record is None:
        return {"input": "as the weights expect: their preprocessing is not recorded (normalise before)"}
    raw = f"raw {record.channel_order} pixel values 0-255 (float); the graph normalises them: {record.describe()}"
    return {"input": raw, **record.metadata()}


@contextlib.contextmanager
def _expected_warnings() -> Iterator[None]:
    """Silence the warnings every trace of a VGG gives, and only those.

    The input-size check of :meth:`VGG.forward` (and an empty-input test in
    ``F.local_response_norm``) compare shapes, which a trace records as constants; TorchScript is
    deprecated in torch 2.x (the legacy format vggspec still writes).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Converting a tensor to a Python boolean",
            category=torch.jit.TracerWarning,
            module=r"(vggspec|torch\.nn)\.",
        )
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


@contextlib.contextmanager
def _evaluation_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` for the block, then every submodule's own training flag back."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _require(package: str, what: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise SpecError(f"{what} needs the '{package}' package, which is not installed", hint=f"pip install {package}")


# -- files ----------------------------------------------------------------------------


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise SpecError(f"cannot write {path}: it is a directory", hint="give a file name, e.g. model.onnx")
    parent = path.parent
    if not parent.is_dir():
        if parent.exists():
            raise SpecError(f"cannot write {path}: {parent} is a file, where a folder is needed")
        raise SpecError(f"cannot write {path}: the folder {parent} does not exist")


def _write(path: Path, save: Callable[[Path], object]) -> None:
    """``save`` to a temporary file beside ``path``, renamed into place (:mod:`vggspec.files`); a
    file that cannot be written, a full disk included, is a :class:`SpecError` naming ``path``."""
    try:
        with files.replacing(path) as tmp:
            save(tmp)
    except (OSError, RuntimeError) as err:
        failure = files.os_error(err)
        if failure is None:
            raise
        raise SpecError(f"cannot write {path}: {failure.strerror or failure}") from None


# -- Python source --------------------------------------------------------------------


def class_name(name: str) -> str:
    """The generated class's name: ``D`` → ``VGG_D``, ``A narrow 32`` → ``VGG_A_narrow_32``."""
    ident = re.sub(r"\W+", "_", name, flags=re.ASCII).strip("_")
    if ident.lower().startswith("vgg"):
        ident = ident[3:].lstrip("_")
        return f"VGG{ident}" if ident[:1].isdigit() else f"VGG_{ident}".rstrip("_")
    return f"VGG_{ident}".rstrip("_")


def python_source(model: VGG) -> str:
    """Standalone PyTorch source defining ``model``'s network (architecture only, no weights).

    The class (:func:`class_name`) builds ``features`` and ``classifier`` as ``nn.Sequential``
    of ``OrderedDict`` blocks named as vggspec names them, every module constructed with the
    compiled one's exact hyperparameters; a module-level ``build()`` returns an instance.
    """
    from .. import __version__
    from ..spec.formatter import format_spec

    spec = model.spec
    name = spec.display_name
    cls = class_name(name)
    c, h, w = model.input_shape
    text = spec.text if spec.text is not None else format_spec(spec)
    origin = spec.source or "a spec given as text"
    classes = _classes(model.classifier)
    if model.dense:
        io_doc = (
            f"Input: (N, {c}, H, W) images, H and W at least {model.min_input_size}. Output: "
            f"(N, {classes}, h, w) class score maps before the soft-max (the network applied "
            f"densely: its fully-connected layers are convolutions)."
        )
    else:
        io_doc = f"Input: (N, {c}, {h}, {w}) images. Output: (N, {classes}) class scores before the soft-max."

    out = ['"""' + _doc(f"VGG network {name!r} as plain PyTorch.")]
    out.append("")
    dense = ", evaluated densely" if model.dense else ""
    out += _wrap(_doc(f"Generated by vggspec {__version__} from {origin}{dense}. Needs torch only."))
    out += [
        "Load weights trained with vggspec (the state dict keys are the same):",
        "",
        "    model = build()",
        "    model.load_state_dict(state_dict)",
        "",
    ]
    out += _wrap(_doc(io_doc))
    record = model.preprocessing
    if record is not None:
        out += _wrap(
            _doc(
                f"Preprocessing, done by forward(): raw {record.channel_order} pixel values 0-255 in, then "
                f"{record.describe()} (SCALE, MEAN, STD, CHANNEL_ORDER below; normalised() applies it)."
            )
        )
        if record.classes:
            names = ", ".join(record.classes[:10]) + (", ..." if len(record.classes) > 10 else "")
            out += _wrap(_doc(f"Classes ({len(record.classes)}, all in CLASSES below, in output order): {names}"))
    out.pop()
    out.append('"""')
    out.append(f"# The spec it was generated from{f' ({_comment(spec.source)})' if spec.source else ''}:")
    out.append("#")
    out += [f"#   {_comment(line)}".rstrip() for line in text.splitlines()]
    out += [
        "",
        "from collections import OrderedDict",
        "",
        "import torch",
        "from torch import nn",
        "",
        f"SPEC_NAME = {_quote(name)}",
        f"INPUT_SHAPE = {(c, h, w)!r}",
    ]
    if model.dense:
        out.append(f"MIN_INPUT_SIZE = {model.min_input_size}")
    if record is not None:
        out += [f"SCALE = {record.scale}"]
        out += _tuple("MEAN", [repr(float(m)) for m in record.mean])
        out += _tuple("STD", [repr(float(v)) for v in record.std])
        out += [f"CHANNEL_ORDER = {_quote(record.channel_order)}"]
        out += _tuple("CLASSES", [_quote(c) for c in record.classes])
        out += ["# The same on the 0-255 scale: (pixel - PIXEL_MEAN) * PIXEL_FACTOR."]
        out += _tuple("PIXEL_MEAN", [repr(float(m)) for m in record.pixel_mean])
        out += _tuple("PIXEL_FACTOR", [repr(float(f)) for f in record.pixel_factor])
        out += ["", "", *inspect.getsource(normalised).rstrip("\n").splitlines()]  # vggspec's own definition
    out += ["", "", f"class {cls}(nn.Module):"]
    out.append(f'    """{_doc(f"VGG {name!r}" + (" (dense)" if model.dense else ""))}: features, then classifier."""')
    out += ["", "    def __init__(self) -> None:", "        super().__init__()"]
    out += _assign("self.features", model.features, 8)
    out += _assign("self.classifier", model.classifier, 8)
    normalise = []
    if record is not None:  # buffers outside the state dict: vggspec's weights load as they are
        out += [
            "        mean = torch.tensor(PIXEL_MEAN).view(1, -1, 1, 1)",
            "        factor = torch.tensor(PIXEL_FACTOR).view(1, -1, 1, 1)",
            '        self.register_buffer("pixel_mean", mean, persistent=False)',
            '        self.register_buffer("pixel_factor", factor, persistent=False)',
        ]
        normalise = ["        x = normalised(x, self.pixel_mean, self.pixel_factor)"]
    out += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    if model.dense:
        out += [
            "        if (",
            "            x.dim() != 4",
            "            or x.shape[1] != INPUT_SHAPE[0]",
            "            or min(x.shape[2:]) < MIN_INPUT_SIZE",
            "        ):",
            "            raise ValueError(",
            f'                f"dense {{SPEC_NAME}} takes inputs of shape (N, {c}, H, W) "',
            '                f"with H, W >= {MIN_INPUT_SIZE}, got {tuple(x.shape)}"',
            "            )",
            *normalise,
            "        x = self.features(x)",
            "        return self.classifier(x)",
        ]
    else:
        out += [
            "        if x.dim() != 4 or tuple(x.shape[1:]) != INPUT_SHAPE:",
            "            raise ValueError(",
            f'                f"{{SPEC_NAME}} expects inputs of shape (N, {c}, {h}, {w}), "',
            '                f"got {tuple(x.shape)}"',
            "            )",
            *normalise,
            "        x = self.features(x)",
            "        x = torch.flatten(x, 1)",
            "        return self.classifier(x)",
        ]
    out += [
        "",
        "",
        f"def build() -> {cls}:",
        '    """A new network with PyTorch\'s default initialisation."""',
        f"    return {cls}()",
        "",
    ]
    source = "\n".join(out)
    compile(source, f"<vggspec export of {name}>", "exec")  # a generator bug fails here, not for the user
    return source


def _tuple(name: str, items: list[str]) -> list[str]:
    """``NAME = (a, b, c)`` on one line if it fits, else one item per line."""
    line = f"{name} = ({', '.join(items)}{',' if len(items) == 1 else ''})"
    if len(line) <= _LINE_LENGTH:
        return [line]
    return [f"{name} = (", *(f"    {item}," for item in items), ")"]


def _classes(classifier: nn.Sequential) -> int:
    """The class count: the outputs of the classifier's last weight layer."""
    last = [m for m in classifier.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def _assign(target: str, module: nn.Sequential, indent: int) -> list[str]:
    lines = _expression(module, indent)
    lines[0] = f"{' ' * indent}{target} = {lines[0].lstrip()}"
    return lines


def _expression(module: nn.Module, indent: int) -> list[str]:
    """Source lines constructing ``module``, the first starting at ``indent`` (no trailing comma)."""
    pad = " " * indent
    if type(module) is nn.Sequential:
        lines = [f"{pad}nn.Sequential(OrderedDict(["]
        for child_name, child in module.named_children():
            child_lines = _expression(child, indent + 4)
            child_lines[0] = f"{pad}    ({_quote(child_name)}, {child_lines[0].lstrip()}"
            child_lines[-1] += "),"
            lines += _fit(child_lines, indent + 4)
        lines.append(f"{pad}]))")
        return lines
    return [pad + _call(module)]


def _fit(lines: list[str], indent: int) -> list[str]:
    """A one-line entry that is too long, with its arguments one per line."""
    if len(lines) > 1 or len(lines[0]) <= _LINE_LENGTH:
        return lines
    line = lines[0]
    start = line.index("(", line.index("nn.")) + 1
    end = line.rindex(")", 0, line.rindex(")"))  # the call's ")" before the entry's "),"
    pad = " " * (indent + 4)
    args = [f"{pad}{arg}," for arg in _split_arguments(line[start:end])]
    return [line[:start], *args, f"{' ' * indent}{line[end:]}"]


def _split_arguments(text: str) -> list[str]:
    """``3, 64, kernel_size=(3, 5)`` → ``["3", "64", "kernel_size=(3, 5)"]``."""
    out, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    return out + [current.strip()] if current.strip() else out


def _call(module: nn.Module) -> str:
    """``nn.Conv2d(3, 64, kernel_size=3, padding=1)``: the call constructing ``module`` exactly."""
    kind = type(module)
    if kind is nn.Conv2d:
        args = [str(module.in_channels), str(module.out_channels), f"kernel_size={_pair(module.kernel_size)}"]
        args += _unless(module, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, padding_mode="zeros")
        if module.bias is None:
            args.append("bias=False")
        return f"nn.Conv2d({', '.join(args)})"
    if kind is nn.BatchNorm2d:
        args = [str(module.num_features), f"eps={module.eps!r}", f"momentum={module.momentum!r}"]
        args += _unless(module, affine=True, track_running_stats=True)
        return f"nn.BatchNorm2d({', '.join(args)})"
    if kind is nn.MaxPool2d:
        args = [f"kernel_size={_pair(module.kernel_size)}", f"stride={_pair(module.stride)}"]
        args += _unless(module, padding=0, dilation=1, ceil_mode=False)
        return f"nn.MaxPool2d({', '.join(args)})"
    if kind is nn.LocalResponseNorm:
        return (
            f"nn.LocalResponseNorm({module.size}, alpha={float(module.alpha)!r}, "
            f"beta={float(module.beta)!r}, k={float(module.k)!r})"
        )
    if kind is nn.Linear:
        bias = "" if module.bias is not None else ", bias=False"
        return f"nn.Linear({module.in_features}, {module.out_features}{bias})"
    if kind is nn.ReLU:
        return f"nn.ReLU(inplace={module.inplace})"
    if kind is nn.Dropout:
        return f"nn.Dropout(p={float(module.p)!r})"
    raise SpecError(f"cannot write Python source for a {kind.__module__}.{kind.__qualname__} module")


def _unless(module: nn.Module, **defaults: object) -> list[str]:
    """``name=value`` for the attributes of ``module`` that differ from ``defaults``."""
    out = []
    for attr, default in defaults.items():
        value = getattr(module, attr)
        if value != default and not (isinstance(value, tuple) and len(set(value)) == 1 and value[0] == default):
            out.append(f"{attr}={_pair(value) if isinstance(value, tuple) else repr(value)}")
    return out


def _pair(value: int | tuple[int, ...]) -> str:
    if isinstance(value, tuple) and len(set(value)) == 1:
        return str(value[0])
    return repr(value)


def _quote(text: str) -> str:
    """A Python string literal, double-quoted when that needs no escapes."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text and "\\" not in literal:
        return f'"{text}"'
    return literal


def _comment(text: str) -> str:
    """``text`` safe inside a ``#`` comment: control characters (NUL, form feed, ...) escaped."""
    return "".join(
        ch if ch == "\t" or unicodedata.category(ch) != "Cc" else ch.encode("unicode_escape").decode() for ch in text
    )


def _doc(text: str) -> str:
    """``text`` safe inside a triple-quoted docstring."""
    return _comment(text).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, _LINE_LENGTH, break_long_words=False, break_on_hyphens=False) + [""]
