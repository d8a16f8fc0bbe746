"""Checkpoints: a model's weights together with the spec that defines it.

A checkpoint is a plain dictionary saved with ``torch.save`` and read back with
``weights_only=True`` (nothing but tensors and plain values is ever unpickled)::

    format      "vggspec.checkpoint"       what the file is
    version     1
    spec        the spec's canonical text  enough to rebuild the network
    spec_hash   sha256 of that text        catches a spec edited after the fact
    dense       bool                       FC layers applied as convolutions
    state_dict  the weights
    preprocessing  JSON of :class:`~vggspec.preprocessing.Preprocessing`  what the weights expect of pixels
                   (when known; a training run's checkpoint without it: the paper's, from its colour_stats)
    ...         more entries the trainer adds (optimizer, epoch, ...)

Files are written atomically (:mod:`vggspec.files`: temporary file, fsync, rename): a killed
process never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import files
from .analysis import classifier_spec
from .compiler import VGG, build
from .errors import CheckpointError, SpecError
from .formatter import format_spec
from .parser import parse
from .preprocessing import Preprocessing
from .runs import checkpoint_path
from .spec import Spec

FORMAT = "vggspec.checkpoint"
VERSION = 1


def spec_hash(spec: Spec) -> str:
    """A fingerprint of the network: its canonical text without comments (formatting-proof)."""
    bare = spec.model_copy(update={"comments": (), "source": None})
    return hashlib.sha256(format_spec(bare).encode()).hexdigest()


def save_checkpoint(model: VGG, path: str | Path, **extra: Any) -> Path:
    """Write ``model`` (and any ``extra`` plain values or tensors) atomically to ``path``."""
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
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = "a plain state dict? load it with vggspec.build(spec, weights=path)" if isinstance(data, dict) else None
        raise CheckpointError(f"{path} is not a vggspec checkpoint", hint=hint)
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} is a version {data.get('version')} checkpoint; this vggspec reads {VERSION}")
    return data


def checkpoint_spec(data: Mapping[str, Any], path: str | Path = "<checkpoint>") -> Spec:
    """The spec stored in a checkpoint, verified against its hash."""
    try:
        spec = parse(data["spec"], f"{path} (stored spec)")
    except SpecError as err:
        raise CheckpointError(f"the spec stored in {path} does not parse: {err.message}") from None
    if spec_hash(spec) != data.get("spec_hash"):
        raise CheckpointError(f"the spec stored in {path} does not match its hash: the file was altered")
    source = data.get("source")
    return spec.model_copy(update={"source": source if isinstance(source, str) else None})


def load_model(path: str | Path, *, spec: Spec | None = None, device: str | torch.device | None = None) -> VGG:
    """Rebuild the network a checkpoint holds, in eval mode (dropout off, batch norm on its running
    statistics): a loaded model is for inference; call ``.train()`` to train it on. With ``spec``,
    insist that it is that network."""
    data = read_checkpoint(path, mmap=True)  # the weights are copied into the model; the rest is not read
    stored = checkpoint_spec(data, path)
    if spec is not None and spec_hash(spec) != data["spec_hash"]:
        raise CheckpointError(
            f"{path} holds weights for '{stored.display_name}', not for '{spec.display_name}' "
            "(the specs differ: their hashes do not match)"
        )
    model = build(stored, weights=data["state_dict"], device=device)
    model.preprocessing = Preprocessing.from_checkpoint(data)
    if data.get("dense"):
        from .dense import to_dense

        model = to_dense(model)
    return model.eval()
