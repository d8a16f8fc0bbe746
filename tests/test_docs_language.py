"""The language page covers the language: every layer kind's word and every attribute it takes.

The kinds live in vggspec/spec/layers.py (LAYER_KINDS); a kind or an attribute added there without a word
on docs/language.md fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vggspec.spec.layers import LAYER_KINDS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "language.md"


def _code_spans() -> set[str]:
    """What the page shows as code: its inline spans and the lines of its code blocks."""
    text = PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M))
    return {*spans, *(line for block in blocks for line in block.splitlines())}


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_layer_kind_is_on_the_language_page(kind: str) -> None:
    cls = LAYER_KINDS[kind]
    words = [example for example in cls.EXAMPLES if "{" not in example]
    shown = _code_spans()
    assert any(word in span for word in words for span in shown), (
        f"docs/language.md shows no spelling of the layer kind '{kind}' ({', '.join(words)}) as code"
    )


@pytest.mark.parametrize(
    ("kind", "attribute"), [(kind, name) for kind, cls in sorted(LAYER_KINDS.items()) for name in cls.ATTRIBUTES]
)
def test_every_attribute_is_on_the_language_page(kind: str, attribute: str) -> None:
    written = re.compile(rf"\[(?:[^\]]*[,\s])?{re.escape(attribute)}(?:=[^\],]+)?[,\]]|^{re.escape(attribute)}$")
    assert any(written.search(span) for span in _code_spans()), (
        f"docs/language.md shows the attribute '{attribute}' of '{kind}' nowhere as code ([{attribute}=...] or "
        f"`{attribute}`)"
    )
