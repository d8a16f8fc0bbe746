"""The README and the docs site are tested like code: every example runs and prints what its page shows
(tools/doc_examples.py says how), and the site builds with every warning an error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_examples import ROOT, Block, ExampleFailed, Page, blocks, check_flags, normalise, output_matches, pages


@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_examples_run_as_the_page_shows(page: Path, tmp_path: Path) -> None:
    Page(page, tmp_path / "page").run()


def test_every_code_block_says_what_it_is() -> None:
    """A block without a language is neither run nor highlighted: each says console, pycon, vgg, text..."""
    unnamed = [block.where for page in pages() for block in blocks(page) if not block.language]
    assert not unnamed, f"code blocks with no language: {unnamed}"


def test_the_readme_and_tutorial_show_running_examples() -> None:
    for name, least in (("README.md", 3), ("docs/tutorial.md", 5)):
        run = [block for block in blocks(ROOT / name) if block.language == "console" and not block.not_run]
        assert len(run) >= least, f"{name}: {len(run)} console examples run, expected {least} or more"


def test_the_docs_build_strict(tmp_path: Path) -> None:
    """Warnings are errors: a broken link between pages, a missing anchor, a bad docstring fail."""
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "index.html").exists()


def test_the_readmes_links_lead_somewhere() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path = target.split("#")[0]
        assert (ROOT / path).exists(), f"README links to {target}, which is not in the repository"


# -- the runner itself: a page that is wrong fails --------------------------------------------------------


def _page(tmp_path: Path, text: str) -> Page:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return Page(path, tmp_path / "folder")


def test_a_changed_number_fails(tmp_path: Path) -> None:
    page = "```console\n$ vggspec list A-LRN\n...\nA-LRN ... 132,863,336  7.61 G\n```\n"
    _page(tmp_path, page).run()
    with pytest.raises(ExampleFailed, match="printed"):
        _page(tmp_path, page.replace("7.61 G", "7.62 G")).run()


def test_an_exit_code_is_part_of_the_example(tmp_path: Path) -> None:
    page = "```console\n$ vggspec analyze nothing.vgg{}\n...\n```\n"
    _page(tmp_path, page.format("  # exits 2")).run()
    with pytest.raises(ExampleFailed, match="exited 2"):
        _page(tmp_path, page.format("")).run()


def test_files_the_page_shows_are_written_before_the_commands(tmp_path: Path) -> None:
    page = '```vgg title="net.vgg"\ninput: 16x16 RGB\n\nconv3-8\nmaxpool\nFC-3\nsoft-max\n```\n\n'
    page += "```console\n$ vggspec fmt --check net.vgg\n```\n"
    _page(tmp_path, page).run()


def test_a_command_continued_with_a_backslash_is_one_command(tmp_path: Path) -> None:
    _page(tmp_path, "```console\n$ echo one \\\n  two\none two\n```\n").run()


def test_examples_not_run_still_meet_the_parser(tmp_path: Path) -> None:
    good = Block(tmp_path / "p.md", 1, "bash", "torchrun --nproc-per-node 8 -m vggspec train D --data imagenet\n")
    assert check_flags(good) == 1
    bad = Block(tmp_path / "p.md", 1, "console", "$ vggspec train D --data imagenet --gpux 8\n")
    with pytest.raises(ExampleFailed, match="refuses|has no"):
        check_flags(bad)
    marked = "<!-- not run: needs a GPU -->\n```console\n$ vggspec train D --data x --flipz\n```\n"
    with pytest.raises(ExampleFailed):
        _page(tmp_path, marked).run()


def test_pycon_examples_are_doctests(tmp_path: Path) -> None:
    _page(tmp_path, "```pycon\n>>> 6 * 7\n42\n```\n").run()
    _page(tmp_path, "```pycon\n>>> x = 6\n```\n\n```pycon\n>>> x * 7\n42\n```\n").run()  # one namespace a page
    with pytest.raises(ExampleFailed):
        _page(tmp_path, "```pycon\n>>> 6 * 7\n43\n```\n").run()


@pytest.mark.parametrize(
    ("shown", "printed", "same"),
    [
        ("done: 2 epochs in 2 s.", "done: 2 epochs in 14.3 s.", True),
        ("780 images/s (data wait 37%)", "1.02k images/s (data wait 3%)", True),
        ("took 3m07s", "took 59.1 s", True),
        ("val top-1 error 62.50%", "val top-1 error 62.51%", False),
        ("a\n...\nd", "a\nb\nc\nd", True),
        ("a\n...\nd", "a\nd", True),
        ("a ... d", "a b c d", True),
        ("a\nb", "a\nb\nc", False),
    ],
)
def test_the_normalisation_rule(shown: str, printed: str, same: bool) -> None:
    assert output_matches(normalise(shown), normalise(printed)) is same
