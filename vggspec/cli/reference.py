"""The command line as Markdown (MyST) pages, written from the argparse parser itself: a command's
description, usage, arguments in their help groups (option strings, value, default, help) and exit codes.
docs/generate.py writes the site's command reference with it at every build, so that the reference cannot
drift from ``--help``; like the completion scripts (completion.py), it reads what argparse keeps of each
argument.

Text is escaped for Markdown (``|``, ``<``, ``*``, ``_``...), values are code spans, and a flag named in a
help text (``--input``) is set as code too."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping, Sequence

from .common import EXIT_CODES_TITLE
from .completion import commands_of

USAGE_WIDTH = 88  # the synopsis's lines, as a terminal this wide shows them

# A default that the help text says, short enough for the table's default column: "(default: 0.01)".
_SAID_DEFAULT = re.compile(r"\s*\(default: (?P<value>[^();]{1,60})\)")
# A default the help says as the paper's ("at most this many epochs (the paper: 74)"): shown, the help kept.
_PAPERS_DEFAULT = re.compile(r"\(the paper: (?P<value>[^();]{1,20})\)")
# In a help text, what reads better as code: a vggspec command quoted or in brackets, a flag, a path of a run or
# data folder.
_CODE_WORDS = re.compile(
    r"'(?P<command>vggspec [^']+)'|(?<=\()(?P<aside>vggspec [^()]+)(?=\))"
    r"|(?<![\w-])(?P<flag>--?[A-Za-z](?:[\w-]*[A-Za-z0-9])?)"
    r"|\b(?P<path>[A-Z]{2,}(?:/[\w.<>*\[\]-]*[\w>*\]])+)"
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_<>\[\]|&#~$])")


# -- Markdown text ------------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """``text`` as it reads, in a paragraph or a table cell: every character Markdown (or a table) would take
    for syntax, escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def code(text: str) -> str:
    """``text`` as a code span that a table cell can hold (its ``|`` escaped; backticks in it fenced off)."""
    text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def prose(text: str, options: Iterable[str] = ()) -> str:
    """A help text or a description as one Markdown line: escaped, with the vggspec commands it quotes, the
    flags it names and folder paths (``RUN/last.pt``) as code. A one-letter flag (``-o``) is code only if it is
    one of ``options``, since ``-s`` might be anything."""
    known, text = set(options), " ".join(text.split())
    pieces, start = [], 0
    for match in _CODE_WORDS.finditer(text):
        word = match["command"] or match["aside"] or match["path"] or match["flag"]
        if match["flag"] and not word.startswith("--") and word not in known:
            continue  # -s: a flag of another command, or a dash
        if match["path"] and not re.search(r"[a-z<*]", word):
            continue  # KB/MB/GB: units, not a folder
        pieces += [escape(text[start : match.start()]), code(word)]
        start = match.end()
    return "".join(pieces) + escape(text[start:])


# -- one command's page -------------------------------------------------------------------------------------


def markdown_reference(parser: argparse.ArgumentParser, name: str, exit_codes: Mapping[int, str] | None = None) -> str:
    """The page of the command ``name`` (its sub-parser ``parser``): title, description, synopsis, a table of
    arguments per help group, and the exit codes."""
    options = [s for action in parser._actions for s in action.option_strings]
    lines = [f"# vggspec {name}", "", *_text_block(parser, parser.description, options)]
    lines += ["## Synopsis", "", "```text", usage(parser).rstrip(), "```", ""]
    for group in parser._action_groups:
        shown = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not shown:
            continue
        lines += [f"## {group.title[:1].upper()}{group.title[1:]}", ""]
        if group.description:
            lines += [prose(group.description, options), ""]
        lines += arguments_table(parser, shown, options) + [""]
    if parser.epilog and not parser.epilog.startswith(EXIT_CODES_TITLE):  # those are the table below
        lines += _text_block(parser, parser.epilog, options)
    lines += exit_codes_table(exit_codes or {}, options)
    return "\n".join(lines)


def exit_codes_table(exit_codes: Mapping[int, str], options: Iterable[str] = ()) -> list[str]:
    """The "Exit codes" section: a row per status and what it means (none given: no section)."""
    if not exit_codes:
        return []
    rows = [f"| {code(str(number))} | {prose(meaning, options)} |" for number, meaning in exit_codes.items()]
    return ["## Exit codes", "", "| code | meaning |", "|---:|---|", *rows, ""]


def usage(parser: argparse.ArgumentParser) -> str:
    """``usage: vggspec NAME ...`` as --help prints it, at :data:`USAGE_WIDTH` columns whatever the terminal."""
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help()


def arguments_table(
    parser: argparse.ArgumentParser, actions: Sequence[argparse.Action], options: Iterable[str] = ()
) -> list[str]:
    """A Markdown table, a row per argument: its option strings (or its name), its value, its default, its
    help with argparse's ``%(default)s`` and the like expanded."""
    rows = ["| argument | value | default | description |", "|---|---|---|---|"]
    formatter = parser._get_formatter()
    for action in actions:
        help_text = formatter._expand_help(action) if action.help else ""
        default, help_text = default_and_help(action, help_text)
        names = action.option_strings or [_positional_name(action)]
        rows.append(
            f"| {', '.join(code(n) for n in names)} | {_value(formatter, action)} | {default} "
            f"| {prose(help_text, options)} |"
        )
    return rows


def default_and_help(action: argparse.Action, help_text: str) -> tuple[str, str]:
    """The default column's cell for ``action``, and its help without the "(default: X)" the column now says.

    argparse's own default where there is one; else the one the help says, if short (train's flags default to
    None, their settings' defaults applying, and say them in their help: "(default: 0.01)", "(the paper: 74)").
    A switch of ``--x/--no-x`` shows the spelling in effect; a plain switch (``--check``), off unless given,
    shows nothing; a flag that must be given says so."""
    if action.required and action.option_strings:
        return "required", help_text
    said = _SAID_DEFAULT.search(help_text)
    value = action.default
    if value is None or value == argparse.SUPPRESS or _is_plain_switch(action):
        value = None
    if value is None and said:
        value = {"True": True, "False": False}.get(said["value"], said["value"]) if action.nargs == 0 else said["value"]
    if value is None and (papers := _PAPERS_DEFAULT.search(help_text)):
        value = papers["value"]
    if said and str(value) == said["value"]:
        help_text = (help_text[: said.start()] + help_text[said.end() :]).strip()
    if value is None:
        return "", help_text
    if isinstance(action, argparse.BooleanOptionalAction) and isinstance(value, bool):
        return code(action.option_strings[0 if value else -1]), help_text
    if isinstance(value, (list, tuple)):
        return " ".join(code(str(v)) for v in value), help_text
    value = str(value)
    return (code(value) if value and " " not in value else escape(value or '""')), help_text


def _is_plain_switch(action: argparse.Action) -> bool:
    """``--x`` alone (store_true, store_false, store_const): what it does when given is its help."""
    return action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)


def _value(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """What the argument takes: its choices, its metavar (``[SIZE]`` when optional, ``FILE ...`` when many),
    or nothing for a switch."""
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return ", ".join(code(str(choice)) for choice in action.choices)
    if not action.option_strings:
        return {"?": "optional", "*": "any number", "+": "one or more"}.get(str(action.nargs), "")
    return code(formatter._format_args(action, action.dest.upper()))


def _positional_name(action: argparse.Action) -> str:
    return action.metavar if isinstance(action.metavar, str) else action.dest


def _text_block(parser: argparse.ArgumentParser, text: str | None, options: Iterable[str]) -> list[str]:
    """A description or epilog: a paragraph, or the lines as written where the parser keeps them so."""
    if not text:
        return []
    text = text % {"prog": parser.prog} if "%(prog)" in text else text
    if issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
        return ["```text", text.strip("\n"), "```", ""]
    return [prose(text, options), ""]


# -- the page of all commands -------------------------------------------------------------------------------


def markdown_commands(parser: argparse.ArgumentParser, exit_codes: Mapping[int, str] | None = None) -> str:
    """The program's page: its description, a table of the commands (a link to each one's page, NAME.md, and
    its one-line help), the program's own options and exit codes, and a toctree of the commands' pages."""
    commands = commands_of(parser)
    options = [s for action in parser._actions for s in action.option_strings]
    lines = ["# Commands", "", *_text_block(parser, parser.description, options)]
    lines += ["```text", usage(parser).rstrip(), "```", "", "| command | what it does |", "|---|---|"]
    lines += [
        f"| [{code(f'vggspec {name}')}]({name}.md) | {prose(about, options)} |" for name, (about, _) in commands.items()
    ]
    own = [a for a in parser._actions if not isinstance(a, argparse._SubParsersAction)]
    lines += ["", "## Options of vggspec itself", "", *arguments_table(parser, own, options), ""]
    lines += exit_codes_table(exit_codes or {}, options)
    lines += ["```{toctree}", ":hidden:", "", *commands, "```", ""]
    return "\n".join(lines)
