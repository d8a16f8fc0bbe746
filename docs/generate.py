"""The pages the docs build writes from the code itself (docs/conf.py calls :func:`write_pages` at every
build, into docs/generated/, which is not committed): what the code says is what the site says.

- the pages kept at the repository's root (benchmarks, architecture, changelog), their links into the
  repository pointed at the source.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "https://github.com/vggspec/vggspec/blob/main/"

# Root files shown as pages.
ROOT_PAGES = {"benchmarks.md": "BENCHMARKS.md", "architecture.md": "ARCHITECTURE.md", "changelog.md": "CHANGELOG.md"}


def root_page(name: str) -> str:
    """A root file as a page: a relative link to a file of the repository becomes a link to its source;
    one into docs/ stays a link between pages."""
    text = (ROOT / name).read_text(encoding="utf-8")

    def to_source(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"[a-z]+:|#", target):
            return match[0]
        if target.startswith("docs/") and target.endswith(".md") or ".md#" in target and target.startswith("docs/"):
            return f"](../{target.removeprefix('docs/')})"
        return f"]({SOURCE}{target})"

    return re.sub(r"\]\((?P<target>[^)\s]+)\)", to_source, text)


def write(path: Path, text: str) -> None:
    """Write a page only when it changed, so that Sphinx reads again only what did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_pages(out: Path) -> None:
    for page, source in ROOT_PAGES.items():
        write(out / page, root_page(source))
