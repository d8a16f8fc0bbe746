"""The pages docs/generate.py writes from the code: a page per command from the parser (vggspec.cli.reference),
read back with MyST's own Markdown parser, and a page per bundled spec. Fast: no Sphinx build (test_docs.py
builds the site), no training run."""

from __future__ import annotations

import argparse
import html
import importlib.util
import re
from html.parser import HTMLParser

import pytest
from markdown_it.renderer import RendererHTML
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.mdit import create_md_parser

from vggspec import cli
from vggspec.cli.completion import commands_of
from vggspec.cli.reference import code, escape, markdown_commands, markdown_reference, prose
from vggspec.errors import ExitCode

from .conftest import ROOT

COMMANDS = commands_of(cli._parser())


def _generate():
    """docs/generate.py, as docs/conf.py imports it."""
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generate()


class _Tables(HTMLParser):
    """The rows of every table of a rendered page, each a list of its cells' texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rendered(markdown: str) -> str:
    """The page as the site's MyST parser renders it (HTML)."""
    config = MdParserConfig(enable_extensions={"colon_fence", "deflist", "attrs_block"})
    return create_md_parser(config, RendererHTML).render(markdown)


def table_rows(markdown: str) -> list[list[str]]:
    tables = _Tables()
    tables.feed(rendered(markdown))
    return tables.rows


def row_of(rows: list[list[str]], option: str) -> list[str]:
    """The arguments-table row whose first cell names ``option``."""
    found = [row for row in rows if option in [name.strip() for name in row[0].split(",")]]
    assert len(found) == 1, (option, found)
    return found[0]


def _toy(default: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vggspec toy", description="A toy command. Exit codes: 0 done.")
    parser.add_argument("spec", metavar="SPEC", help="a spec")
    parser.add_argument("--top", type=int, default=default, metavar="K", help="classes shown (default: %(default)s)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="one of %(choices)s")
    parser.add_argument("--check", action="store_true", help="check | do not <write> *anything* in DATA/<class>/*")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="mirror images")
    return parser


# -- a command's page ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_is_on_its_page_with_its_default(name):
    command = COMMANDS[name][1]
    page = markdown_reference(command, name, {0: "success", 2: "bad input"})
    rows = table_rows(page)
    assert page.startswith(f"# vggspec {name}\n")
    shown = [a for a in command._actions if a.help != argparse.SUPPRESS]
    for action in shown:
        for option in action.option_strings or [action.metavar or action.dest]:
            row = row_of(rows, option)
        default = action.default
        if action.option_strings and action.nargs != 0 and default not in (None, argparse.SUPPRESS):
            assert row[2] == str(default), (name, action.option_strings, row)
        said = re.search(r"\(default: ([^();]+)\)", action.help or "")
        if said and action.nargs != 0:
            assert said[1] in row[2] + row[3], (name, action.option_strings, row)
    assert len(rows) == len(shown) + len(command._action_groups) + 3 - _empty_groups(command)


def _empty_groups(command: argparse.ArgumentParser) -> int:
    return sum(not [a for a in g._group_actions if a.help != argparse.SUPPRESS] for g in command._action_groups)


def test_a_changed_default_changes_the_page():
    before = markdown_reference(_toy(5), "toy")
    after = markdown_reference(_toy(7), "toy")
    assert before != after
    assert row_of(table_rows(before), "--top")[2:] == ["5", "classes shown"]  # said once: in the default column
    assert row_of(table_rows(after), "--top")[2:] == ["7", "classes shown"]


def test_a_changed_default_of_a_real_command_changes_its_page():
    parser = cli._parser()
    predict = commands_of(parser)["predict"][1]
    top = next(a for a in predict._actions if "--top" in a.option_strings)
    assert row_of(table_rows(markdown_reference(predict, "predict")), "--top")[2] == "5"
    top.default = 9
    assert row_of(table_rows(markdown_reference(predict, "predict")), "--top")[2] == "9"


def test_help_is_expanded_as_argparse_expands_it():
    rows = table_rows(markdown_reference(_toy(), "toy"))
    assert row_of(rows, "--format")[1:] == ["text, json", "text", "one of text, json"]
    assert row_of(rows, "--flip")[2] == "--flip"  # a --x/--no-x pair: the spelling in effect
    assert row_of(rows, "--check")[2] == ""  # a plain switch: off unless given
    assert row_of(rows, "SPEC")[:3] == ["SPEC", "", ""]
    study = COMMANDS["study"][1]
    assert row_of(table_rows(markdown_reference(study, "study")), "--data")[2] == "required"


def test_markdown_characters_in_help_read_as_written():
    """A pipe does not split the cell, <write> is not taken for HTML, *anything* is not emphasis."""
    page = markdown_reference(_toy(), "toy")
    assert row_of(table_rows(page), "--check")[3] == "check | do not <write> *anything* in DATA/<class>/*"
    assert "<code>DATA/&lt;class&gt;/*</code>" in rendered(page)  # a folder path, as code
    for text in ("a|b", "<b>", "*x*", "_y_", "[z](w)", "`v`", "&amp;", "\\"):
        assert html.unescape(re.sub(r"<[^>]+>", "", rendered(escape(text)))).strip() == text
        assert table_rows(f"| a |\n|---|\n| {code(text)} |\n")[1] == [text]


def test_flags_and_commands_in_help_are_code():
    text = prose("with --dense and -o, as 'vggspec train --out RUN --resume' does; a -s is no flag", ["-o"])
    assert text == "with `--dense` and `-o`, as `vggspec train --out RUN --resume` does; a -s is no flag"
    assert prose("(vggspec predict D --top 3 cat.jpg)") == "(`vggspec predict D --top 3 cat.jpg`)"
    assert prose("in KB/MB/GB, to RUN/last.pt.") == "in KB/MB/GB, to `RUN/last.pt`."


def test_the_synopsis_is_the_usage_and_the_exit_codes_a_table():
    page = markdown_reference(_toy(), "toy", {0: "done", 3: "the loss diverged"})
    assert "## Synopsis\n\n```text\nusage: vggspec toy [-h] [--top K] [--format {text,json}]" in page
    exit_codes = page[page.index("## Exit codes") :]
    assert table_rows(exit_codes) == [["code", "meaning"], ["0", "done"], ["3", "the loss diverged"]]


def test_the_commands_page_links_every_command():
    page = markdown_commands(cli._parser(), {0: "ok"})
    toctree = page[page.index("```{toctree}") :]
    for name, (about, _) in COMMANDS.items():
        assert f"[`vggspec {name}`]({name}.md) | {prose(about)} |" in page
        assert f"\n{name}\n" in toctree


# -- exit codes: vggspec.cli.exit_codes, as --help says them ---------------------------------------------


def test_each_command_page_lists_the_exit_codes_its_help_ends_with():
    from vggspec.cli import exit_codes

    for name, (_, command) in COMMANDS.items():
        page = markdown_reference(command, name, exit_codes(name))
        rows = table_rows(page[page.index("## Exit codes") :])[1:]
        assert [int(row[0]) for row in rows] == list(exit_codes(name)), name
        assert {ExitCode.OK, ExitCode.BAD_INPUT} <= set(exit_codes(name)), name


def test_the_commands_page_lists_every_code_any_command_returns():
    from vggspec.cli import _parser, exit_codes

    every = exit_codes()
    assert set(every) == {code for name in COMMANDS for code in exit_codes(name)}
    page = markdown_commands(_parser(), every)
    assert [int(row[0]) for row in table_rows(page[page.index("Exit codes") :])[1:]] == sorted(every)


# -- a bundled spec's page ----------------------------------------------------------------------------------


def test_a_small_specs_page_has_its_text_numbers_and_column(tmp_path):
    from vggspec import analyze

    spec = generate.bundled_spec("small/A-narrow-32")
    analysis = analyze(spec)
    page = tmp_path / "generated" / "specs" / "small" / "A-narrow-32.md"
    text = generate.spec_page("small/A-narrow-32", spec, analysis, page, tmp_path / "conventions.md")
    assert spec.source == "specs/small/A-narrow-32.vgg"  # not this machine's path
    assert f"```vgg\n{spec.text.rstrip()}\n```" in text
    numbers = dict(row for row in table_rows(text) if len(row) == 2)
    assert numbers["parameters"].startswith(f"{analysis.params:,} ")
    assert numbers["MACs per image"].startswith(f"{analysis.macs:,} ")
    assert numbers["receptive field at pool5"].startswith("150 px")
    assert "](../../../conventions.md)" in text
    assert "![The layer graph of A narrow 32](A-narrow-32.svg)" in text
    assert "| A narrow 32 |" in text  # Table 1's column
    assert "## In the paper" not in text and "## In torchvision" not in text


def test_a_paper_specs_page_has_the_papers_and_torchvisions_numbers(tmp_path):
    from vggspec import analyze

    spec = generate.bundled_spec("D")
    text = generate.spec_page("D", spec, analyze(spec), tmp_path / "specs" / "D.md", tmp_path / "conventions.md")
    rows = table_rows(text)
    assert "Table 2: 138 million parameters; counted here, 138,357,544" in text
    assert ["256", "256", "27.0", "8.8"] in rows  # Table 3, S = 256
    assert ["[256, 512] (jittered)", "384", "25.6", "8.1"] in rows
    vgg16 = next(row for row in rows if row[0] == "vgg16")
    assert vgg16[2:] == ["138,357,544 (the same)", "28.41", "9.62", "15.47"]
    assert "15.47 for `vgg16`, which is this spec's 15.470 G MACs" in text  # torchvision's GFLOPS are MACs
