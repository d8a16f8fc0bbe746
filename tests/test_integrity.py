"""Damaged and edited checkpoints, and networks too large to allocate: each said in one line, never a
traceback, and never evaluated as if nothing were wrong."""

import shutil
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.cli import main  # noqa: E402
from vggspec.nn import compiler  # noqa: E402
from vggspec.nn.checkpoint import read_checkpoint, save_checkpoint, spec_hash  # noqa: E402
from vggspec.nn.integrity import checksum  # noqa: E402
from vggspec.run.config import TrainConfig  # noqa: E402
from vggspec.run.evaluate import load_network  # noqa: E402

from .conftest import ROOT, TINY_SPEC  # noqa: E402

# 9.9 T parameters (40 TB of weights): more than any machine has, refused from the analysis alone.
HUGE_SPEC = "input: 16x16 RGB\nconv3-1048576\nconv3-1048576\nmaxpool\nFC-3\nsoft-max\n"


def edited(source, target, **changes):
    """A copy of checkpoint ``source`` with entries changed (a value of ... deletes the entry)."""
    data = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    torch.save(data, target)
    return target


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- checksums ---------------------------------------------------------------------------


def test_every_checkpoint_carries_a_checksum_of_its_tensors(trained):
    data = read_checkpoint(trained[0])
    assert set(data["checksums"]) == {"state_dict", "optimizer", "rng"}  # the entries that hold tensors
    assert data["checksums"]["state_dict"] == checksum(data["state_dict"])
    assert data["checksums"]["optimizer"] == checksum(data["optimizer"])


def test_a_checksum_sees_every_byte_name_dtype_and_shape():
    weights = {"a.weight": torch.randn(3, 4), "a.bias": torch.zeros(3)}
    base = checksum(weights)
    flipped = {**weights, "a.weight": weights["a.weight"].clone()}
    flipped["a.weight"].view(-1).view(torch.uint8)[17] ^= 1
    assert checksum(flipped) != base
    assert checksum({**weights, "a.bias": torch.zeros(3, dtype=torch.float64)}) != base
    assert checksum({**weights, "a.weight": weights["a.weight"].reshape(4, 3)}) != base
    assert checksum({"b.weight": weights["a.weight"], "a.bias": weights["a.bias"]}) != base
    assert checksum({key: value.clone() for key, value in weights.items()}) == base


def test_pieces_of_a_large_tensor_are_hashed_in_order(monkeypatch):
    from vggspec.nn import integrity

    big = {"w": torch.arange(1000, dtype=torch.float32)}
    whole = checksum(big)
    monkeypatch.setattr(integrity, "PIECE", 64)  # 63 pieces, hashed by several threads
    assert checksum(big) != whole  # the pieces' digests are hashed, not the bytes
    assert checksum(big) == checksum({"w": big["w"].clone()})
    swapped = big["w"].clone()
    swapped[:16], swapped[16:32] = big["w"][16:32].clone(), big["w"][:16].clone()
    assert checksum({"w": swapped}) != checksum(big)


def test_flipped_bytes_in_the_weights_are_caught_wherever_the_weights_are_read(trained, tmp_path, capfd):
    """The bytes of a tensor changed in the file itself, as a failing disk would."""
    path = tmp_path / "flipped.pt"
    shutil.copyfile(trained[0], path)
    weight = read_checkpoint(path)["state_dict"]["classifier.fc3.fc.weight"]
    raw = path.read_bytes()
    at = raw.find(weight.numpy().tobytes())
    assert at > 0
    path.write_bytes(raw[: at + 40] + bytes([raw[at + 40] ^ 0x40]) + raw[at + 41 :])
    message = f"{path} is corrupt: its weights do not match their checksum"
    with pytest.raises(vggspec.CheckpointError, match=message):
        vggspec.load_model(path)
    with pytest.raises(vggspec.CheckpointError, match=message):
        vggspec.build(vggspec.parse(TINY_SPEC), weights=path)  # read_state_dict, as --weights does
    with pytest.raises(vggspec.CheckpointError, match=message):
        load_network(path)
    assert main(["predict", str(path), str(trained[1] / "val")]) == 2
    assert one_line(capfd) == f"error: {message}"


def test_checkpoints_from_before_checksums_load_and_say_nothing(trained, tmp_path, capfd):
    older = edited(trained[0], tmp_path / "older.pt", checksums=...)
    capfd.readouterr()
    model = vggspec.load_model(older)
    assert torch.equal(model.state_dict()["classifier.fc3.fc.weight"], vggspec.load_model(trained[0]).state_dict()[
        "classifier.fc3.fc.weight"
    ])
    assert load_network(older).classes == load_network(trained[0]).classes
    assert capfd.readouterr().err == ""


def test_a_damaged_optimizer_state_is_caught_on_resume(trained, tmp_path):
    from vggspec.run.train import train

    run = tmp_path / "run"
    shutil.copytree(trained[0].parent, run)
    data = torch.load(run / "last.pt", weights_only=True)
    next(iter(data["optimizer"]["state"].values()))["momentum_buffer"].view(-1)[0] += 1
    torch.save(data, run / "last.pt")
    with pytest.raises(vggspec.CheckpointError, match="is corrupt: its optimizer does not match its checksum"):
        train(TrainConfig(data=str(trained[1]), out=str(run), resume=True, epochs=5, progress=False))


# -- NaN weights -------------------------------------------------------------------------


def test_nan_weights_are_refused_not_every_image_unreadable(trained, tmp_path, capfd):
    data = torch.load(trained[0], weights_only=True)
    data["state_dict"]["features.conv2_1.conv.weight"][0, 0, 0, 0] = float("nan")
    data["checksums"]["state_dict"] = checksum(data["state_dict"])  # saved that way: the checksum agrees
    path = tmp_path / "nan.pt"
    torch.save(data, path)
    with pytest.raises(vggspec.CheckpointError, match=r"holds NaN or infinite weights \(layer conv2_1"):
        load_network(path)
    assert main(["evaluate", str(path), "--data", str(trained[1]), "--no-progress"]) == 2
    assert "holds NaN or infinite weights (layer conv2_1: features.conv2_1.conv.weight)" in one_line(capfd)


# -- every entry checked -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spec": 42}, "its 'spec' is not text but the value 42"),
        ({"spec": ...}, "its 'spec' is missing"),
        ({"spec_hash": None}, "its 'spec_hash' is not a SHA-256 in hex"),
        ({"state_dict": {"a": 1}}, "its 'state_dict' is not a mapping of names to tensors"),
        ({"state_dict": [torch.zeros(1)]}, "its 'state_dict' is not a mapping of names to tensors"),
        ({"checksums": "abc"}, "its 'checksums' is not a mapping of entries to SHA-256s in hex"),
        ({"config": "lr=1"}, "its 'config' is not a mapping of names to values but the text \"lr=1\""),
        ({"colour_stats": {"mean": [1, 2, 3]}},
         "its 'colour_stats' is not text (colour statistics as JSON) but a dict"),
        ({"colour_stats": "{not json"}, "its 'colour_stats' is not colour statistics (Invalid JSON"),
        ({"colour_stats": '{"mean": [1, 2]}'},
         "its 'colour_stats' is not colour statistics (eigenvalues: Field required)"),
        ({"classes": "abc"}, "its 'classes' is not a list of class names but the text \"abc\""),
        ({"classes": ["a", 2, "c"]}, "its 'classes' holds the value 2 where a class name should be"),
        ({"classes": ["a", "b"]}, "its 'classes' names 2 classes, its network has 3 outputs"),
        ({"train_scale": [18]}, "its 'train_scale' is not two sizes S_min ≤ S_max (positive integers) but a list"),
        ({"train_scale": [0, 24]}, "its 'train_scale' is not two sizes S_min ≤ S_max"),
        ({"train_scale": [24, 18]}, "its 'train_scale' is not two sizes S_min ≤ S_max"),
        ({"train_scale": ["18", "24"]}, "its 'train_scale' is not two sizes S_min ≤ S_max"),
        ({"rng": "seed"}, "its 'rng' is not a list of random number generator states (one per process)"),
        ({"epoch": -1}, "its 'epoch' is not a count (an integer ≥ 0) but the value -1"),
        ({"step": 1.5}, "its 'step' is not a count (an integer ≥ 0) but the value 1.5"),
        ({"dense": "no"}, "its 'dense' is not true or false but the text \"no\""),
        ({"history": {}}, "its 'history' is not a list of epoch records but a dict"),
        ({"best": {"epoch": 1}}, "its 'best' is not an epoch record with a 'val_top1_err' but a dict"),
    ],
)  # fmt: skip
def test_each_entry_of_a_checkpoint_is_checked_before_use(trained, tmp_path, changes, message):
    path = edited(trained[0], tmp_path / "edited.pt", **changes)
    with pytest.raises(vggspec.CheckpointError) as info:
        load_network(path)
    assert str(info.value).startswith(f"error: {path} is corrupt: {message}")
    assert "\n" not in str(info.value)


def test_colour_statistics_for_another_number_of_channels(trained, tmp_path):
    one = '{"mean": [1.0], "eigenvalues": [1.0], "eigenvectors": [[1.0]], "images": 1, "pixels": 1}'
    path = edited(trained[0], tmp_path / "grey.pt", colour_stats=one)
    with pytest.raises(vggspec.CheckpointError, match="'colour_stats' are for 1 channels, its network takes 3"):
        load_network(path)


def test_an_edited_field_through_the_command_line_is_one_line(trained, tmp_path, capfd):
    path = edited(trained[0], tmp_path / "edited.pt", classes=["a", "b", "c", "d"])
    assert main(["predict", str(path), str(trained[1] / "val")]) == 2
    assert one_line(capfd) == f"error: {path} is corrupt: its 'classes' names 4 classes, its network has 3 outputs"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": ...}, "holds no settings ('config'): it was not written by vggspec train"),
        ({"config": {"lr": "fast"}},
         "is corrupt: its 'config' holds invalid training settings: lr: Input should be a valid"),
        ({"rng": ...}, "is corrupt: its 'rng' is missing (a run cannot resume without it)"),
        ({"classes": ["a"]}, "is corrupt: its 'classes' names 1 classes, its network has 3 outputs"),
        ({"epoch": "3"}, "is corrupt: its 'epoch' is not a count (an integer ≥ 0) but the text \"3\""),
        ({"optimizer": {"state": {}, "param_groups": []}, "checksums": ...},
         "is corrupt: its training state cannot be restored (ValueError: loaded state dict has a different number"),
    ],
)  # fmt: skip
def test_a_resumed_run_checks_its_checkpoint(trained, tmp_path, changes, message):
    from vggspec.run.train import train

    run = tmp_path / "run"
    shutil.copytree(trained[0].parent, run)
    data = torch.load(run / "last.pt", weights_only=True)
    if isinstance(changes.get("config"), dict):
        changes["config"] = {**data["config"], **changes["config"]}
    edited(run / "last.pt", run / "last.pt", **changes)
    with pytest.raises(vggspec.CheckpointError) as info:
        train(TrainConfig(data=str(trained[1]), out=str(run), resume=True, epochs=5, progress=False))
    assert str(info.value).startswith(f"error: {run / 'last.pt'} {message}")
    assert "\n" not in str(info.value)


# -- sizes before allocation -----------------------------------------------------------------


def test_compiling_a_network_no_machine_can_hold_is_one_line_and_quick(tmp_path):
    spec = tmp_path / "huge.vgg"
    spec.write_text(HUGE_SPEC)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "vggspec", "compile", str(spec)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert time.perf_counter() - start < 60
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(error) == 1 and result.stderr.strip().endswith(error[0])
    assert "huge has 9,895,836,385,283 parameters: its weights need 39,583.3 GB on cpu, more than the" in error[0]


def test_weights_larger_than_the_memory_available_are_refused_before_allocating(monkeypatch):
    spec = vggspec.parse(TINY_SPEC)
    params = vggspec.analyze(spec).params
    monkeypatch.setattr(compiler, "available_memory", lambda device: 4 * params - 1)
    with pytest.raises(vggspec.SpecError) as info:
        vggspec.build(spec)
    assert str(info.value) == (
        f"error: network has {params:,} parameters: its weights need 39.1 KB on cpu, more than the 39.1 KB cpu has "
        "available"
    )
    assert vggspec.build(spec, device="meta").features.conv1_1.conv.weight.is_meta  # nothing to allocate
    monkeypatch.setattr(compiler, "available_memory", lambda device: 4 * params)
    vggspec.build(spec)


def test_an_allocation_that_fails_anyway_is_one_line(monkeypatch):
    def refuse(self, device, recurse=True):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 43486543872 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(torch.nn.Module, "to_empty", refuse)
    one_line = r"^error: network has 9,763 parameters: its weights need 39.1 KB on cpu: cpu could not allocate them$"
    with pytest.raises(vggspec.SpecError, match=one_line):
        vggspec.build(vggspec.parse(TINY_SPEC))


def test_a_checkpoint_whose_spec_declares_a_huge_network_is_refused_before_its_tensors_are_touched(tmp_path):
    model = vggspec.build(vggspec.parse(TINY_SPEC), seed=0)
    path = save_checkpoint(model, tmp_path / "small.pt")
    huge = vggspec.parse(HUGE_SPEC)
    edited(path, path, spec=vggspec.format_spec(huge), spec_hash=spec_hash(huge))
    start = time.perf_counter()
    with pytest.raises(vggspec.CheckpointError) as info:
        vggspec.load_model(path)
    assert time.perf_counter() - start < 10
    assert str(info.value).startswith(
        f"error: {path} is corrupt: its weights (9,813 values) are not the network its spec declares "
        "(9,895,836,385,283): features.conv1_1.conv.weight holds (8, 3, 3, 3) where the spec needs (1048576, 3, 3, 3)"
    )


def test_a_checkpoint_too_large_for_this_machine_is_refused_before_it_is_read(tmp_path, monkeypatch):
    model = vggspec.build(vggspec.parse(TINY_SPEC), seed=0)
    path = save_checkpoint(model, tmp_path / "model.pt")
    monkeypatch.setattr(compiler, "available_memory", lambda device: 999)
    hashed = []
    monkeypatch.setattr("vggspec.nn.integrity.checksum", lambda value: hashed.append(value))
    with pytest.raises(vggspec.SpecError, match="need 39.1 KB on cpu, more than the 999 bytes cpu has available"):
        vggspec.load_model(path)
    assert not hashed
