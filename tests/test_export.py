"""Exported networks, loaded back without vggspec, compute what the compiled model computes."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import vggspec  # noqa: E402
from vggspec.nn.dense import to_dense  # noqa: E402
from vggspec.nn.export import FORMATS, class_name, export_model, python_source  # noqa: E402

from .conftest import ROOT, SPECS  # noqa: E402

PLAIN_LRN = """\
# plain convolutions with LRN, as in A-LRN
name: tiny LRN
input: 32x32 RGB
conv3-8
LRN
maxpool
conv3-16 ×2
maxpool
FC-32
FC-10
soft-max
"""

DENSE_SOURCE = """\
name: tiny dense
input: 32x32 RGB
conv3-8 [bn]
LRN [n=3, alpha=2e-4, beta=0.5, k=1]
maxpool
conv3-16
maxpool
conv3-16
maxpool [size=3, stride=2]
FC-24 [dropout=0.3]
FC-7
soft-max
"""

KINDS = ("plain-lrn", "bn", "dense")


def _randomise_batch_norm(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial scale, shift and running statistics, so an export that drops them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


@pytest.fixture(scope="module")
def models() -> dict[str, vggspec.VGG]:
    plain = vggspec.build(vggspec.parse(PLAIN_LRN), init="kaiming", seed=0)
    bn = vggspec.build(vggspec.load(SPECS / "small" / "D-narrow-32-bn.vgg"), init="kaiming", seed=1)
    _randomise_batch_norm(bn, 1)
    dense = vggspec.build(vggspec.parse(DENSE_SOURCE), init="kaiming", seed=2)
    _randomise_batch_norm(dense, 2)
    dense = to_dense(dense)
    assert dense.dense and not plain.dense
    return {"plain-lrn": plain.eval(), "bn": bn.eval(), "dense": dense.eval()}


def _inputs(model: vggspec.VGG, fmt: str) -> list[torch.Tensor]:
    """A batch of 2; another batch size (dynamic batch); for dense models another H×W too."""
    generator = torch.Generator().manual_seed(7)
    c, h, w = model.input_shape
    shapes = [(2, c, h, w)]
    if fmt != "python":
        shapes.append((5, c, h, w))
    if model.dense:
        shapes.append((3, c, h + 16, w + 8))
    return [torch.randn(shape, generator=generator) for shape in shapes]


def _expected(model: vggspec.VGG, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def load_generated(path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Import a generated file by path, with vggspec made unimportable while it runs."""
    loader = importlib.machinery.SourceFileLoader(f"vggspec_generated_{path.stem.replace('-', '_')}", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "vggspec", None)  # `import vggspec` now raises ImportError
        loader.exec_module(module)
    return module


# -- TorchScript ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_torchscript_round_trip(models, kind, tmp_path):
    model = models[kind]
    path = export_model(model, tmp_path / f"{kind}.pt", "torchscript")
    assert path == tmp_path / f"{kind}.pt" and path.is_file()
    loaded = torch.jit.load(str(path))
    assert not isinstance(loaded, vggspec.VGG)
    for x in _inputs(model, "torchscript"):
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), _expected(model, x))


def test_export_is_in_eval_mode_and_restores_training_flags(tmp_path):
    # D-narrow-32-bn with the paper's dropout on its FC layers (the bundled spec has none): a module to flip
    text = (SPECS / "small" / "D-narrow-32-bn.vgg").read_text().replace(" [dropout=0]", "")
    model = vggspec.build(vggspec.parse(text), init="kaiming", seed=1)
    _randomise_batch_norm(model, 1)
    model.train()
    model.features.conv1_1.bn.eval()  # a mixed state the export must give back as it was
    try:
        path = export_model(model, tmp_path / "bn.pt", "torchscript", batch_size=3)
        assert model.training and model.classifier.fc6.dropout.training
        assert not model.features.conv1_1.bn.training
    finally:
        model.eval()
    x = _inputs(model, "torchscript")[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(x), _expected(model, x))


# -- torch.export (.pt2) -------------------------------------------------------------------


def load_program(path: Path, monkeypatch: pytest.MonkeyPatch, extra_files: dict | None = None):
    """``torch.export.load`` of ``path`` with vggspec made unimportable: the program needs only torch."""
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "vggspec", None)
        return torch.export.load(str(path), extra_files=extra_files).module()


def _program_inputs(model: vggspec.VGG) -> list[torch.Tensor]:
    """Two batch sizes; a dense program's sides start one stride above its input (its score map ≥ 2×2)."""
    from vggspec.spec.analysis import analyze

    if not model.dense:
        return _inputs(model, "pt2")
    c, size = model.input_shape[0], model.spec.input.size + analyze(model.spec, dense=True).layers[-1].effective_stride
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(shape, generator=generator) for shape in ((2, c, size, size), (5, c, size + 16, size + 9))]


@pytest.mark.parametrize("kind", KINDS)
def test_pt2_round_trip(models, kind, tmp_path, monkeypatch):
    model = models[kind]
    path = export_model(model, tmp_path / f"{kind}.pt2", "pt2")
    assert [p.name for p in tmp_path.iterdir()] == [f"{kind}.pt2"]
    extra = {"vggspec.json": ""}
    program = load_program(path, monkeypatch, extra)
    assert "as the weights expect" in json.loads(extra["vggspec.json"])["input"]  # no record: inputs as given
    for x in _program_inputs(model):
        with torch.no_grad():
            torch.testing.assert_close(program(x), _expected(model, x), atol=1e-5, rtol=1e-5)
    fixed = load_program(export_model(model, tmp_path / "b3.pt2", "pt2", batch_size=3), monkeypatch)
    x = _program_inputs(model)[0][:1].expand(3, -1, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), _expected(model, x), atol=1e-5, rtol=1e-5)
        if not model.dense:
            with pytest.raises(Exception):  # noqa: B017 - torch's guard error type is its own affair
                fixed(x[:2])


# -- ONNX -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_round_trip(models, kind, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = models[kind]
    path = export_model(model, str(tmp_path / f"{kind}.onnx"), "onnx")
    assert [p.name for p in tmp_path.iterdir()] == [f"{kind}.onnx"]  # one file, no temporaries
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (images,), (scores,) = session.get_inputs(), session.get_outputs()
    assert (images.name, scores.name) == ("images", "scores")
    assert isinstance(images.shape[0], str)  # dynamic batch
    assert all(isinstance(d, str) for d in images.shape[2:]) == model.dense
    for x in _inputs(model, "onnx"):
        (out,) = session.run(None, {"images": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(out), _expected(model, x), atol=1e-4, rtol=1e-4)


def test_onnx_fixed_batch_size(models, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = models["plain-lrn"]
    path = export_model(model, tmp_path / "b4.onnx", "onnx", batch_size=4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [4, 3, 32, 32]
    x = torch.randn(4, 3, 32, 32)
    (out,) = session.run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), _expected(model, x), atol=1e-4, rtol=1e-4)


def test_onnx_without_the_onnx_package_names_what_to_install(models, tmp_path, monkeypatch):
    for package in ("onnx", "onnxscript"):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, package, None)  # importlib.util.find_spec(package) → None
            with pytest.raises(vggspec.SpecError, match=f"pip install {package}$"):
                export_model(models["plain-lrn"], tmp_path / "m.onnx", "onnx")
    assert not list(tmp_path.iterdir())


# -- Python source --------------------------------------------------------------------

ALLOWED_IMPORTS = {"torch", "collections", "typing", "math"}


def _imported_modules(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in a standalone file"
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_python_round_trip(models, kind, tmp_path, monkeypatch):
    model = models[kind]
    path = export_model(model, tmp_path / f"{kind}.py", "python")
    source = path.read_text(encoding="utf-8")
    assert _imported_modules(source) <= ALLOWED_IMPORTS
    assert "vggspec" not in _imported_modules(source)

    generated = load_generated(path, monkeypatch)
    cls = getattr(generated, class_name(model.spec.display_name))
    net = generated.build()
    assert type(net) is cls
    assert list(net.state_dict()) == list(model.state_dict())
    net.load_state_dict(model.state_dict())  # strict: every key, every shape
    # The module reprs print every hyperparameter: kernel, padding, eps, momentum, LRN's α...
    assert repr(net.features) == repr(model.features)
    assert repr(net.classifier) == repr(model.classifier)
    net.eval()
    for x in _inputs(model, "python"):
        with torch.no_grad():
            torch.testing.assert_close(net(x), _expected(model, x))


def test_python_checks_the_input_shape(models, tmp_path, monkeypatch):
    plain = load_generated(export_model(models["plain-lrn"], tmp_path / "plain.py", "python"), monkeypatch)
    with pytest.raises(ValueError, match=r"tiny LRN expects inputs of shape \(N, 3, 32, 32\), got \(1, 3, 64, 64\)"):
        plain.build()(torch.zeros(1, 3, 64, 64))
    dense = load_generated(export_model(models["dense"], tmp_path / "dense.py", "python"), monkeypatch)
    assert "flatten" not in Path(dense.__file__).read_text(encoding="utf-8")
    net = dense.build().eval()
    assert net(torch.zeros(1, 3, 64, 48)).shape == (1, 7, 5, 3)
    with pytest.raises(ValueError, match=r"H, W >= 28, got \(1, 3, 27, 64\)"):
        net(torch.zeros(1, 3, 27, 64))
    with pytest.raises(ValueError, match="got"):
        net(torch.zeros(1, 1, 64, 64))


def test_python_header_names_the_spec_and_version(models, tmp_path):
    model = models["bn"]
    source = export_model(model, tmp_path / "bn.py", "python").read_text(encoding="utf-8")
    header = source[: source.index("from collections import OrderedDict")]
    assert f"vggspec {vggspec.__version__}" in header
    assert str(model.spec.source) in header
    comments = [line[4:] for line in header.splitlines() if line.startswith("#   ")]
    spec_lines = [line.rstrip() for line in model.spec.text.splitlines() if line.strip()]
    assert [line for line in comments if line.strip()] == spec_lines
    assert ast.get_docstring(ast.parse(source)).startswith("VGG network 'D narrow 32 bn'")
    assert "class VGG_D_narrow_32_bn(nn.Module):" in source


def test_python_source_is_readable(models):
    for model in models.values():
        source = python_source(model)
        assert source.endswith("\n") and "\t" not in source
        for line in source.splitlines():
            assert line == line.rstrip()
            if not line.startswith("#"):  # the spec's own lines are quoted verbatim
                assert len(line) <= 79, line
        assert source.count("nn.Conv2d(") == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def test_python_source_of_an_unnamed_spec_with_awkward_text():
    spec = vggspec.parse('input: 32x32 gray\n# say """hi""" \\ there\nconv3-4\nmaxpool\nFC-3\n')
    source = python_source(vggspec.build(spec, device="meta"))
    namespace: dict[str, object] = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    assert namespace["build"]().features.conv1_1.conv.in_channels == 1
    assert "#   # say \"\"\"hi\"\"\" \\ there" in source


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("D", "VGG_D"),
        ("A-LRN", "VGG_A_LRN"),
        ("A narrow 32", "VGG_A_narrow_32"),
        ("VGG-11 gray, 10 classes", "VGG11_gray_10_classes"),
        ("vgg", "VGG"),
        ("network", "VGG_network"),
        ("été", "VGG_t"),
    ],
)
def test_class_name(name, expected):
    assert class_name(name) == expected
    assert expected.isidentifier()


# -- errors ---------------------------------------------------------------------------


def test_unknown_format_lists_the_formats(models, tmp_path):
    with pytest.raises(vggspec.SpecError) as info:
        export_model(models["plain-lrn"], tmp_path / "m.tflite", "tflite")
    assert "'tflite'" in str(info.value)
    assert all(fmt in str(info.value) for fmt in FORMATS)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_unwritable_paths(models, tmp_path, fmt):
    with pytest.raises(vggspec.SpecError, match="does not exist"):
        export_model(models["plain-lrn"], tmp_path / "missing" / "m.out", fmt)
    with pytest.raises(vggspec.SpecError, match="is a directory"):
        export_model(models["plain-lrn"], tmp_path, fmt)
    (tmp_path / "file").write_text("")
    with pytest.raises(vggspec.SpecError, match="file is a file, where a folder is needed"):
        export_model(models["plain-lrn"], tmp_path / "file" / "m.out", fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_bad_batch_size(models, tmp_path, batch_size):
    with pytest.raises(vggspec.SpecError, match="batch_size"):
        export_model(models["plain-lrn"], tmp_path / "m.pt", "torchscript", batch_size=batch_size)


# -- the preprocessing, inside the graph ----------------------------------------------------


TORCHVISION_LIKE = vggspec.Preprocessing(
    scale=1, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], classes=[f"class '{i}'" for i in range(10)]
)


@pytest.mark.parametrize("record", [TORCHVISION_LIKE, vggspec.Preprocessing.paper([123.68, 116.779, 103.939])])
def test_training_evaluation_and_every_export_normalise_with_one_definition(models, record, tmp_path, monkeypatch):
    """The datasets' normalise, RawPixels (TorchScript, torch.export, ONNX) and the generated Python source give
    the same inputs to the bit: the same constants (the record's pixel_mean and pixel_factor) through the same
    function, whose text the generated source carries."""
    import inspect

    from vggspec.data.datasets import normalise
    from vggspec.data.preprocessing import normalised
    from vggspec.nn.export import RawPixels

    model = models["plain-lrn"]
    model.preprocessing = record
    try:
        pixels = torch.randint(0, 256, (2, *model.input_shape), generator=torch.Generator().manual_seed(5))
        pixels = pixels.to(torch.uint8).contiguous(memory_format=torch.channels_last)
        trained = normalise(pixels, record, "cpu")
        raw = RawPixels(model)
        path = export_model(model, tmp_path / "m.py", "python")
        source = path.read_text(encoding="utf-8")
        assert inspect.getsource(normalised) in source
        generated = load_generated(path, monkeypatch)
        net = generated.build()
        assert list(generated.PIXEL_MEAN) == record.pixel_mean and list(generated.PIXEL_FACTOR) == record.pixel_factor
        assert torch.equal(net.pixel_mean, raw.mean) and torch.equal(net.pixel_factor, raw.factor)
        exported = generated.normalised(pixels.float(), net.pixel_mean, net.pixel_factor)
        assert torch.equal(normalised(pixels.float(), raw.mean, raw.factor), trained)
        assert torch.equal(exported, trained)
    finally:
        model.preprocessing = None


@pytest.mark.parametrize("record", [TORCHVISION_LIKE, vggspec.Preprocessing.paper([123.68, 116.779, 103.939])])
@pytest.mark.parametrize("kind", ["plain-lrn", "dense"])
def test_exports_take_raw_pixels_and_say_how_they_are_normalised(models, kind, record, tmp_path, monkeypatch):
    """TorchScript, torch.export, ONNX and Python source normalise raw 0-255 pixels as data.normalise does;
    ONNX's metadata_props, the .pt2's extra file and the source's docstring state the record; vggspec's
    state dict still loads."""
    from vggspec.data.datasets import normalise

    model = models[kind]
    model.preprocessing = record
    try:
        pixels = torch.randint(0, 256, (2, *model.input_shape), generator=torch.Generator().manual_seed(3))
        expected = _expected(model, normalise(pixels.to(torch.uint8), record, "cpu"))
        traced = torch.jit.load(str(export_model(model, tmp_path / "m.ts", "torchscript")))
        with torch.no_grad():
            torch.testing.assert_close(traced(pixels.float()), expected, atol=1e-4, rtol=1e-4)

        path = export_model(model, tmp_path / "m.py", "python")
        docstring = " ".join(ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))).split())
        assert "raw RGB pixel values 0-255" in docstring and record.describe().split(" with ")[0] in docstring
        generated = load_generated(path, monkeypatch)
        assert list(generated.CLASSES) == record.classes and list(generated.STD) == record.std
        net = generated.build().eval()
        net.load_state_dict(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(net(pixels.float()), expected, atol=1e-4, rtol=1e-4)

        extra = {"vggspec.json": ""}
        program = load_program(export_model(model, tmp_path / "m.pt2", "pt2"), monkeypatch, extra)
        metadata = json.loads(extra["vggspec.json"])
        assert json.loads(metadata["preprocessing_mean"]) == record.mean and "0-255" in metadata["input"]
        shape = (2, *_program_inputs(model)[1].shape[1:])
        big = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(4))
        expected_big = _expected(model, normalise(big.to(torch.uint8), record, "cpu"))
        with torch.no_grad():
            torch.testing.assert_close(program(big.float()), expected_big, atol=1e-4, rtol=1e-4)

        onnx = pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
        path = export_model(model, tmp_path / "m.onnx", "onnx")
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert props["preprocessing_scale"] == str(record.scale) and props["channel_order"] == "RGB"
        assert json.loads(props["preprocessing_mean"]) == record.mean
        assert json.loads(props["preprocessing_std"]) == record.std
        assert json.loads(props["classes"]) == record.classes and "0-255" in props["input"]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"images": pixels.float().numpy()})
        torch.testing.assert_close(torch.from_numpy(out), expected, atol=1e-4, rtol=1e-4)
    finally:
        model.preprocessing = None


def test_writing_torchscript_shows_no_warning_of_torchs(tmp_path):
    """`compile -o x.ts` printed torch's "FutureWarning: torch.jit.save is deprecated" (and died with a
    traceback under -W error): TorchScript's deprecation is said in vggspec's help, not at every export."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "vggspec", "compile", "small/A-narrow-32", "-o", str(tmp_path / "x.ts")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and (tmp_path / "x.ts").is_file()
