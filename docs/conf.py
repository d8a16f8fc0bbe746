"""Sphinx's settings for the docs site: ``python -m sphinx -W --keep-going docs DIR`` builds it strictly,
as tests/test_docs.py does (every warning, a broken link or anchor among them, fails the build).

The pages are Markdown (MyST), written by hand, except docs/generated/, which docs/generate.py writes at
every build from the code itself (a page per command from the parsers, a page per bundled spec, the
gallery): what the code says is what the site says.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this tree's vggspec, installed or not
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

import vggspec  # noqa: E402

project = "vggspec"
author = "the vggspec authors"
copyright = "2026, the vggspec authors"  # noqa: A001
release = version = vggspec.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx_copybutton"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist", "attrs_block"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links to headings, checked like any other link
suppress_warnings: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options: dict[str, object] = {}  # members only where a directive lists them



html_theme = "furo"
html_title = f"vggspec {version}"
html_static_path = ["generated/_static"]  # written by generate.py: vggspec.css
html_css_files = ["vggspec.css"]
copybutton_prompt_text = r"\$ |>>> |\.\.\. "  # the copy button copies commands, not prompts or output
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True


class VggLexer(RegexLexer):
    """The .vgg language, for ```` ```vgg ```` blocks: comments, ``name:``/``input:``, layer words, attributes
    (``[bn]``), repeats (``×3``). Colours only: vggspec's parser (vggspec/spec/grammar.lark) is the language."""

    name = "vgg"
    aliases = ["vgg"]
    filenames = ["*.vgg"]
    tokens = {
        "root": [
            (r"#.*?$", Comment.Single),
            (r"^(name)(\s*:\s*)([^#\n]*)", bygroups(Keyword, Punctuation, String)),
            (r"^input\b", Keyword),
            (r"\b(?i:rgb|gray|grey|grayscale|greyscale|channels?|image)\b", Keyword.Type),
            (r"\[[^\]\n]*\]", Name.Attribute),
            (r"(?<=\s)[x×*]\s*\d+", Operator),
            (r"\d+(?:[x×]\d+)?", Number),
            (r"[A-Za-z][\w.-]*", Name.Function),
            (r"[,:()×]", Punctuation),
            (r"\s+", Whitespace),
            (r".", Text),
        ]
    }


def setup(app) -> None:
    app.add_lexer("vgg", VggLexer)


generate.write_pages(HERE / "generated")
