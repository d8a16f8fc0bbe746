"""Checkpoints as .safetensors files: the weights, and what they mean in the file's metadata."""

import json
import sys

import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors")

import vggspec  # noqa: E402
from vggspec.cli import main  # noqa: E402
from vggspec.nn.checkpoint import read_checkpoint  # noqa: E402
from vggspec.run.config import EvaluateConfig  # noqa: E402
from vggspec.run.evaluate import evaluate, load_network  # noqa: E402

from .conftest import SPECS  # noqa: E402


def equal(a, b) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_compiled_spec_round_trips_and_any_reader_sees_what_it_is(tmp_path):
    spec = SPECS / "small" / "D-narrow-32-bn.vgg"
    assert main(["compile", str(spec), "--seed", "3", "-o", str(tmp_path / "d.safetensors")]) == 0
    assert main(["compile", str(spec), "--seed", "3", "-o", str(tmp_path / "d.pt")]) == 0
    ours, reference = vggspec.load_model(tmp_path / "d.safetensors"), vggspec.load_model(tmp_path / "d.pt")
    assert equal(ours.state_dict(), reference.state_dict()) and ours.spec == reference.spec
    with safetensors.safe_open(str(tmp_path / "d.safetensors"), framework="pt") as file:  # no vggspec needed
        metadata = file.metadata()
        assert sorted(file.keys()) == sorted(reference.state_dict())
    assert json.loads(metadata["spec"]).startswith("name: D narrow 32 bn")
    assert json.loads(metadata["spec_hash"]) == read_checkpoint(tmp_path / "d.pt")["spec_hash"]
    assert json.loads(metadata["format"]) == "vggspec.checkpoint"
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), reference(x))
    # --weights reads it too
    assert equal(vggspec.build(vggspec.load(spec), weights=tmp_path / "d.safetensors").state_dict(), ours.state_dict())


def test_a_trained_run_converts_with_its_preprocessing_scale_and_classes(trained, tmp_path):
    checkpoint, data = trained
    run = checkpoint.parent
    assert main(["compile", str(run), "-o", str(tmp_path / "shapes.safetensors")]) == 0
    assert main(["compile", str(run), "-o", str(tmp_path / "shapes.bin"), "--format", "safetensors"]) == 0
    for converted in (tmp_path / "shapes.safetensors", tmp_path / "shapes.bin"):  # found by content, too
        net, original = load_network(converted), load_network(checkpoint)
        assert (net.train_scale, net.classes, net.preprocessing) == (
            original.train_scale, original.classes, original.preprocessing
        )  # fmt: skip
        rows = [
            evaluate(EvaluateConfig(checkpoints=[str(path)], data=str(data), method="both", progress=False)).rows[0]
            for path in (converted, checkpoint)
        ]
        assert [(row.top1_err, row.top5_err, row.scales) for row in rows[:1]] == [
            (row.top1_err, row.top5_err, row.scales) for row in rows[1:]
        ]
    assert main(["compile", str(run), "--weights", str(checkpoint), "-o", str(tmp_path / "x.pt")]) == 2
    assert main(["compile", str(run)]) == 2  # a trained network needs -o: there is nothing to check


def test_a_safetensors_checkpoint_is_read_once(trained, tmp_path, monkeypatch):
    """safetensors has no lazy read here: evaluating or converting one reads it whole, once, not once for its
    facts and again for its weights."""
    from vggspec.nn import safetensors_file

    checkpoint, _ = trained
    converted = tmp_path / "once.safetensors"
    assert main(["compile", str(checkpoint.parent), "-o", str(converted)]) == 0
    reads = []
    real = safetensors_file.read
    monkeypatch.setattr(safetensors_file, "read", lambda path: reads.append(path) or real(path))
    load_network(converted)
    assert len(reads) == 1
    assert main(["compile", str(converted), "-o", str(tmp_path / "again.pt")]) == 0
    assert len(reads) == 2


def test_damaged_and_foreign_files(tmp_path, capsys):
    spec = SPECS / "small" / "A-narrow-32.vgg"
    path = tmp_path / "a.safetensors"
    assert main(["compile", str(spec), "--seed", "1", "-o", str(path)]) == 0
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a flipped bit in the last tensor
    (tmp_path / "flipped.safetensors").write_bytes(bytes(raw))
    with pytest.raises(vggspec.CheckpointError, match="weights do not match their checksum"):
        vggspec.load_model(tmp_path / "flipped.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(bytes(raw[: len(raw) // 2]))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "cut.safetensors"), str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not a readable .safetensors file" in err and "Traceback" not in err
    # another tool's file: the weights alone, no metadata of ours, load as a state dict
    from safetensors.torch import save_file

    state = vggspec.load_model(path).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "plain.safetensors"))
    model = vggspec.build(vggspec.load(spec), weights=tmp_path / "plain.safetensors")
    assert equal(model.state_dict(), state) and model.preprocessing is None
    with pytest.raises(vggspec.CheckpointError, match="is not a vggspec checkpoint"):
        vggspec.load_model(tmp_path / "plain.safetensors")


def test_without_the_safetensors_package_names_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    assert main(["compile", str(SPECS / "small" / "A-narrow-32.vgg"), "-o", str(tmp_path / "a.safetensors")]) == 2
    assert "needs the safetensors package: pip install safetensors" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
