"""Damaged and edited checkpoints, and networks too large to allocate: each said in one line, never a
traceback, and never evaluated as if nothing were wrong."""

import json
import re
import shutil
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.cli import main  # noqa: E402
from vggspec.nn import devices, safetensors_file, weights_file  # noqa: E402
from vggspec.nn.checkpoint import read_checkpoint, save_checkpoint, spec_hash  # noqa: E402
from vggspec.nn.integrity import checksum, holds_tensors  # noqa: E402
from vggspec.run.config import TrainConfig  # noqa: E402
from vggspec.run.evaluate import load_network  # noqa: E402

from .conftest import ROOT, TINY_SPEC  # noqa: E402

# 9.9 T parameters (40 TB of weights): more than any machine has, refused from the analysis alone.
HUGE_SPEC = "input: 16x16 RGB\nconv3-1048576\nconv3-1048576\nmaxpool\nFC-3\nsoft-max\n"


def edited(source, target, *, rehash=True, **changes):
    """A copy of checkpoint ``source`` (a .pt or .safetensors file) with entries changed (a value of ...
    deletes the entry). ``rehash``: its checksums made again, as a writer that wrote those values would;
    else the edit is one made to the file afterwards."""
    data = raw(source)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    if rehash and "checksums" not in changes:
        data["checksums"] = weights_file.checksums(data)
    if str(target).endswith(".safetensors"):
        safetensors_file.write(data, target)
    else:
        torch.save(data, target)
    return target


def raw(path):
    """A checkpoint's entries as they are in the file, nothing checked."""
    if str(path).endswith(".safetensors"):
        return safetensors_file.read(path)
    return torch.load(path, weights_only=True)


def version_1(source, target, *, checksums=True, **changes):
    """``source`` as vggspec 0.1 wrote it: version 1, with checksums of the entries that hold tensors only
    (or, before that, none)."""
    data = {**raw(source), **changes, "version": 1}
    data["checksums"] = {key: checksum(value) for key, value in data.items() if holds_tensors(value)}
    if not checksums:
        del data["checksums"]
    torch.save(data, target)
    return target


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- checksums ---------------------------------------------------------------------------


def test_every_entry_of_a_checkpoint_has_its_checksum(trained):
    data = read_checkpoint(trained[0])
    assert set(data["checksums"]) == set(data) - {"checksums"}
    assert data["checksums"]["state_dict"] == checksum(data["state_dict"])
    assert data["checksums"]["optimizer"] == checksum(data["optimizer"])
    assert data["checksums"]["classes"] == checksum(data["classes"]) != checksum(data["classes"][::-1])


def test_a_checksum_of_plain_values_is_the_same_for_what_a_safetensors_file_gives_back():
    """Its metadata is JSON: a tuple written comes back a list, and must check the same."""
    assert checksum((18, 24)) == checksum([18, 24]) != checksum([24, 18])
    assert checksum({"mean": [1.5, 2.0]}) != checksum({"mean": [1.5, 2.5]})
    assert checksum("cat") != checksum(["cat"])


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


def test_checkpoints_of_the_previous_version_load_by_its_rule(trained, tmp_path, capfd):
    """Version 1 had checksums of the tensors only (and before that none): its runs keep evaluating, and
    its weights are still verified where it has their checksum."""
    older = version_1(trained[0], tmp_path / "older.pt", checksums=False)
    tensors_only = version_1(trained[0], tmp_path / "tensors-only.pt")
    capfd.readouterr()
    expected = vggspec.load_model(trained[0]).state_dict()["classifier.fc3.fc.weight"]
    for path in (older, tensors_only):
        assert torch.equal(vggspec.load_model(path).state_dict()["classifier.fc3.fc.weight"], expected)
        assert load_network(path).classes == load_network(trained[0]).classes
    assert capfd.readouterr().err == ""
    data = torch.load(tensors_only, weights_only=True)
    data["state_dict"]["classifier.fc3.fc.weight"] *= 1000
    torch.save(data, tmp_path / "scaled.pt")
    with pytest.raises(vggspec.CheckpointError, match="its weights do not match their checksum"):
        vggspec.load_model(tmp_path / "scaled.pt")


def test_a_version_this_vggspec_does_not_know_is_said(trained, tmp_path):
    path = edited(trained[0], tmp_path / "future.pt", version=3)
    with pytest.raises(vggspec.CheckpointError, match="is a version 3 checkpoint; this vggspec reads versions 1 and 2"):
        vggspec.load_model(path)


def test_a_damaged_optimizer_state_is_caught_on_resume(trained, tmp_path):
    from vggspec.run.train import train

    run = tmp_path / "run"
    shutil.copytree(trained[0].parent, run)
    data = torch.load(run / "last.pt", weights_only=True)
    next(iter(data["optimizer"]["state"].values()))["momentum_buffer"].view(-1)[0] += 1
    torch.save(data, run / "last.pt")
    with pytest.raises(vggspec.CheckpointError, match="is corrupt: its optimizer does not match its checksum"):
        train(TrainConfig(data=str(trained[1]), out=str(run), resume=True, epochs=5, progress=False))


# -- what a prediction depends on ------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(trained, tmp_path_factory):
    """The trained network as a .pt and as a .safetensors checkpoint, each with its classes, preprocessing and
    training scale."""
    folder = tmp_path_factory.mktemp("formats")
    shutil.copyfile(trained[0], folder / "shapes.pt")
    assert main(["compile", str(trained[0].parent), "-o", str(folder / "shapes.safetensors")]) == 0
    return {suffix: folder / f"shapes{suffix}" for suffix in (".pt", ".safetensors")}


def swapped_classes(data):
    classes = list(data["classes"])
    classes[0], classes[1] = classes[1], classes[0]
    return {"classes": classes}


def preprocessing_with(**changes):
    """An edit of the preprocessing record: its ``mean`` or ``std`` with a first channel of another value."""

    def edit(data):
        record = json.loads(data["preprocessing"])
        for key, first in changes.items():
            record[key][0] = first(record[key][0])
        return {"preprocessing": json.dumps(record)}

    return edit


def refused_everywhere(path, message, trained, capfd):
    """load_model, evaluation's loader and predict on the command line all refuse ``path``, in one line."""
    for load in (vggspec.load_model, load_network):
        with pytest.raises(vggspec.CheckpointError, match=re.escape(message)):
            load(path)
    capfd.readouterr()
    assert main(["predict", str(path), str(trained[1] / "val")]) == 2
    assert one_line(capfd).startswith(f"error: {message}")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize(
    ("edit", "entry"),
    [
        (swapped_classes, "classes"),
        (preprocessing_with(mean=lambda m: m + 10), "preprocessing"),
        (lambda data: {"train_scale": [18, 18]}, "train_scale"),
        (lambda data: {"dense": True}, "dense"),
    ],
)
def test_an_edit_of_what_a_prediction_depends_on_is_refused(checkpoints, trained, tmp_path, capfd, suffix, edit, entry):
    """Two class names swapped would label every prediction wrongly, exit 0; an edited mean shifts every input."""
    source = checkpoints[suffix]
    path = edited(source, tmp_path / f"edited{suffix}", rehash=False, **edit(raw(source)))
    refused_everywhere(path, f"{path} is corrupt: its '{entry}' does not match its checksum", trained, capfd)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("rehash", [False, True], ids=["edited", "written-so"])
@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (preprocessing_with(std=lambda s: 0.0),
         "is not a preprocessing record (preprocessing needs one mean and one positive std per channel)"),
        (preprocessing_with(mean=lambda m: float("nan")), "holds a mean or std that is not a finite number"),
        (preprocessing_with(std=lambda s: float("inf")), "holds a mean or std that is not a finite number"),
    ],
)  # fmt: skip
def test_bad_preprocessing_is_one_line_not_a_traceback(
    checkpoints, trained, tmp_path, capfd, suffix, rehash, edit, problem
):
    """Whether the file was edited afterwards or written so (its checksums agree), a std of 0 or a NaN mean is
    said as what it is."""
    source = checkpoints[suffix]
    path = edited(source, tmp_path / f"bad{suffix}", rehash=rehash, **edit(raw(source)))
    message = f"{path} is corrupt: its 'preprocessing' {problem}"
    for load in (vggspec.load_model, load_network):
        with pytest.raises(vggspec.CheckpointError) as info:
            load(path)
        assert str(info.value).startswith(f"error: {message}") and "\n" not in str(info.value)
    assert main(["predict", str(path), str(trained[1] / "val")]) == 2
    assert one_line(capfd).startswith(f"error: {message}")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_checkpoint_without_its_checksums_is_refused_and_its_weights_load_only_as_another_tools(
    checkpoints, trained, tmp_path, capfd, suffix
):
    """Deleting the checksums would let weights ×1000 load silently. Said to be ours, the file is refused,
    whatever reads it; the same weights given alone, as another tool's state dict, load as weights."""
    source = checkpoints[suffix]
    scaled = {key: value * 1000 for key, value in raw(source)["state_dict"].items()}
    path = edited(source, tmp_path / f"stripped{suffix}", checksums=..., state_dict=scaled)
    message = f"{path} says it is a vggspec checkpoint but has no 'checksums'"
    refused_everywhere(path, message, trained, capfd)
    spec = vggspec.load_model(source).spec
    with pytest.raises(vggspec.CheckpointError, match=re.escape(message)):
        vggspec.build(spec, weights=path)  # --weights: the file says it is a checkpoint of ours

    plain = tmp_path / f"plain{suffix}"
    if suffix == ".pt":
        torch.save(scaled, plain)
    else:
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in scaled.items()}, str(plain))
    model = vggspec.build(spec, weights=plain)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in scaled.items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": ...}, "its 'classes' is missing (its checksum is recorded)"),
        ({"checksums": "strip classes"}, "its 'classes' has no checksum"),
        ({"note": "added"}, "its 'note' has no checksum"),
    ],
)
def test_an_entry_added_deleted_or_stripped_of_its_checksum_is_refused(trained, tmp_path, changes, message):
    data = raw(trained[0])
    if changes.get("checksums") == "strip classes":
        changes = {"checksums": {key: value for key, value in data["checksums"].items() if key != "classes"}}
    path = edited(trained[0], tmp_path / "changed.pt", rehash=False, **changes)
    with pytest.raises(vggspec.CheckpointError, match=re.escape(f"{path} is corrupt: {message}")):
        load_network(path)


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
        ({"optimizer": {"state": {}, "param_groups": []}},
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
    assert "huge has 9,895,836,385,283 parameters: its weights need 36 TiB on cpu, more than the" in error[0]


def test_weights_larger_than_the_memory_available_are_refused_before_allocating(monkeypatch):
    spec = vggspec.parse(TINY_SPEC)
    params = vggspec.analyze(spec).params
    monkeypatch.setattr(devices, "free_memory", lambda device: 4 * params - 1)
    with pytest.raises(vggspec.SpecError) as info:
        vggspec.build(spec)
    assert str(info.value) == (
        f"error: network has {params:,} parameters: its weights need 38.1 KiB on cpu, more than the 38.1 KiB cpu "
        "has available"
    )
    assert vggspec.build(spec, device="meta").features.conv1_1.conv.weight.is_meta  # nothing to allocate
    monkeypatch.setattr(devices, "free_memory", lambda device: 4 * params)
    vggspec.build(spec)


def test_an_allocation_that_fails_anyway_is_one_line(monkeypatch):
    def refuse(self, device, recurse=True):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 43486543872 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(torch.nn.Module, "to_empty", refuse)
    one_line = r"^error: network has 9,763 parameters: its weights need 38.1 KiB on cpu: cpu could not allocate them$"
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
    monkeypatch.setattr(devices, "free_memory", lambda device: 999)
    hashed = []  # the tensors hashed: the small entries' checksums are verified when the file is read

    def recording(value):
        if holds_tensors(value):
            hashed.append(value)
        return checksum(value)

    monkeypatch.setattr("vggspec.nn.integrity.checksum", recording)
    with pytest.raises(vggspec.SpecError, match="need 38.1 KiB on cpu, more than the 999 B cpu has available"):
        vggspec.load_model(path)
    assert not hashed
    monkeypatch.setattr(devices, "free_memory", lambda device: 10**9)
    vggspec.load_model(path)
    assert len(hashed) == 1  # the weights, once


WIDE_INPUT_SPEC = "input: 512x512 RGB\nconv3-4\n" + "maxpool\n" * 9 + "FC-3\nsoft-max\n"  # 127 parameters


def test_a_forward_pass_that_cannot_fit_is_refused_before_its_images_are_made(monkeypatch):
    """compile's verification pass: the weights fit, the pass does not (the images 3 MiB, pool1's input
    and output 5 MiB, 8 MiB in all beside the weights already there)."""
    from vggspec.nn.verify import verify

    model = vggspec.build(vggspec.parse(WIDE_INPUT_SPEC), seed=0)
    made = []
    monkeypatch.setattr(torch, "randn", lambda *args, **kwargs: made.append(args))
    monkeypatch.setattr(devices, "free_memory", lambda device: 8 * 2**20 - 1)
    with pytest.raises(vggspec.SpecError) as info:
        verify(model)
    assert str(info.value).splitlines()[0] == (
        "error: network: a forward pass of 1 image of 3×512×512 needs at least 8 MiB on cpu (the images 3 MiB, "
        "pool1's input and output 5 MiB), more than the 8 MiB cpu has available"
    )
    assert not made
    with pytest.raises(vggspec.SpecError, match="a forward pass of 4 images of 3×512×512 needs at least 32 MiB"):
        verify(model, batch=4)
    monkeypatch.undo()
    monkeypatch.setattr(devices, "free_memory", lambda device: 8 * 2**20)
    assert verify(model).ok


def test_the_least_a_forward_pass_takes_is_the_images_and_the_largest_layer(paper_specs):
    """For D at 224: the images, then conv1_2's input and output (two maps of 64×224×224), the weights."""
    from vggspec.plan.budget import inference_budget

    budget = inference_budget(paper_specs["D"], batch=2)
    assert budget.images_bytes == 2 * 3 * 224 * 224 * 4
    assert budget.largest_at == "conv1_2" and budget.activations_bytes == 2 * 2 * 64 * 224 * 224 * 4
    assert budget.weights_bytes == 4 * vggspec.analyze(paper_specs["D"]).params
    assert budget.peak_bytes == budget.weights_bytes + budget.pass_bytes
    assert inference_budget(paper_specs["D"], batch=2, input_size=448).images_bytes == 4 * budget.images_bytes


def test_compiling_a_spec_whose_verification_pass_no_machine_can_hold_is_one_line(tmp_path, capfd):
    """Its weights are 31 k numbers, its one image 48 GiB and conv1_1's output 16 TiB: refused from the
    analysis, nothing allocated (before, torch tried and said "can't allocate memory", or the OOM killer came)."""
    spec = tmp_path / "wide.vgg"
    spec.write_text("input: 65536x65536 RGB\nconv3-1024\n" + "maxpool\n" * 16 + "FC-3\nsoft-max\n")
    capfd.readouterr()
    assert main(["compile", str(spec)]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    error = [line for line in err.splitlines() if line.startswith("error")]
    assert len(error) == 1 and error[0].startswith(
        "error: wide: a forward pass of 1 image of 3×65536×65536 needs at least 20 TiB on cpu (the images 48 GiB, "
        "pool1's input and output 20 TiB), more than the"
    ), err
