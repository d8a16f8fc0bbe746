"""Checkpoints: a model's weights together with the spec that defines it.

A checkpoint is a plain dictionary saved with ``torch.save`` and read back with
``weights_only=True`` (nothing but tensors and plain values is ever unpickled)::

    format      "vggspec.checkpoint"       what the file is
    version     1
    spec        the spec's canonical text  enough to rebuild the network
    spec_hash   sha256 of that text        catches a spec edited after the fact
    dense       bool                       FC layers applied as convolutions
    state_dict  the weights
    checksums   {entry: sha256}            of each entry that holds tensors (the weights, the
                                           optimizer's state, ...): :func:`vggspec.nn.integrity.checksum`
    preprocessing  JSON of :class:`~vggspec.data.preprocessing.Preprocessing`  what the weights expect of pixels
                   (when known; a training run's checkpoint without it: the paper's, from its colour_stats)
    ...         more entries the trainer adds (optimizer, epoch, ...)

Every entry is checked when the file is read (:func:`check_fields`), and the weights against their
checksum when they are used (a file written before there were checksums is not verified): a
damaged or edited file is a :class:`CheckpointError` in one line, never a traceback.

Files are written atomically (:mod:`vggspec.files`: temporary file, fsync, rename): a killed process never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import files
from ..data.preprocessing import Preprocessing
from ..errors import CheckpointError, SpecError
from ..spec.analysis import analyze, classifier_spec
from ..spec.formatter import format_spec
from ..spec.parser import parse
from ..spec.spec import Spec
from . import safetensors_file
from .compiler import VGG, build, check_memory
from .integrity import checksum, first_non_finite, holds_tensors, verify_checksum
from .weights_file import checkpoint_path

FORMAT = "vggspec.checkpoint"
VERSION = 1


def spec_hash(spec: Spec) -> str:
    """A fingerprint of the network: its canonical text without comments (formatting-proof)."""
    bare = spec.model_copy(update={"comments": (), "source": None})
    return hashlib.sha256(format_spec(bare).encode()).hexdigest()


def save_checkpoint(model: VGG, path: str | Path, *, safetensors: bool | None = None, **extra: Any) -> Path:
    """Write ``model`` (and any ``extra`` plain values or tensors) atomically to ``path``: a ``torch.save``
    file, or with ``safetensors`` (by default: for a ``.safetensors`` path) a safetensors file of the
    weights with every other entry in its metadata (:mod:`vggspec.safetensors_file`)."""
    spec, state = model.spec, model.state_dict()
    if model.dense:  # stored as the classifier it was made from; load_model converts again
        spec = classifier_spec(spec)
        shapes = build(spec, device="meta").state_dict()
        state = {key: value.reshape(shapes[key].shape) for key, value in state.items()}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "spec": format_spec(spec.model_copy(update={"comments": ()})),
        "spec_hash": spec_hash(spec),
        "dense": model.dense,
        "source": model.spec.source,  # where the spec came from: names the network when it has no name
        "state_dict": state,
        **extra,
    }
    if model.preprocessing is not None and "preprocessing" not in extra:
        data["preprocessing"] = model.preprocessing.model_dump_json()
    data["checksums"] = {key: checksum(value) for key, value in data.items() if holds_tensors(value)}
    if safetensors_file.is_safetensors(path) if safetensors is None else safetensors:  # no pickle
        return safetensors_file.write(data, path)
    return atomic_save(data, path)


def atomic_save(data: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` whole or not at all (:func:`vggspec.files.writing`); a full disk is an ``OSError``
    naming ``path``, not torch's ``RuntimeError``."""
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


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's dictionary, checked to be one; tensors on the CPU. A run directory
    means its best checkpoint (:func:`checkpoint_path`).

    ``mmap``: tensors map the file instead of being read into memory, for callers that only
    copy some of them out (a model's weights, not the optimizer's state).
    """
    path = checkpoint_path(path)
    if safetensors_file.is_safetensors(path):
        return _checked(safetensors_file.read(path), path)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise CheckpointError(f"{path} is not a vggspec checkpoint (not a file torch.save wrote)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"no such checkpoint: {path}") from None
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors alike mean "not one"
        raise CheckpointError(
            f"{path} is not a vggspec checkpoint (it cannot be read with weights_only=True: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return _checked(data, path)


def _checked(data: Any, path: Path) -> dict[str, Any]:
    """``data`` if it is a vggspec checkpoint of this version with every entry in its form."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = "a plain state dict? load it with vggspec.build(spec, weights=path)" if isinstance(data, dict) else None
        raise CheckpointError(f"{path} is not a vggspec checkpoint", hint=hint)
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} is a version {data.get('version')} checkpoint; this vggspec reads {VERSION}")
    check_fields(data, path)
    return data


def check_fields(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Every entry of a checkpoint that vggspec reads has the form it writes (the tensors' values
    are not read): a hand-edited or damaged file is said in one line naming the file and the entry,
    not met later as an AttributeError or a KeyError."""
    for key, check in _FIELDS.items():
        if key not in data:
            problem = "is missing" if key in _REQUIRED else None
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
    ok = isinstance(value, Mapping) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )
    return None if ok else "is not a mapping of names to tensors"


def _digests(value: Any) -> str | None:
    ok = isinstance(value, Mapping) and all(isinstance(k, str) and _sha256(v) is None for k, v in value.items())
    return None if ok else "is not a mapping of entries to SHA-256s in hex"


def _source(value: Any) -> str | None:
    return None if value is None else _text(value)


def _colour_stats(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"is not text (colour statistics as JSON) but {_kind(value)}"
    from pydantic import ValidationError

    from ..data.colour import ColourStats

    try:
        ColourStats.model_validate_json(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"is not colour statistics ({where + ': ' if where else ''}{first['msg']})"
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
    from ..data.scales import TrainingScale

    try:
        TrainingScale.from_entry(value)
    except ValueError:
        return f"is not two sizes S_min ≤ S_max (positive integers) but {_kind(value)}"
    return None


def _rng(value: Any) -> str | None:
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


_REQUIRED = ("spec", "spec_hash", "state_dict")
_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "spec": _text,
    "spec_hash": _sha256,
    "dense": _flag,
    "source": _source,
    "state_dict": _tensors,
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


def checkpoint_spec(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> Spec:
    """The spec stored in a checkpoint, verified against its hash."""
    try:
        spec = parse(data["spec"], f"{path} (stored spec)")
    except SpecError as err:
        raise CheckpointError(f"the spec stored in {path} does not parse: {err.message}") from None
    if spec_hash(spec) != data.get("spec_hash"):
        raise CheckpointError(f"the spec stored in {path} does not match its hash: the file was altered")
    outputs = analyze(spec).layers[-1].output_shape[0]
    if (classes := data.get("classes")) is not None and len(classes) != outputs:
        raise CheckpointError(
            f"{path} is corrupt: its 'classes' names {len(classes)} classes, its network has {outputs} outputs"
        )
    if isinstance(data.get("colour_stats"), str):
        from ..data.colour import ColourStats

        channels = ColourStats.model_validate_json(data["colour_stats"]).channels
        if channels != spec.input.channels:
            raise CheckpointError(
                f"{path} is corrupt: its 'colour_stats' are for {channels} channels, its network takes "
                f"{spec.input.channels}"
            )
    source = data.get("source")
    return spec.model_copy(update={"source": source if isinstance(source, str) else None})


def check_weights(data: Mapping[str, Any], spec: Spec, path: str | Path = "<checkpoint>") -> None:
    """The stored weights are the network ``spec`` declares and match their checksum."""
    _check_shapes(data, spec, path)
    verify_checksum(data, "state_dict", path)


def _check_shapes(data: Mapping[str, Any], spec: Spec, path: str | Path) -> None:
    """Every stored tensor has the shape the spec declares: read from the file's index, not its data,
    so a small file whose spec declares a 40 GB network is refused before anything is allocated."""
    declared = {key: tuple(value.shape) for key, value in build(spec, device="meta").state_dict().items()}
    stored = {key: tuple(value.shape) for key, value in data["state_dict"].items()}
    if declared != stored:
        key = next(key for key in [*declared, *stored] if declared.get(key) != stored.get(key))
        have, want = (f"{shapes[key]}" if key in shapes else "nothing" for shapes in (stored, declared))
        values, params = (sum(math.prod(shape) for shape in shapes.values()) for shapes in (stored, declared))
        raise CheckpointError(
            f"{path} is corrupt: its weights ({values:,} values) are not the network its spec declares "
            f"({params:,}): {key} holds {have} where the spec needs {want}"
        )


def verify_checksums(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Every entry that has a checksum (the weights, the optimizer's state, ...) matches it."""
    for entry in data.get("checksums") or {}:
        verify_checksum(data, entry, path)


def check_finite(model: torch.nn.Module, path: str | Path = "<checkpoint>") -> None:
    """NaN or infinite weights, said as such: evaluated, they would make every image "unreadable"."""
    if (name := first_non_finite(model.state_dict())) is not None:
        layer = name.rsplit(".", 2)[0].split(".")[-1]
        raise CheckpointError(f"{path} holds NaN or infinite weights (layer {layer}: {name})")


def load_model(path: str | Path, *, spec: Spec | None = None, device: str | torch.device | None = None) -> VGG:
    """Rebuild the network a checkpoint holds, in eval mode (dropout off, batch norm on its running
    statistics): a loaded model is for inference; call ``.train()`` to train it on. With ``spec``,
    insist that it is that network."""
    # The weights are copied into the model; the rest is not read.
    return model_from_checkpoint(read_checkpoint(path, mmap=True), path, spec=spec, device=device)


def model_from_checkpoint(
    data: Mapping[str, Any],
    path: str | Path,
    *,
    spec: Spec | None = None,
    device: str | torch.device | None = None,
) -> VGG:
    """:func:`load_model` of a checkpoint read already (``data``, from ``path``): for callers that also use its
    other entries, so that the file is read once (a ``.safetensors`` file is read whole)."""
    stored = checkpoint_spec(data, path)
    if spec is not None and spec_hash(spec) != data["spec_hash"]:
        raise CheckpointError(
            f"{path} holds weights for '{stored.display_name}', not for '{spec.display_name}' "
            "(the specs differ: their hashes do not match)"
        )
    _check_shapes(data, stored, path)  # the file's index, then the size, before the bytes are read
    check_memory(stored, device or "cpu")  # before a checksum of gigabytes that would not fit anyway
    verify_checksum(data, "state_dict", path)
    model = build(stored, weights=data["state_dict"], device=device, strict_weights=True)  # its own: all or none
    model.preprocessing = Preprocessing.from_checkpoint(data)
    if data.get("dense"):
        from .dense import to_dense

        model = to_dense(model)
    return model.eval()
