"""Checkpoints of a model: its weights together with the spec that defines it, written and rebuilt.

The file's format, its reading (every entry's form checked, the checksums verified) and its atomic
writing are :mod:`vggspec.nn.weights_file`'s; this module makes one of a :class:`VGG` and a
:class:`VGG` of one: :func:`save_checkpoint`, :func:`load_model` (:func:`model_from_checkpoint` of a
file read already), :func:`checkpoint_spec` and :func:`stored_spec` (the network a file holds) and
:func:`check_weights` (its weights are that network's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data.preprocessing import Preprocessing
from ..errors import CheckpointError, SpecError
from ..spec.analysis import analyze, classifier_spec
from ..spec.formatter import format_spec, spec_hash  # noqa: F401  (spec_hash: imported from here too)
from ..spec.parser import parse
from ..spec.spec import Spec
from .compiler import VGG, build
from .devices import check_memory
from .integrity import first_non_finite

# The reader and writer's names, for the callers that import them from here (run/, cli/): their home is weights_file.
from .weights_file import (  # noqa: F401
    FORMAT,
    VERSION,
    atomic_link,
    atomic_save,
    check_fields,
    checkpoint_path,
    read_checkpoint,
    verify_checksum,
    verify_checksums,
    write_checkpoint,
)


def save_checkpoint(model: VGG, path: str | Path, *, safetensors: bool | None = None, **extra: Any) -> Path:
    """Write ``model`` (and any ``extra`` plain values or tensors) atomically to ``path``, every entry with its
    checksum (:func:`~vggspec.nn.weights_file.write_checkpoint`): a ``torch.save`` file, or with ``safetensors``
    (by default: for a ``.safetensors`` path) a safetensors file of the weights with every other entry in its
    metadata."""
    spec, state = model.spec, model.state_dict()
    if model.dense:  # stored as the classifier it was made from; load_model converts again
        spec = classifier_spec(spec)
        shapes = build(spec, device="meta").state_dict()
        state = {key: value.reshape(shapes[key].shape) for key, value in state.items()}
    data = {
        "spec": format_spec(spec.model_copy(update={"comments": ()})),
        "spec_hash": spec_hash(spec),
        "dense": model.dense,
        "source": model.spec.source,  # where the spec came from: names the network when it has no name
        "state_dict": state,
        **extra,
    }
    if model.preprocessing is not None and "preprocessing" not in extra:
        data["preprocessing"] = model.preprocessing.model_dump_json()
    return write_checkpoint(data, path, safetensors=safetensors)


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


def stored_spec(path: str | Path) -> Spec:
    """The spec a checkpoint (or a run folder's best) holds, with every checksum in the file verified:
    what ``vggspec diff`` compares, from a file that is what was written."""
    path = checkpoint_path(path)
    data = read_checkpoint(path, mmap=True)
    spec = checkpoint_spec(data, path)
    verify_checksums(data, path)
    return spec


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
