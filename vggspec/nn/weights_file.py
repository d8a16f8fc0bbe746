"""Weights files: where a network's weights are on disk, what a file is, and the one reader and writer.

    RUN/last.pt   the latest checkpoint of a run (every epoch, every --checkpoint-every steps)
    RUN/best.pt   another name for the best epoch's last.pt

A path that names a run folder means its best checkpoint (its last before there is a best).

What a file is, is read from its first bytes, not its name (:func:`file_kind`): a zip archive
(``torch.save`` since PyTorch 1.6), an older ``torch.save`` pickle, a safetensors file; cut ones
too, so that a truncated checkpoint is said to be one instead of being taken for a spec's text.

A vggspec checkpoint is a dictionary, saved with ``torch.save`` and read back with ``weights_only=True``
(nothing but tensors and plain values is ever unpickled), or a safetensors file with the weights as its
tensors and every other entry as JSON in its metadata (:mod:`vggspec.nn.safetensors_file`)::

    format      "vggspec.checkpoint"       what the file is
    version     2
    spec        the spec's canonical text  enough to rebuild the network
    spec_hash   sha256 of that text        names the network (``load_model(spec=...)``)
    dense       bool                       FC layers applied as convolutions
    source      where the spec came from   names the network when it has no name
    state_dict  the weights
    preprocessing  JSON of :class:`~vggspec.data.preprocessing.Preprocessing`  what the weights expect of pixels
    ...         what the trainer adds: classes, train_scale, colour_stats, config, the optimizer's state, ...
    checksums   {entry: sha256}            of every other entry (:func:`vggspec.nn.integrity.checksum`)

Every entry has its checksum, so whatever a prediction depends on (the weights, the spec, the
preprocessing, the class names, the training scale) is what was written: two class names swapped or
a mean edited is an error, not wrong labels; a version-2 checkpoint without its checksums is refused.
Version 1 recorded checksums of the entries holding tensors only, and not always: it is read by
that rule, so that the runs trained before keep evaluating and resuming (their next save is version 2).

:func:`read_checkpoint` checks every entry's form (:data:`FIELDS`) and the checksums of the small ones;
the tensors' are verified where they are used (:func:`verify_checksum`), after their shapes and size
were held against the spec, so a file whose spec declares 40 GB is refused before gigabytes are hashed.
:func:`read_weights` reads a vggspec checkpoint the same way, its weights verified, and another tool's
state dict (torchvision's ``.pth``, a safetensors file) as plain weights. :func:`write_checkpoint`
writes one atomically (:mod:`vggspec.files`: a killed process never leaves half a checkpoint).

Importing this module imports no torch (the command line asks :func:`is_weights_file` first).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import files
from ..data.preprocessing import Preprocessing
from ..data.scales import TrainingScale
from ..errors import CheckpointError, WeightsError

if TYPE_CHECKING:
    import torch

LAST, BEST = "last.pt", "best.pt"
FORMAT = "vggspec.checkpoint"
VERSION = 2  # 2: every entry has its checksum; 1: the entries holding tensors, when there were checksums
READABLE = (1, 2)

ZIP, PICKLE, SAFETENSORS, RUN_FOLDER = "zip archive", "torch pickle", "safetensors", "run folder"
SAFETENSORS_SUFFIX = ".safetensors"
_ZIP_START = b"PK\x03\x04"  # a zip archive's first local file header
_TORCH_PICKLE_START = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch.save < 1.6
_MAX_SAFETENSORS_HEADER = 100_000_000  # bytes: safetensors' own limit; 8 bytes of text read as one are far more


# -- where, and what ----------------------------------------------------------------------


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or for a run folder its best checkpoint (its last before there is a best)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (BEST, LAST):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path} is a folder without a checkpoint in it ({BEST} or {LAST})",
        hint="give a checkpoint file, or the --out folder of a 'vggspec train' run that finished an epoch",
    )


def file_kind(path: str | Path) -> str | None:
    """What ``path`` holds, by its first bytes: :data:`ZIP` (what ``torch.save`` writes, whole or cut),
    :data:`PICKLE` (``torch.save`` before PyTorch 1.6), :data:`SAFETENSORS`, :data:`RUN_FOLDER` (any
    folder: a spec is never one); None for anything else (a spec's text) or nothing there."""
    path = Path(path)
    if path.is_dir():
        return RUN_FOLDER
    try:
        with open(path, "rb") as file:
            head = file.read(len(_TORCH_PICKLE_START))
    except OSError:
        return None
    if head.startswith(_ZIP_START):
        return ZIP
    if head == _TORCH_PICKLE_START:
        return PICKLE
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < _MAX_SAFETENSORS_HEADER:
        return SAFETENSORS
    return None


def is_weights_file(path: str | Path) -> bool:
    """Whether ``path`` is a weights file or a run folder rather than a spec (:func:`file_kind`)."""
    return file_kind(path) is not None


def is_safetensors(path: str | Path) -> bool:
    """A ``.safetensors`` name, or a file that starts as one does."""
    return Path(path).suffix.lower() == SAFETENSORS_SUFFIX or file_kind(path) == SAFETENSORS


# -- reading -------------------------------------------------------------------------------


class _Unreadable(Exception):
    """Why a file cannot be read as weights: said by the caller as a checkpoint's or a state dict's error."""


def _load(path: Path, *, mmap: bool) -> Any:
    """The file's content, tensors on the CPU; FileNotFoundError, or _Unreadable saying why not.
    ``mmap``: a zip archive's tensors map the file instead of being read (for callers that copy only some)."""
    if not path.is_file():
        raise FileNotFoundError(path)
    kind = file_kind(path)
    if kind == SAFETENSORS or (kind is None and path.suffix.lower() == SAFETENSORS_SUFFIX):
        from . import safetensors_file

        return safetensors_file.read(path)  # its errors are one line already
    if kind is None:
        raise _Unreadable("not a file torch.save wrote")
    if kind == ZIP and not zipfile.is_zipfile(path):
        raise _Unreadable(f"it is truncated: a zip archive of {path.stat().st_size:,} bytes without its end")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and kind == ZIP)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors alike mean "not one"
        first = str(err).splitlines()[0] if str(err) else ""
        raise _Unreadable(f"it cannot be read with weights_only=True: {type(err).__name__}: {first}") from None


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's dictionary, checked to be one (:func:`checked`); tensors on the CPU. A run
    folder means its best checkpoint (:func:`checkpoint_path`).

    ``mmap``: tensors map the file instead of being read into memory, for callers that only
    copy some of them out (a model's weights, not the optimizer's state).
    """
    path = checkpoint_path(path)
    try:
        data = _load(path, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"no such checkpoint: {path}") from None
    except _Unreadable as err:
        raise CheckpointError(f"{path} is not a vggspec checkpoint ({err})") from None
    return checked(data, path)


def read_weights(path: str | Path) -> tuple[Mapping[str, torch.Tensor], Mapping[str, Any] | None]:
    """The weights in a file (or a run folder's best checkpoint), and the dictionary around them when there
    is one. A file that says it is a vggspec checkpoint is one: read as :func:`read_checkpoint` reads it,
    its weights verified against their checksum. Another tool's state dict (torchvision's ``.pth``, a
    safetensors file of weights, a checkpoint that wraps its ``state_dict``) is taken as it is."""
    import torch

    path = checkpoint_path(path)
    try:
        data = _load(path, mmap=True)  # a run's checkpoint holds the optimizer's state too: only the weights are read
    except FileNotFoundError:
        raise WeightsError(f"no such weights file: {path}") from None
    except _Unreadable as err:
        raise WeightsError(f"{path} is not a loadable state dict ({err})") from None
    record = None
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        record = checked(data, path)
        verify_checksum(record, "state_dict", path)
        data = record["state_dict"]
    elif isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        record, data = data, data["state_dict"]  # another tool's checkpoint that wraps its state dict
    if not isinstance(data, Mapping) or not all(isinstance(value, torch.Tensor) for value in data.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return data, record


def checked(data: Any, path: str | Path = "<checkpoint>") -> dict[str, Any]:
    """``data`` if it is a vggspec checkpoint of a version this vggspec reads, every entry in its form
    (:func:`check_fields`), every entry with its checksum (version 2) and the small entries matching
    theirs; else a CheckpointError naming what is wrong, in one line."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = "a plain state dict? load it with vggspec.build(spec, weights=path)" if isinstance(data, dict) else None
        raise CheckpointError(f"{path} is not a vggspec checkpoint", hint=hint)
    version = data.get("version")
    if not (isinstance(version, int) and not isinstance(version, bool) and version in READABLE):
        readable = " and ".join(map(str, READABLE))
        raise CheckpointError(f"{path} is a version {version!r} checkpoint; this vggspec reads versions {readable}")
    check_fields(data, path)
    if version >= 2:
        _check_coverage(data, path)
        from .integrity import holds_tensors

        for entry, value in data.items():  # the tensors' wait until they are used: they may be gigabytes
            if entry != "checksums" and not holds_tensors(value):
                verify_checksum(data, entry, path)
    return data


def _check_coverage(data: Mapping[str, Any], path: str | Path) -> None:
    """Every entry has a checksum and every checksum its entry: nothing can be added, deleted or
    stripped of its checksum unseen."""
    recorded = data.get("checksums")
    if recorded is None:
        raise CheckpointError(
            f"{path} says it is a vggspec checkpoint but has no 'checksums': its weights, spec, preprocessing "
            "and classes cannot be verified"
        )
    if unchecked := [entry for entry in data if entry != "checksums" and entry not in recorded]:
        raise CheckpointError(f"{path} is corrupt: its '{unchecked[0]}' has no checksum")
    if gone := [entry for entry in recorded if entry not in data]:
        raise CheckpointError(f"{path} is corrupt: its '{gone[0]}' is missing (its checksum is recorded)")


def verify_checksum(data: Mapping[str, Any], entry: str, path: str | Path = "<checkpoint>") -> None:
    """A CheckpointError when a checkpoint's ``entry`` does not match the checksum recorded for it (a
    version-1 checkpoint may have none: nothing to verify; a version-2 one has one for every entry)."""
    from .integrity import checksum, holds_tensors

    recorded = data.get("checksums")
    expected = recorded.get(entry) if isinstance(recorded, Mapping) else None
    if expected is None or checksum(data.get(entry)) == expected:
        return
    if entry == "state_dict":
        what = "weights do not match their"
    elif holds_tensors(data.get(entry)):
        what = f"{entry} does not match its"
    else:
        what = f"'{entry}' does not match its"
    raise CheckpointError(f"{path} is corrupt: its {what} checksum")


def verify_checksums(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Every entry that has a checksum (the weights, the optimizer's state, ...) matches it."""
    for entry in data.get("checksums") or {}:
        verify_checksum(data, entry, path)


# -- writing -------------------------------------------------------------------------------


def write_checkpoint(entries: Mapping[str, Any], path: str | Path, *, safetensors: bool | None = None) -> Path:
    """``entries`` (the weights under ``state_dict``, the spec, plain values, other tensors) as a vggspec
    checkpoint of this version, every entry with its checksum, written atomically: a ``torch.save``
    file, or with ``safetensors`` (by default: for a ``.safetensors`` path) a safetensors file (no
    pickle; the weights only, no other tensors)."""
    data = {"format": FORMAT, "version": VERSION, **entries}
    data["checksums"] = checksums(data)
    if is_safetensors(path) if safetensors is None else safetensors:
        from . import safetensors_file

        return safetensors_file.write(data, path)
    return atomic_save(data, path)


def checksums(data: Mapping[str, Any]) -> dict[str, str]:
    """The ``checksums`` entry of a checkpoint of ``data``: one for every other entry."""
    from .integrity import checksum

    return {entry: checksum(value) for entry, value in data.items() if entry != "checksums"}


def atomic_save(data: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` whole or not at all (:func:`vggspec.files.writing`); a full disk is an ``OSError``
    naming ``path``, not torch's ``RuntimeError``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.writing(path) as f:
        torch.save(dict(data), f)
    return path


def atomic_link(source: str | Path, path: str | Path) -> Path:
    """``path`` becomes another name of the finished file ``source`` (written by :func:`atomic_save`),
    atomically: a hard link, no second write of a checkpoint that may weigh a gigabyte. Writes
    replace files rather than change them, so a later save to ``source`` leaves ``path`` as it
    was. Where links are not allowed, a copy (fsync'ed, renamed into place)."""
    path = Path(path)
    with files.replacing(path) as tmp:
        try:
            os.unlink(tmp)
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FAT file systems): copy
            shutil.copyfile(source, tmp)
    return path


# -- the form of every entry -----------------------------------------------------------------


def check_fields(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Every entry of a checkpoint that vggspec reads has the form it writes (the tensors' values
    are not read): a hand-edited or damaged file is said in one line naming the file and the entry,
    not met later as an AttributeError, a KeyError or a pydantic traceback."""
    for key, check in FIELDS.items():
        if key not in data:
            problem = "is missing" if key in REQUIRED else None
        else:
            problem = check(data[key])
        if problem:
            raise CheckpointError(f"{path} is corrupt: its '{key}' {problem}")


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"is not text but {_kind(value)}"


def _sha256(value: Any) -> str | None:
    ok = isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    return None if ok else "is not a SHA-256 in hex"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"is not true or false but {_kind(value)}"


def _count(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else f"is not a count (an integer ≥ 0) but {_kind(value)}"


def _number(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return None if ok else f"is not a number but {_kind(value)}"


def _mapping(value: Any) -> str | None:
    ok = isinstance(value, Mapping) and all(isinstance(key, str) for key in value)
    return None if ok else f"is not a mapping of names to values but {_kind(value)}"


def _tensors(value: Any) -> str | None:
    import torch

    ok = isinstance(value, Mapping) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )
    return None if ok else "is not a mapping of names to tensors"


def _digests(value: Any) -> str | None:
    ok = isinstance(value, Mapping) and all(isinstance(k, str) and _sha256(v) is None for k, v in value.items())
    return None if ok else "is not a mapping of entries to SHA-256s in hex"


def _source(value: Any) -> str | None:
    return None if value is None else _text(value)


def _record_problem(err: Any) -> str:
    """A pydantic ValidationError's first error, shortly: ``eigenvalues: Field required``."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}"


def _not_finite(numbers: list[float]) -> bool:
    return not all(math.isfinite(n) for n in numbers)


def _preprocessing(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"is not text (a preprocessing record as JSON) but {_kind(value)}"
    from pydantic import ValidationError

    try:
        record = Preprocessing.model_validate_json(value)
    except ValidationError as err:
        return f"is not a preprocessing record ({_record_problem(err)})"
    if _not_finite([*record.mean, *record.std]):
        return f"holds a mean or std that is not a finite number (mean {record.mean}, std {record.std})"
    return None


def _colour_stats(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"is not text (colour statistics as JSON) but {_kind(value)}"
    from pydantic import ValidationError

    from ..data.colour import ColourStats

    try:
        stats = ColourStats.model_validate_json(value)
    except ValidationError as err:
        return f"is not colour statistics ({_record_problem(err)})"
    if _not_finite([*stats.mean, *stats.eigenvalues, *(x for row in stats.eigenvectors for x in row)]):
        return f"holds a number that is not finite (mean {stats.mean}, eigenvalues {stats.eigenvalues})"
    return None


def _classes(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return f"is not a list of class names but {_kind(value)}"
    odd = next((name for name in value if not isinstance(name, str)), None)
    return None if odd is None else f"holds {_kind(odd)} where a class name should be"


def _train_scale(value: Any) -> str | None:
    """S as :meth:`~vggspec.data.scales.TrainingScale.to_checkpoint` stores it: its rules are that class's."""
    try:
        TrainingScale.from_entry(value)
    except ValueError:
        return f"is not two sizes S_min ≤ S_max (positive integers) but {_kind(value)}"
    return None


def _rng(value: Any) -> str | None:
    import torch

    def state(s: Any) -> bool:
        return isinstance(s, torch.Tensor) and s.dtype == torch.uint8 and s.dim() == 1

    ok = (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(r, Mapping) and state(r.get("cpu")) and state(r.get("cuda", r.get("cpu"))) for r in value)
    )
    return None if ok else "is not a list of random number generator states (one per process)"


def _history(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(record, Mapping) for record in value)
    return None if ok else f"is not a list of epoch records but {_kind(value)}"


def _best(value: Any) -> str | None:
    """The best epoch's record: the trainer compares its top-1 error with each new epoch's."""
    if value is None or (isinstance(value, Mapping) and _number(value.get("val_top1_err")) is None):
        return None
    return f"is not an epoch record with a 'val_top1_err' but {_kind(value)}"


def _kind(value: Any) -> str:
    """What a value is, shortly: "a list", "the number 3", "the text 'abc'"."""
    if isinstance(value, str):
        return f"the text {json.dumps(value[:40] + ('…' if len(value) > 40 else ''), ensure_ascii=False)}"
    if value is None or isinstance(value, (bool, int, float)):
        return f"the value {value!r}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


REQUIRED = ("spec", "spec_hash", "state_dict")
FIELDS: dict[str, Callable[[Any], str | None]] = {
    "spec": _text,
    "spec_hash": _sha256,
    "dense": _flag,
    "source": _source,
    "state_dict": _tensors,
    "preprocessing": _preprocessing,
    "checksums": _digests,
    # what the trainer adds (train.TrainingState and its facts)
    "config": _mapping,
    "colour_stats": _colour_stats,
    "classes": _classes,
    "train_scale": _train_scale,
    "rng": _rng,
    "epoch": _count,
    "step": _count,
    "loss_sum": _number,
    "history": _history,
    "best": _best,
    "optimizer": _mapping,
    "scheduler": _mapping,
    "scaler": _mapping,
}
"""Each entry vggspec reads, and the check of its form: a problem said shortly, or None."""
