"""Is a checkpoint's content what was written? Checksums of its entries, and finite weights.

A checksum covers one entry of a checkpoint. An entry that holds tensors (the weights, the
optimizer's state, ...): SHA-256 over every leaf in order, a tensor as its place, dtype, shape and
the SHA-256 of its bytes (in pieces of :data:`PIECE` bytes, hashed by several threads: hashlib
releases the GIL), any other value as its place and ``repr``; a flipped byte anywhere in the
weights changes it. Any other entry (the spec, the preprocessing, the class names, ...): SHA-256 of
its JSON text, which a ``.pt`` file and a ``.safetensors`` file (whose metadata is JSON) give back
alike (a tuple written is a list read). Which entries must have one is :mod:`vggspec.nn.weights_file`'s
rule.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

ALGORITHM = "sha256"
PIECE = 8 << 20  # bytes hashed at a time by one thread


def holds_tensors(value: Any) -> bool:
    """Whether ``value`` (a tensor, or a dict, list or tuple of them, nested) holds any tensor."""
    return any(isinstance(leaf, torch.Tensor) for _, leaf in _leaves(value, ""))


def checksum(value: Any) -> str:
    """The SHA-256 of ``value`` (see the module's docstring), as hex text. The tensors are read in
    place (a memoryview of their bytes, on the CPU): no copies."""
    if not holds_tensors(value):
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
        except TypeError:  # keys JSON has no text for (a tuple): the leaves' repr, as in tensors' entries
            text = None
        if text is not None:
            return hashlib.sha256(text.encode()).hexdigest()
    total = hashlib.sha256()
    threads = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        for place, leaf in _leaves(value, ""):
            if isinstance(leaf, torch.Tensor):  # one at a time: a GPU tensor's copy is let go before the next
                total.update(f"{place}\0tensor\0{leaf.dtype}\0{tuple(leaf.shape)}\0".encode())
                pieces = _pieces(leaf)
                for digest in pool.map(_digest, pieces) if len(pieces) > 1 else map(_digest, pieces):
                    total.update(digest)
            else:
                total.update(f"{place}\0{type(leaf).__name__}\0{leaf!r}\0".encode())
    return total.hexdigest()


def first_non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def _leaves(value: Any, place: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{place}/{key!r}")
    elif isinstance(value, (list, tuple)):
        yield f"{place}/{type(value).__name__}[{len(value)}]", None  # a list of 2 is not a list of 3
        for i, item in enumerate(value):
            yield from _leaves(item, f"{place}/{i}")
    else:
        yield place, value


def _pieces(tensor: torch.Tensor) -> list[memoryview]:
    """The tensor's bytes as memoryviews of at most PIECE bytes (one empty view for an empty tensor)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")
    return [raw[start : start + PIECE] for start in range(0, len(raw), PIECE)] or [raw]


def _digest(piece: memoryview) -> bytes:
    return hashlib.sha256(piece).digest()
