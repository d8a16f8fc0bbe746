"""Files written whole or not at all: every file vggspec writes goes through :func:`replacing`.

The new content goes to a temporary file beside the target (``.NAME.XXXXXXXX.tmp``), is
fsync'ed, and renamed over the target; the folder is fsync'ed so the rename survives a power
loss. A reader sees the old file or the new one, never half of one; a failure (a full disk, a
read-only folder, an exception in the block) removes the temporary and leaves the old file as it
was. The temporary is created as a plain ``open()`` would create the file: mode 0666 less the
umask, or the mode of the file it replaces.

A write that fails is an :class:`OSError` naming the target (not the temporary), also when a
library wrapped it (torch's writers raise ``RuntimeError("... unexpected pos ...")`` with the
``OSError`` as its context).

``-`` as a path means standard output, for every writer here: the content goes there as it is
(nothing to replace, so nothing to make atomic).

Torch-free, and low in the package: anything may use it.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import SpecError

TEMPORARY_SUFFIX = ".tmp"
STDOUT = "-"  # an output path that means standard output


def is_stdout(path: str | Path | None) -> bool:
    """``path`` is ``-``: the output goes to standard output."""
    return path is not None and str(path) == STDOUT
_BUFFER = 1 << 20  # torch.save writes many small records: gathered into 1 MiB system calls


def temporary_pattern(name: str) -> str:
    """The glob of the temporaries :func:`replacing` makes for a file called ``name``."""
    return f".{name}.*{TEMPORARY_SUFFIX}"


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A fresh, empty temporary file beside ``path`` for the block to fill; renamed to ``path`` when
    the block succeeds (after an fsync), removed when it fails. For ``-``, a temporary file whose content goes
    to standard output when the block succeeds (for writers that want a file name)."""
    if is_stdout(path):
        with tempfile.TemporaryDirectory(prefix="vggspec-") as folder:
            tmp = Path(folder) / "output"
            tmp.touch()
            yield tmp
            with open(tmp, "rb") as f, _stdout_bytes() as out:
                shutil.copyfileobj(f, out)
        return
    target = _target(Path(path))
    tmp, fd = _create_temporary(target)
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        failure = os_error(err) if isinstance(err, (OSError, RuntimeError)) else None
        if failure is not None and (failure is not err or _unnamed(failure, tmp)):
            raise OSError(failure.errno, failure.strerror or str(failure), str(target)) from None
        raise
    fsync_folder(target.parent)


@contextmanager
def writing(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into, replacing it whole when the block ends
    (``-``: standard output itself)."""
    if is_stdout(path):
        with _stdout_bytes() as out:
            yield out
        return
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | getattr(os, "O_BINARY", 0))
        with io.BufferedWriter(_Raw(fd), buffer_size=_BUFFER) as f:
            yield f


def write_bytes(path: str | Path, data: bytes) -> Path:
    """``path`` holds ``data``, or (on failure) what it held before."""
    with writing(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """``path`` holds ``text``, or (on failure) what it held before."""
    return write_bytes(path, text.encode(encoding))


@contextmanager
def _stdout_bytes() -> Iterator[BinaryIO]:
    """Standard output as bytes, after the text written to it so far; flushed, not closed, at the end."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    yield out
    out.flush()


def os_error(err: BaseException) -> OSError | None:
    """The :class:`OSError` behind ``err``: itself, or the one a library's ``RuntimeError`` wraps."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file (links and ``..`` included); a missing one is no file."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (a new output): not the same file
        return False


def refuse_overwriting(output: str | Path, inputs: Iterable[str | Path | None], command: str) -> None:
    """A command never writes over its own input: ``compile SPEC -o SPEC`` is refused, nothing written."""
    for source in inputs:
        if source is not None and same_file(output, source):
            raise SpecError(
                f"{command} would write {output} over its own input {source}: nothing written",
                hint="give -o another file name",
            )


def remove_temporaries(folder: str | Path, names: Iterable[str]) -> tuple[int, int]:
    """Remove the temporaries a killed writer left for the files ``names`` in ``folder``; (count, bytes).
    Only for a folder no other process writes in (a run folder its resumed run owns)."""
    count = freed = 0
    for name in names:
        for tmp in Path(folder).glob(temporary_pattern(name)):
            try:
                size = tmp.stat().st_size
                tmp.unlink()
            except OSError:  # gone already, or not ours to remove: left alone
                continue
            count, freed = count + 1, freed + size
    return count, freed


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable: a machine that loses power keeps the new file."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a system that cannot open folders (Windows): the rename is what it is
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse to fsync a folder; the data itself was fsync'ed
        pass
    finally:
        os.close(fd)


# -- helpers ----------------------------------------------------------------------------


def _target(path: Path) -> Path:
    """The file to replace: a symbolic link's target (a plain ``open()`` writes through links)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _create_temporary(target: Path) -> tuple[Path, int]:
    """A new file beside ``target``, created with ``open()``'s permissions (not mkstemp's 0600)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)  # a rewrite keeps the file's mode, as open("w") does
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(target)) from None
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except (OSError, AttributeError):  # not ours to change, or no fchmod (Windows): open()'s mode
                pass
        return tmp, fd


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unnamed(err: OSError, tmp: Path) -> bool:
    """An error that does not name the file the user asked for (no name, or the temporary's)."""
    return err.filename is None or Path(os.fsdecode(err.filename)) == tmp


class _Raw(io.RawIOBase):
    """An unbuffered file over ``fd`` whose writes are :func:`os.write` (one place a test can fail)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001 - any bytes-like object
        return os.write(self.fd, data)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self.fd)
            finally:
                super().close()
