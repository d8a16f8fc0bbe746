"""--help as a manual: flags in groups, each default said once."""

import argparse
import re

import pytest

from vggspec import cli
from vggspec.cli import common, evaluate, main, train
from vggspec.run.config import EvaluateConfig, TrainConfig


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def _groups(command: argparse.ArgumentParser) -> dict[str, list[str]]:
    """--help's sections: title → the arguments in it (a flag by its first long name, a positional by metavar)."""
    return {
        group.title: [(a.option_strings[-1] if a.option_strings else a.metavar) for a in group._group_actions]
        for group in command._action_groups
    }


# -- help: every command, groups, defaults said once ---------------------------------------------------------

COMMANDS = ["list", "analyze", "compile", "train", "evaluate", "predict", "fmt", "table", "diff", "graph"]


def test_every_command_is_listed():
    assert list(_commands()) == COMMANDS


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_of_every_command_exits_0(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "80")
    text = _help(capsys, *([command] if command else []))
    assert text.startswith(f"usage: vggspec {command}".rstrip())
    body = text[text.index("\n\n") :]  # the usage aside: compile's --format choices are one word of 86 characters
    assert max(len(line) for line in body.splitlines()) <= 80


@pytest.mark.parametrize(
    "command, titles",
    [
        ("train", ["data", "schedule", "augmentation", "weights", "machines", "performance", "run"]),
        ("evaluate", ["networks", "data", "protocol", "output", "machines", "performance"]),
        ("analyze", ["numbers", "network", "output", "training budget"]),
    ],
)
def test_the_flags_of_the_long_commands_are_in_groups(capsys, monkeypatch, command, titles):
    """Every flag in a group of its kind; the general options keep only --help (and train's --config)."""
    parser = _commands()[command]
    groups = _groups(parser)
    assert list(groups) == ["positional arguments", "options", *titles]
    assert groups["options"] == (["--help", "--config"] if command == "train" else ["--help"])
    assert all(groups[title] for title in titles), groups
    assert all(not name.startswith("-") for name in groups["positional arguments"])
    every = [name for names in groups.values() for name in names]
    assert len(every) == len(set(every)) == len([a for a in parser._actions])  # each argument once
    monkeypatch.setenv("COLUMNS", "80")
    text = _help(capsys, command)
    for group in parser._action_groups[2:]:  # a short title, with a line that says what the group is for
        assert f"\n{group.title}:\n" in text and len(group.title) <= 20
        assert group.description and (group.title == "training budget" or len(group.description) <= 76)


@pytest.mark.parametrize("model, groups", [(TrainConfig, train.FLAG_GROUPS), (EvaluateConfig, evaluate.FLAG_GROUPS)])
def test_every_setting_has_a_group(model, groups):
    """A new field of the settings without a group in the command's table fails here (and lands in the
    general options, which test_the_flags_of_the_long_commands_are_in_groups refuses)."""
    assert common.ungrouped_fields(model, groups) == []

    class More(model):
        brand_new: int = 0

    assert common.ungrouped_fields(More, groups) == ["brand_new"]
    parser = argparse.ArgumentParser()
    common.add_model_options(parser, More, groups)
    assert _groups(parser)["options"] == ["--help", "--brand-new"]
    stale = {**groups, "gone": ("a field that was renamed", ("no_such_field",))}
    assert common.ungrouped_fields(model, stale) == ["no_such_field"]


# What says a flag's default: a note of argparse's or ours, the paper's value, "auto (the default)", "by default".
SAYS_DEFAULT = re.compile(r"\(default: |\(the paper: |\(the default\)|\bby default\b")


@pytest.mark.parametrize("command", COMMANDS)
def test_no_default_is_said_twice(capsys, command):
    parser = _commands()[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        help_text = formatter._expand_help(action) if action.help else ""
        assert len(SAYS_DEFAULT.findall(help_text)) <= 1, (action.option_strings, help_text)
    text = " ".join(_help(capsys, command).split())  # the whole help, as it is printed
    assert not re.search(r"\((?:the paper|default): ([^()]+)\) \(default: \1\)", text)
    assert not re.search(r"\(the default\)[^-]*\(default:", text)


def test_a_default_not_said_in_the_description_is_still_noted(capsys):
    text = " ".join(_help(capsys, "train").split())
    assert "--epochs EPOCHS at most this many epochs (the paper: 74) --batch-size" in text
    assert "--lr-drops DROPS at most this many lr drops (the paper: 3) augmentation:" in text
    assert "SGD learning rate (default: 0.01)" in text and "(default: 0.0005)" in text
    assert "output RMS so initialised --init-from" in text  # "auto (the default)" said it
    assert "(default: False)" in text and "(default: True)" in text  # the switches whose help does not say it
    assert common.says_its_default("at most this many epochs (the paper: 74)", 74)
    assert not common.says_its_default("at most this many epochs (the paper: 74)", 20)
