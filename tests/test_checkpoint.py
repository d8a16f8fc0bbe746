"""Checkpoints: round trips, refusing what is not one, never unpickling arbitrary objects."""

import os
import pickle

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.nn.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402

from .conftest import SPECS  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return vggspec.build(vggspec.load(SPECS / "small" / "D-narrow-32-bn.vgg"), init="kaiming", seed=0).eval()


def test_round_trip(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "run" / "model.pt", epoch=3)
    loaded = vggspec.load_model(path).eval()
    assert loaded.spec == model.spec
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert read_checkpoint(path)["epoch"] == 3
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed, not left behind


def test_mapped_reads_are_plain_reads_and_models_own_their_weights(model, tmp_path):
    """load_model maps the file (the optimizer's state is never read) and copies the weights out."""
    path = save_checkpoint(model, tmp_path / "model.pt", momentum=[torch.randn(64, 64)])
    mapped, plain = read_checkpoint(path, mmap=True), read_checkpoint(path)
    assert mapped.keys() == plain.keys() and torch.equal(mapped["momentum"][0], plain["momentum"][0])
    loaded = vggspec.load_model(path)
    with open(path, "r+b") as file:  # scribble over the file: mapped weights would change with it
        file.write(bytes(path.stat().st_size))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_dense_models_round_trip(model, tmp_path):
    dense = vggspec.to_dense(model)
    loaded = vggspec.load_model(save_checkpoint(dense, tmp_path / "dense.pt")).eval()
    assert loaded.dense
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), dense(x))


def test_a_state_dict_is_not_a_checkpoint(model, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(vggspec.CheckpointError, match="not a vggspec checkpoint") as info:
        vggspec.load_model(path)
    assert "weights=" in info.value.hint


def test_arbitrary_pickles_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = {"format": "vggspec.checkpoint", "payload": Evil()}
    path = tmp_path / "evil.pt"
    torch.save(evil, path)  # the zip archive torch.save writes: refused by weights_only
    with pytest.raises(vggspec.CheckpointError, match="weights_only"):
        vggspec.load_model(path)
    path.write_bytes(pickle.dumps(evil, protocol=2))  # a bare pickle: not even opened
    with pytest.raises(vggspec.CheckpointError, match="not a file torch.save wrote"):
        vggspec.load_model(path)
    assert not marker.exists()


def test_an_altered_spec_is_caught(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    data = torch.load(path, weights_only=True)
    data["spec"] = data["spec"].replace("FC-10", "FC-11")
    torch.save(data, path)
    with pytest.raises(vggspec.CheckpointError, match="its 'spec' does not match its checksum"):
        vggspec.load_model(path)
    data = {**data, "version": 1, "checksums": {"state_dict": data["checksums"]["state_dict"]}}  # as 0.1 wrote
    torch.save(data, path)
    with pytest.raises(vggspec.CheckpointError, match="does not match its hash"):
        vggspec.load_model(path)


def test_insisting_on_a_spec(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    reformatted = vggspec.parse(
        "# same network, other layout\n" + vggspec.format_spec(model.spec).replace(" ×2", " x2")
    )
    assert vggspec.load_model(path, spec=reformatted).spec == model.spec
    other = vggspec.load(SPECS / "small" / "A-narrow-32.vgg")
    with pytest.raises(vggspec.CheckpointError, match="not for 'A narrow 32'"):
        vggspec.load_model(path, spec=other)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(vggspec.CheckpointError, match="no such checkpoint"):
        vggspec.load_model(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    for mmap in (False, True):  # not torch's "mmap can only be used with files saved with ..."
        with pytest.raises(vggspec.CheckpointError, match=r"not a vggspec checkpoint \(not a file torch.save wrote\)"):
            read_checkpoint(tmp_path / "junk.pt", mmap=mmap)


def test_a_run_folder_means_its_best_checkpoint_else_its_last(model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(vggspec.CheckpointError, match="folder without a checkpoint") as info:
        vggspec.load_model(run)
    assert "--out folder" in str(info.value)
    save_checkpoint(model, run / "last.pt", epoch=1)
    assert read_checkpoint(run)["epoch"] == 1  # no best yet: the last
    save_checkpoint(model, run / "best.pt", epoch=2)
    save_checkpoint(model, run / "last.pt", epoch=3)
    assert read_checkpoint(run)["epoch"] == 2
    loaded = vggspec.load_model(run)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    # --weights takes one too: a new run (new lr, ...) starting from another's best weights.
    save_checkpoint(vggspec.build(model.spec, init="glorot", seed=7), run / "last.pt", epoch=3)
    started = vggspec.build(model.spec, init="kaiming", seed=1, weights=run)
    assert all(torch.equal(a, b) for a, b in zip(started.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("links", [True, False])
def test_best_is_a_second_name_for_last_and_stays_when_last_is_saved_again(model, tmp_path, monkeypatch, links):
    """The trainer names last.pt best.pt too (no second gigabyte write); saves replace files,
    so the next save of last.pt leaves best.pt alone. Without hard links, a copy."""
    from vggspec.nn.checkpoint import atomic_link

    if not links:
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_checkpoint(model, last, epoch=1)
    atomic_link(last, best)
    assert read_checkpoint(best)["epoch"] == 1
    assert (os.stat(best).st_ino == os.stat(last).st_ino) == links
    save_checkpoint(model, last, epoch=2)
    assert read_checkpoint(best)["epoch"] == 1 and read_checkpoint(last)["epoch"] == 2
    atomic_link(last, best)
    assert read_checkpoint(best)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


def test_a_saved_checkpoint_is_flushed_to_disk_with_its_new_name(model, tmp_path, monkeypatch):
    """fsync of the file, then of its folder after the rename: a power cut keeps the new file."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_checkpoint(model, tmp_path / "last.pt")
    folder = os.path.realpath(tmp_path)
    assert len(synced) == 2 and synced[0].startswith(os.path.join(folder, ".last.pt."))
    assert synced[1] == folder


# -- what a file is, by its content ------------------------------------------------------------


def test_weights_files_are_recognised_by_their_content_cut_ones_too(model, tmp_path):
    """What `vggspec diff` and the other commands ask before taking an argument for a spec's text: a
    truncated checkpoint is a checkpoint (said to be cut), a .safetensors one under any name is one."""
    from vggspec.nn.weights_file import PICKLE, RUN_FOLDER, SAFETENSORS, ZIP, file_kind, is_weights_file

    pt = save_checkpoint(model, tmp_path / "model.pt")
    st = save_checkpoint(model, tmp_path / "model.bin", safetensors=True)
    (tmp_path / "cut.pt").write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    (tmp_path / "cut.bin").write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    torch.save(model.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    (tmp_path / "spec.pt").write_text(vggspec.format_spec(model.spec))  # a spec, whatever its name
    (tmp_path / "network.vgg").write_text("network {\n")  # 8 bytes and a brace: not a safetensors header
    (tmp_path / "run").mkdir()
    kinds = {name: file_kind(tmp_path / name) for name in sorted(p.name for p in tmp_path.iterdir())}
    assert kinds == {
        "cut.bin": SAFETENSORS,
        "cut.pt": ZIP,
        "model.bin": SAFETENSORS,
        "model.pt": ZIP,
        "network.vgg": None,
        "old.pth": PICKLE,
        "run": RUN_FOLDER,
        "spec.pt": None,
    }
    assert is_weights_file(pt) and not is_weights_file(tmp_path / "spec.pt")
    assert not is_weights_file(tmp_path / "missing.pt")


def test_truncated_checkpoints_are_said_to_be_cut(model, tmp_path):
    pt = save_checkpoint(model, tmp_path / "model.pt")
    st = save_checkpoint(model, tmp_path / "model.safetensors")
    cut_pt, cut_st = tmp_path / "cut.pt", tmp_path / "cut.safetensors"
    cut_pt.write_bytes(pt.read_bytes()[:-100])
    cut_st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(vggspec.CheckpointError, match=r"cut.pt is not a vggspec checkpoint \(it is truncated: a zip"):
        vggspec.load_model(cut_pt)
    whole = st.stat().st_size
    with pytest.raises(vggspec.CheckpointError, match=rf"it is truncated: {whole - 100:,} of its {whole:,} bytes\)$"):
        vggspec.load_model(cut_st)
    with pytest.raises(vggspec.WeightsError, match=r"cut.pt is not a loadable state dict \(it is truncated"):
        vggspec.build(model.spec, weights=cut_pt)


def test_the_spec_stored_in_a_checkpoint_is_read_with_its_checksums_verified(model, tmp_path):
    """What `vggspec diff` compares: from a .pt, a .safetensors or a run folder; a damaged file is refused."""
    from vggspec.nn.checkpoint import stored_spec

    run = tmp_path / "run"
    paths = [
        save_checkpoint(model, tmp_path / "model.pt"),
        save_checkpoint(model, tmp_path / "model.safetensors"),
        save_checkpoint(model, run / "last.pt", momentum=[torch.ones(3)]),
    ]
    for path in [*paths, run]:
        assert stored_spec(path) == model.spec
    data = torch.load(run / "last.pt", weights_only=True)
    data["momentum"][0][1] = 2  # the optimizer's state of a run, damaged: not what was written
    torch.save(data, run / "last.pt")
    with pytest.raises(vggspec.CheckpointError, match="its momentum does not match its checksum"):
        stored_spec(run)
