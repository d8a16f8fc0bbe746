"""A checkpoint as a ``.safetensors`` file: the ecosystem's safe interchange format for weights.

The same entries as a ``.pt`` checkpoint (:mod:`vggspec.checkpoint`): the weights as the file's
tensors, every other entry (format, spec text, spec hash, dense, preprocessing, class names, the
weights' checksum, ...) as JSON text in the file's metadata, which safetensors keeps as strings. So
``vggspec.load_model``, ``--weights`` and evaluation read either file the same way, and any
safetensors reader sees the weights and what they mean without vggspec. Nothing is unpickled.

The format's bytes only: which files are weights files, and every check of a checkpoint's entries,
are :mod:`vggspec.nn.weights_file`'s, the one reader and writer that uses this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import files
from ..errors import CheckpointError
from .integrity import holds_tensors

SUFFIX = ".safetensors"
MAX_HEADER = 100_000_000  # bytes: safetensors' own limit on a file's JSON header
ORDER = "state_dict_order"  # the metadata entry keeping the weights' order (safetensors sorts its tensors)


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise CheckpointError(
            "reading or writing .safetensors files needs the safetensors package: pip install safetensors"
        ) from None
    return safetensors.torch


def write(entries: Mapping[str, Any], path: str | Path) -> Path:
    """``entries`` (a checkpoint's: ``state_dict`` and plain values) to ``path``, atomically."""
    state = entries["state_dict"]
    extra = [key for key, value in entries.items() if key != "state_dict" and holds_tensors(value)]
    if extra:  # an optimizer's state has no place in an interchange file of weights
        raise ValueError(f"a .safetensors file holds weights only, not {', '.join(extra)}")
    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    metadata = {key: json.dumps(value) for key, value in entries.items() if key != "state_dict"}
    metadata[ORDER] = json.dumps(list(state))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return files.write_bytes(path, _safetensors().save(tensors, metadata=metadata))


def read(path: str | Path) -> dict[str, Any]:
    """The checkpoint's entries from a file :func:`write` wrote: the weights under ``state_dict``, in
    their order, and every metadata entry decoded. A file of weights without vggspec's metadata gives
    its tensors alone."""
    path = Path(path)
    _safetensors()  # a missing package said plainly
    from safetensors import safe_open

    if (cut := _truncation(path)) is not None:  # safetensors would say "MetadataIncompleteBuffer"
        raise CheckpointError(f"{path} is not a readable .safetensors file ({cut})")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 - not a dict
    except FileNotFoundError:
        raise CheckpointError(f"no such file: {path}") from None
    except Exception as err:  # noqa: BLE001 - safetensors raises its own and OSError types
        raise CheckpointError(f"{path} is not a readable .safetensors file ({type(err).__name__}: {err})") from None
    try:
        entries = {key: json.loads(value) for key, value in metadata.items()}
    except ValueError:  # written by another tool: its metadata is its own
        entries = {}
    order = entries.pop(ORDER, None)
    if isinstance(order, list) and sorted(order) == sorted(tensors):
        tensors = {key: tensors[key] for key in order}
    entries["state_dict"] = tensors
    return entries


def _truncation(path: Path) -> str | None:
    """How a file is shorter than its header says (a cut download or copy, a full disk), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if length > MAX_HEADER:
                return None  # not a header: safetensors says what it is
            if size < 8 + length:
                return f"it is truncated: {size:,} bytes, less than its {8 + length:,}-byte header"
            header = json.loads(file.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # not readable as one: safetensors says how
    whole = 8 + length + max(ends, default=0)
    return f"it is truncated: {size:,} of its {whole:,} bytes" if size < whole else None
