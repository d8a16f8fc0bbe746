"""Files written whole or not at all (vggspec.files), by every command: a full disk, a kill or a
wrong -o never costs the user a file, and is said in one line naming the file."""

import errno
import os
import stat
from pathlib import Path

import pytest

from vggspec import files
from vggspec.cli import main

SPEC = "name: net\ninput: 32x32 RGB\nconv3-8\nmaxpool\nFC-10\n"


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Writes to files under ``tmp_path`` fail with ENOSPC after their first few bytes (the first
    write is cut short, as on a disk that fills up mid-file); other writes go through."""
    real_write = os.write

    def write(fd: int, data) -> int:
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            where = ""
        if not where.startswith(str(tmp_path)):
            return real_write(fd, data)
        if os.fstat(fd).st_size == 0 and len(data) > 1:
            return real_write(fd, bytes(memoryview(data)[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if not Path("/proc/self/fd").is_dir():  # pragma: no cover
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(os, "write", write)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def one_line_naming(err: str, path: Path) -> None:
    lines = err.strip().splitlines()
    assert str(path) in lines[-1] and "No space left on device" in lines[-1], err
    assert "Traceback" not in err


# -- the mechanism ----------------------------------------------------------------------


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, full_disk):
    target = tmp_path / "notes.txt"
    target.write_text("the old text\n")
    with pytest.raises(OSError) as info:
        files.write_text(target, "a new text, longer than the first write lets through\n")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)  # the target, not the temporary
    assert target.read_text() == "the old text\n" and leftovers(tmp_path) == []


def test_torch_saves_runtime_error_on_a_full_disk_is_an_os_error_naming_the_file(tmp_path, full_disk):
    """torch.save reports a failed write as RuntimeError('... unexpected pos ...'), the OSError as its context."""
    torch = pytest.importorskip("torch")
    from vggspec.nn.checkpoint import atomic_save

    target = tmp_path / "big.pt"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as info:
        atomic_save({"weights": torch.zeros(1 << 16)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_an_exception_in_the_block_removes_the_temporary(tmp_path):
    target = tmp_path / "x"
    with pytest.raises(KeyError), files.replacing(target) as tmp:
        tmp.write_text("half")
        raise KeyError("stop")
    assert not target.exists() and leftovers(tmp_path) == []


def test_new_files_get_the_permissions_open_gives_and_rewrites_keep_theirs(tmp_path, umask_022):
    fresh = files.write_text(tmp_path / "fresh.txt", "x")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # 0666 & ~022, not mkstemp's 0600
    private = tmp_path / "private.vgg"
    private.write_text(SPEC)
    private.chmod(0o600)
    files.write_text(private, SPEC + "# more\n")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_checkpoints_get_the_permissions_open_gives(tmp_path, umask_022):
    pytest.importorskip("torch")
    spec = tmp_path / "net.vgg"
    spec.write_text(SPEC)
    assert main(["compile", str(spec), "-o", str(tmp_path / "net.pt")]) == 0
    assert stat.S_IMODE((tmp_path / "net.pt").stat().st_mode) == 0o644
    from vggspec.nn.checkpoint import atomic_link

    atomic_link(tmp_path / "net.pt", tmp_path / "best.pt")
    assert stat.S_IMODE((tmp_path / "best.pt").stat().st_mode) == 0o644


def test_a_symbolic_link_is_written_through(tmp_path):
    real = tmp_path / "real.vgg"
    real.write_text("old")
    link = tmp_path / "link.vgg"
    link.symlink_to(real)
    files.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_stale_temporaries_of_the_named_files_are_removed_and_counted(tmp_path):
    (tmp_path / ".last.pt.0a1b2c3d.tmp").write_bytes(b"x" * 1000)
    (tmp_path / ".best.pt.deadbeef.tmp").write_bytes(b"x" * 24)
    (tmp_path / ".someone-else.tmp").write_bytes(b"keep")
    (tmp_path / "last.pt").write_bytes(b"keep")
    assert files.remove_temporaries(tmp_path, ["last.pt", "best.pt"]) == (2, 1024)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".someone-else.tmp", "last.pt"]


# -- the commands -------------------------------------------------------------------------


def test_fmt_write_on_a_full_disk_keeps_the_spec(tmp_path, full_disk, capsys):
    messy = tmp_path / "messy.vgg"
    messy.write_text("# my net\nconv3-8,conv3-8\nmaxpool\nFC-10\n")
    before = messy.read_text()
    assert main(["fmt", "--write", str(messy)]) == 2
    assert messy.read_text() == before and leftovers(tmp_path) == []
    one_line_naming(capsys.readouterr().err, messy)


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".onnx", ".py"])
def test_compile_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, full_disk, capsys, suffix):
    pytest.importorskip("torch")
    if suffix == ".onnx":
        pytest.importorskip("onnx")
    spec = tmp_path / "net.vgg"
    spec.write_text(SPEC)
    output = tmp_path / f"net{suffix}"
    output.write_bytes(b"the previous export")
    assert main(["compile", str(spec), "-o", str(output)]) == 2
    one_line_naming(capsys.readouterr().err, output)
    assert output.read_bytes() == b"the previous export" and leftovers(tmp_path) == []


@pytest.mark.parametrize("command", [["table"], ["graph", "--format", "dot"]])
def test_table_and_graph_on_a_full_disk_leave_no_empty_file(tmp_path, full_disk, capsys, command):
    pytest.importorskip("graphviz")
    spec = tmp_path / "net.vgg"
    spec.write_text(SPEC)
    output = tmp_path / "out.txt"
    assert main([command[0], str(spec), "-o", str(output), *command[1:]]) == 2
    one_line_naming(capsys.readouterr().err, output)
    assert not output.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "command",
    [["compile", "{spec}", "-o", "{spec}"], ["table", "{spec}", "-o", "{spec}"], ["graph", "{spec}", "-o", "{link}"]],
)
def test_a_command_never_writes_over_its_own_input(tmp_path, capsys, command):
    spec = tmp_path / "net.vgg"
    spec.write_text(SPEC)
    (tmp_path / "link.vgg").symlink_to(spec)  # another name of the same file
    args = [a.format(spec=spec, link=tmp_path / "link.vgg") for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"over its own input {spec}: nothing written" in err and "Traceback" not in err
    assert spec.read_text() == SPEC and leftovers(tmp_path) == []


def test_compile_never_writes_over_the_weights_it_reads(tmp_path, capsys):
    pytest.importorskip("torch")
    spec = tmp_path / "net.vgg"
    spec.write_text(SPEC)
    weights = tmp_path / "net.pt"
    assert main(["compile", str(spec), "-o", str(weights)]) == 0
    before = weights.read_bytes()
    assert main(["compile", str(spec), "--weights", str(weights), "-o", str(tmp_path / "." / "net.pt")]) == 2
    (tmp_path / "last.pt").write_bytes(before)  # a run folder: its last.pt is read
    assert main(["compile", str(spec), "--init-from", str(tmp_path), "-o", str(tmp_path / "last.pt")]) == 2
    assert capsys.readouterr().err.count("over its own input") == 2
    assert weights.read_bytes() == before == (tmp_path / "last.pt").read_bytes()


def test_load_model_gives_a_model_in_eval_mode(tmp_path):
    pytest.importorskip("torch")
    import vggspec

    spec = vggspec.parse(SPEC.replace("FC-10", "FC-16\nFC-16\nFC-10"))
    vggspec.save_checkpoint(vggspec.build(spec, seed=0), tmp_path / "m.pt")
    model = vggspec.load_model(tmp_path / "m.pt")
    assert not any(module.training for module in model.modules())
