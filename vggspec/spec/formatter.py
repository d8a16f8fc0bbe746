"""Spec → canonical text. ``parse(format_spec(spec)) == spec`` for every spec.

The canonical form: the header comments, ``name:`` (if any), ``input:`` (always, so the
default is visible), a blank line, then one line per run of identical layers (``conv3-512 ×3``),
with attributes that differ from their defaults in brackets. Other comments stay next to the
layers they were written beside.
"""

from __future__ import annotations

import hashlib

from ..errors import source_lines
from .layers import LayerSpec
from .spec import Spec


def format_spec(spec: Spec) -> str:
    """``spec`` as canonical text, what ``vggspec fmt`` prints: header comments, ``name:``, ``input:``, then a line
    per run of equal layers (``conv3-512 ×3``), other comments beside their layers."""
    standalone = [c for c in spec.comments if not c.trailing and not c.leading]
    trailing = {c.line: c.text for c in spec.comments if c.trailing}
    out = [c.text for c in spec.comments if c.leading]
    if spec.name is not None:
        out.append(_with_comment(f"name: {spec.name}", trailing.pop(_name_line(spec), None)))
    out.append(_with_comment(f"input: {spec.input.describe()}", trailing.pop(spec.input.line, None)))
    out.append("")

    runs = _runs(spec.layers, {c.line for c in standalone})
    pending = sorted(standalone, key=lambda c: c.line)
    for first, last, count in runs:
        while pending and pending[0].line < first.line:
            out.append(pending.pop(0).text)
        text = format_layer(first) + (f" ×{count}" if count > 1 else "")
        lines = {first.line, last.line}
        comment = next((trailing.pop(line) for line in sorted(lines) if line in trailing), None)
        out.append(_with_comment(text, comment))
    out.extend(c.text for c in pending)
    out.extend(trailing.values())  # comments on lines no longer printed (e.g. a name line)
    return "\n".join(out).rstrip("\n") + "\n"


def format_layer(layer: LayerSpec) -> str:
    """``conv3-64``, ``conv3-64 [bn]``, ``FC-4096 [dropout=0.2]``."""
    attributes = layer.attributes()
    if not attributes:
        return layer.word()
    inner = ", ".join(key if value is True else f"{key}={_value(value)}" for key, value in attributes.items())
    return f"{layer.word()} [{inner}]"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _runs(layers: tuple[LayerSpec, ...], comment_lines: set[int]) -> list[tuple[LayerSpec, LayerSpec, int]]:
    """Consecutive identical layers, not split by a comment, become one ``×N`` line."""
    runs: list[tuple[LayerSpec, LayerSpec, int]] = []
    for layer in layers:
        if runs:
            first, last, count = runs[-1]
            split = any(last.line < line < layer.line for line in comment_lines)
            if layer.same_as(first) and not split:
                runs[-1] = (first, layer, count + 1)
                continue
        runs.append((layer, layer, 1))
    return runs


def _name_line(spec: Spec) -> int:
    if spec.text is None or spec.name is None:
        return -1
    for number, line in enumerate(source_lines(spec.text), start=1):
        if line.strip().startswith("name") and spec.name in line:
            return number
    return -1


def _with_comment(text: str, comment: str | None) -> str:
    return f"{text}  {comment}" if comment else text


def spec_hash(spec: Spec) -> str:
    """A fingerprint of the network: its canonical text without comments (formatting-proof), so that a renamed
    file or a new comment is the same network. Checkpoints store it; a study keys its cells by it."""
    bare = spec.model_copy(update={"comments": (), "source": None})
    return hashlib.sha256(format_spec(bare).encode()).hexdigest()
