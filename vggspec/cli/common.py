"""What several commands share: their common arguments (one definition and one help text each), the flags
generated from the configuration models, and the helpers their handlers call."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ..errors import SpecError
from ..logs import quiet_torch_native_logs
from ..run.config import EvaluateConfig, Rendezvous, TrainConfig, class_count, machines
from ..spec.bundled import paper_specs, spec_files
from ..spec.initialisation import parse_init
from ..spec.parser import load
from ..spec.spec import Spec

Commands = argparse._SubParsersAction  # what add_subparsers returns: add_parser(name, ...) per command
Arguments = argparse.ArgumentParser | argparse._ArgumentGroup  # where add_argument adds: a parser or a group of it


# -- exit codes: each command's table (its module's EXIT_CODES), the end of its --help -------

ExitCodes = dict[int, str]
"""A command's exit codes (:class:`~vggspec.errors.ExitCode` values) → what each means for that command."""

EXIT_CODES_TITLE = "exit codes:"
CODE_COLUMN = 7  # where a code's meaning starts: "  130  interrupted (Ctrl-C)"
INTERRUPTED = "interrupted (Ctrl-C)"  # what 130 means to a command that stops at once, having written nothing


def exit_codes_text(table: Mapping[int, str | Sequence[str]]) -> str:
    """The ``exit codes:`` paragraph of a --help: a line per code, in order (several lines where a code means
    another thing to each of several commands), wrapped by :class:`ExitCodesLayout`."""
    lines = [EXIT_CODES_TITLE]
    for code in sorted(table):
        meanings = [table[code]] if isinstance(table[code], str) else list(table[code])
        for i, meaning in enumerate(meanings):
            lines.append(f"  {int(code) if i == 0 else '':<{CODE_COLUMN - 2}}{meaning}")
    return "\n".join(lines)


class ExitCodesLayout(argparse.HelpFormatter):
    """argparse's help, but for a closing ``exit codes:`` paragraph (:func:`exit_codes_text`): kept a line per
    code, each meaning wrapped beside its code, where argparse would run the table into one paragraph."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        before, title, table = text.partition(EXIT_CODES_TITLE)
        if not title or (before and not before.endswith("\n\n")):
            return super()._fill_text(text, width, indent)
        parts = [super()._fill_text(before, width, indent)] if before.strip() else []
        lines = [indent + title]
        for line in table.strip("\n").split("\n"):
            lines.append(
                textwrap.fill(
                    line[CODE_COLUMN:],
                    width,
                    initial_indent=indent + line[:CODE_COLUMN],
                    subsequent_indent=indent + " " * CODE_COLUMN,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        return "\n\n".join([*parts, "\n".join(lines)])


def with_exit_codes_layout(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` (a command's own: completion's keeps its description's lines) that lays out exit codes too."""
    if issubclass(formatter, ExitCodesLayout):
        return formatter
    if formatter is argparse.HelpFormatter:
        return ExitCodesLayout
    return type(f"ExitCodes{formatter.__name__}", (ExitCodesLayout, formatter), {})


# -- arguments that several commands share: one definition and one help text each -----------

SPECS_HELP = (
    "spec files, directories of them, or bundled specs by name (D, small/A-narrow-32); "
    "default: Table 1's A, A-LRN, B, C, D, E"
)
SPEC_HELP = "a spec file, or a bundled spec by name (E)"
INPUT_HELP = (
    "work at N×N inputs instead of the spec's declared size (e.g. 384, a dense-evaluation scale): analyze and "
    "graph give the shapes there; compile, with --dense and no -o, runs the network on such images"
)

NUM_CLASSES_HELP = (
    "classify into N classes: the spec's last FC layer gets N outputs, whatever it says (auto, train's count of "
    "a training set's class folders, has no data to count here)"
)


def add_specs_argument(p: Arguments) -> None:
    p.add_argument("specs", nargs="*", metavar="SPEC", help=SPECS_HELP)


def add_spec_argument(p: Arguments) -> None:
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)


def add_input_option(p: Arguments) -> None:
    p.add_argument("--input", type=positive_int, metavar="N", help=INPUT_HELP)


def add_init_option(p: Arguments, *, default: str | None) -> None:
    """``--init NAME``: train's field, with this command's default (none: analyze's RMS column stays off)."""
    add_field_option(p, "init", TrainConfig.model_fields["init"], default=default, default_note=_note(default))


def add_num_classes_option(p: argparse.ArgumentParser) -> None:
    """``--num-classes N`` of the commands without data (compile, analyze): train's spelling, auto refused by
    :func:`fixed_class_count` in one line."""
    p.add_argument("--num-classes", type=_class_count, metavar="N", help=NUM_CLASSES_HELP)


def fixed_class_count(args: argparse.Namespace, command: str) -> int | None:
    """``--num-classes`` of a command that reads no images: N, or None; ``auto`` has nothing to count."""
    if args.num_classes == "auto":
        raise SpecError(
            f"--num-classes auto counts the class folders of a training set, and {command} reads none: "
            "give the number of classes (--num-classes 10)"
        )
    return args.num_classes


def _class_count(text: str) -> int | str:
    try:
        return class_count(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _init_spelling(text: str) -> str:
    try:
        return parse_init(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_flip_option(p: Arguments) -> None:
    """``--flip/--no-flip`` as evaluate has it, with its default: on."""
    field = EvaluateConfig.model_fields["flip"]
    add_field_option(p, "flip", field, default=field.default)


def add_weights_classes_option(p: Arguments) -> None:
    """``--num-classes N`` as evaluate has it: the classes of --weights, where SPEC says another number."""
    add_field_option(p, "num_classes", EvaluateConfig.model_fields["num_classes"])


def add_dtype_option(p: Arguments) -> None:
    """``--dtype`` as evaluate has it, with its default: float32."""
    field = EvaluateConfig.model_fields["dtype"]
    add_field_option(p, "dtype", field, default=field.default)


# -- flags generated from a configuration model ---------------------------------------------


FlagGroups = dict[str, tuple[str, tuple[str, ...]]]
"""How --help groups a model's flags: title → (a line that says what the group is for, its fields in order)."""


def add_model_options(
    p: argparse.ArgumentParser, model: type[BaseModel], groups: FlagGroups
) -> dict[str, argparse._ArgumentGroup]:
    """One flag (or positional argument) per field of ``model``, so that --help and the settings cannot
    disagree. Flags default to None: what was not given stays out, and the model's defaults apply.

    Each flag goes in its group of ``groups`` (a table kept by the command, so that the models need not know
    how --help reads); positional arguments stay where argparse shows them. A field no group names is added
    to the general options, where tests/test_help.py finds it: a new setting cannot be forgotten. Returns the
    groups by title, for the command's own flags that belong in one."""
    fields = model.model_fields
    grouped = {name for _, names in groups.values() for name in names}
    for name, field in fields.items():
        if name not in grouped or _is_positional(field):
            add_field_option(p, name, field)
    made = {}
    for title, (description, names) in groups.items():
        group = made[title] = p.add_argument_group(title, description)
        for name in names:
            if name in fields and not _is_positional(fields[name]):  # a stale name: the test says so
                add_field_option(group, name, fields[name])
    return made


def ungrouped_fields(model: type[BaseModel], groups: FlagGroups) -> list[str]:
    """The flags of ``model`` in no group (or named in several, or in none that exists): what the groups miss."""
    named = [name for _, names in groups.values() for name in names]
    flags = [name for name, field in model.model_fields.items() if not _is_positional(field)]
    missing = [name for name in flags if named.count(name) != 1]
    return missing + [name for name in named if name not in flags]


def _is_positional(field: FieldInfo) -> bool:
    return "nargs" in _command_line(field)


def _command_line(field: FieldInfo) -> dict[str, Any]:
    return (field.json_schema_extra or {}).get("command_line", {})  # see config.command_line


def add_field_option(
    p: Arguments,
    name: str,
    field: FieldInfo,
    *,
    default: object = None,
    default_note: str | None = None,
) -> argparse.Action:
    """The command-line form of one field: its type or choices, and its description and default as help.
    ``default`` is what argparse fills in; ``default_note`` overrides what the help says of the default.
    A description that already says its default gets no note: the default is said once."""
    how = _command_line(field)
    description = (field.description or "").replace("%", "%%")  # argparse formats help with %
    if "nargs" in how:
        return p.add_argument(name, nargs=how["nargs"], metavar=how.get("metavar"), help=description)
    if default_note is None:
        default_note = how.get("default_note") or ("(required)" if field.is_required() else _note(field.default))
    if not field.is_required() and says_its_default(description, field.default if default is None else default):
        default_note = ""
    help_text = f"{description} {default_note}".strip()
    flag = "--" + how.get("flag", name).replace("_", "-")
    kind, choices = _flag_type(field.annotation)
    if kind is bool:
        return p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    if choices:
        return p.add_argument(flag, dest=name, choices=choices, default=default, help=help_text)
    metavar = how.get("metavar", name.split("_")[-1].upper())
    kind = {"init": _init_spelling, "num_classes": _class_count}.get(name, kind)  # a bad value said as it is read
    return p.add_argument(flag, dest=name, type=kind, default=default, metavar=metavar, help=help_text)


def _note(default: object) -> str:
    """What --help says of a default: nothing for none."""
    return "" if default is None else f"(default: {default})"


def says_its_default(description: str, default: object) -> bool:
    """Whether a flag's description already says its default: "by default ...", "auto (the default)", or
    "(the paper: 74)" where 74 is the default. Then "(default: 74)" after it would say it twice."""
    return bool(re.search(r"\bby default\b|\(the default\)", description)) or f"(the paper: {default})" in description


def _flag_type(annotation: object) -> tuple[type, list[str]]:
    """(type, choices) of a field: Optional[...] unwrapped, Literal[...] as choices."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(typing.get_args(annotation))
    return annotation if annotation in (bool, int, float) else str, []


def given(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, object]:
    """The settings of ``model`` given on the command line (flags not given are None)."""
    return {key: value for key, value in vars(args).items() if key in model.model_fields and value is not None}


# -- helpers -------------------------------------------------------------------------------


def load_all(names: list[str]) -> tuple[list[Spec], bool]:
    """Specs from files and directories (all .vgg files in it); none given: Table 1's six."""
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = spec_files(path)
            if not found:
                raise SpecError(f"no .vgg spec files in {path}")
            paths.extend(found)
        else:
            paths.append(path)
    if not names:
        paths = paper_specs()
    specs, failed = [], False
    for path in paths:
        try:
            specs.append(load(path))
        except SpecError as err:
            print(err, file=sys.stderr)
            failed = True
    return specs, failed


def file_in_the_way(err: OSError) -> Path | None:
    """The file standing where a folder of ``err.filename``'s path should be (mkdir's EEXIST, open's ENOTDIR)."""
    if not err.filename or not isinstance(err, (FileExistsError, NotADirectoryError)):
        return None
    path = Path(err.filename)
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if candidate.is_file() else None
    return None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def need_torch(what: str) -> None:
    """PyTorch is importable, or one line saying ``what`` needs it and how to install it (it is an extra: the
    analysis commands run without it)."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise SpecError(f"{what} needs PyTorch: pip install 'vggspec[torch]' ({err})") from None


@contextmanager
def told_to_the_machines(values: dict[str, Any]) -> Iterator[None]:
    """Bad input this machine finds before it starts its processes, told to the other machines of ``--nnodes``
    (which would wait for it at the rendezvous): torch is imported for it only then."""
    try:
        yield
    except SpecError as err:
        try:
            several = machines(Rendezvous.model_validate(values))
        except (SpecError, ValidationError):  # the rendezvous flags themselves: nobody to tell
            raise err from None
        if not several.several:
            raise
        quiet_torch_native_logs()
        try:
            from ..run.distributed import tell_the_machines
        except ImportError:  # no torch here: it is said when this machine runs
            raise err from None
        tell_the_machines(err, several, gpu=bool(values.get("gpus")))
