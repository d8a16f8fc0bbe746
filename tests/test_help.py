"""--help as a manual (flags in groups, each default said once) and the shell completion scripts."""

import argparse
import importlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from vggspec import cli
from vggspec.cli import analyze, common, completion, evaluate, main, train
from vggspec.cli import compile as compile_command
from vggspec.errors import ExitCode
from vggspec.plan.batch import batch_split, default_batch
from vggspec.run.config import EvaluateConfig, TrainConfig
from vggspec.spec.bundled import bundled_names

from .conftest import ROOT


def _commands() -> dict[str, argparse.ArgumentParser]:
    return {name: command for name, (_, command) in completion.commands_of(cli._parser()).items()}


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

COMMANDS = [
    "list", "analyze", "compile", "train", "evaluate", "study", "predict",
    "fmt", "table", "diff", "graph", "samples", "completion",
]  # fmt: skip


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
        ("samples", ["images", "output"]),
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
    assert "--epochs EPOCHS at most this many epochs (the paper: 74) --early-stop" in text
    assert "--lr-drops DROPS at most this many lr drops (the paper: 3) augmentation:" in text
    lr = "SGD learning rate (default: the paper's 0.01 for its batch of 256, times √(batch / 256): 0.0025 at 16)"
    assert lr in text and "(default: 0.0005)" in text
    assert "output RMS so initialised --init-from" in text  # "auto (the default)" said it
    assert "(default: False)" in text and "(default: True)" in text  # the switches whose help does not say it
    assert common.says_its_default("at most this many epochs (the paper: 74)", 74)
    assert not common.says_its_default("at most this many epochs (the paper: 74)", 20)


# -- exit codes: each command's table, its --help's end, the program's summary -------------------------------

REGISTERED = list(_commands())  # whatever commands the parser has, new ones included


def _exit_code_lines(text: str) -> dict[int, str]:
    """The ``exit codes:`` paragraph of a --help: code → its meaning, as printed (wrapped lines joined)."""
    table = text[text.index("\nexit codes:\n") + len("\nexit codes:\n") :]
    found: dict[int, str] = {}
    code = None
    for line in table.splitlines():
        head = line[: common.CODE_COLUMN].strip()
        if head:
            code = int(head)
            found[code] = ""
        found[code] = f"{found[code]} {line[common.CODE_COLUMN :].strip()}".strip()
    return found


@pytest.mark.parametrize("command", REGISTERED)
def test_every_command_declares_its_exit_codes(command):
    codes = cli.exit_codes(command)
    assert codes and {0, 2} <= set(codes) <= {int(code) for code in ExitCode}, codes
    assert all(isinstance(meaning, str) and meaning.strip() for meaning in codes.values())
    assert list(codes) == sorted(codes)
    module = importlib.import_module(f"vggspec.cli.{command}") if command != "list" else None
    table = analyze.LIST_EXIT_CODES if command == "list" else module.EXIT_CODES  # the module's, one home
    assert {int(code): meaning for code, meaning in table.items()} == codes


@pytest.mark.parametrize("command", REGISTERED)
def test_the_help_of_every_command_ends_with_its_exit_codes(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "80")
    text = _help(capsys, command)
    assert text.count("\nexit codes:\n") == 1
    table = cli.exit_codes(command)
    assert _exit_code_lines(text) == {code: " ".join(meaning.split()) for code, meaning in table.items()}
    assert "Exit codes" not in text and "exit 1" not in text  # said once: in the table


def test_the_program_help_sums_up_every_commands_exit_codes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    found = _exit_code_lines(_help(capsys))
    every = {name: cli.exit_codes(name) for name in REGISTERED}
    assert set(found) == {code for codes in every.values() for code in codes}
    for code, said in found.items():
        if code in cli.SHARED_MEANINGS:
            assert said == " ".join(cli.SHARED_MEANINGS[code].split())
            continue
        for name, codes in every.items():  # each command that returns it, named, with what it means by it
            assert (f"{name}:" in said) == (code in codes), (code, name, said)
            if code in codes:
                assert " ".join(codes[code].split()) in said


def test_exit_codes_of_an_unknown_command_are_refused():
    with pytest.raises(ValueError, match="no command 'nosuch'"):
        cli.exit_codes("nosuch")


def test_an_exit_codes_paragraph_is_laid_out_a_line_per_code():
    text = common.exit_codes_text({2: "bad input " * 12, 0: "done", 1: ["a: one", "b: another"]})
    parser = argparse.ArgumentParser(prog="x", epilog="Before.\n\n" + text, formatter_class=common.ExitCodesLayout)
    shown = parser._get_formatter()
    shown._width = 40
    shown.add_text(parser.epilog)
    lines = shown.format_help().splitlines()
    assert lines[:5] == ["Before.", "", "exit codes:", "  0    done", "  1    a: one"]
    assert lines[5] == "       b: another" and lines[6].startswith("  2    bad input")
    assert all(len(line) <= 40 for line in lines) and all(line.startswith(" " * 7) for line in lines[7:])


SPEC_A = "conv3-8\nmaxpool\nFC-10\n"
SPEC_B = "conv3-8\nconv3-8\nmaxpool\nFC-10\n"


@pytest.mark.parametrize(
    "args, command, code",
    [
        (["diff", "{a}", "{b}"], "diff", ExitCode.DIFFERS),
        (["diff", "{a}", "{a}"], "diff", ExitCode.OK),
        (["diff", "{a}", "{missing}"], "diff", ExitCode.BAD_INPUT),
        (["fmt", "--check", "{a}"], "fmt", ExitCode.DIFFERS),  # written without its input line: not canonical
        (["list", "no-such-spec*"], "list", ExitCode.NO_MATCH),
        (["analyze", "--train", "--memory", "64MiB", "D"], "analyze", ExitCode.DOES_NOT_FIT),
        (["table", "{a}", "{missing}"], "table", ExitCode.BAD_INPUT),
    ],
)
def test_a_command_exits_with_a_code_its_table_lists(tmp_path, capsys, args, command, code):
    (tmp_path / "a.vgg").write_text(SPEC_A)
    (tmp_path / "b.vgg").write_text(SPEC_B)
    paths = {"a": tmp_path / "a.vgg", "b": tmp_path / "b.vgg", "missing": tmp_path / "missing.vgg"}
    assert main([arg.format(**paths) for arg in args]) == code
    assert code in cli.exit_codes(command)


# -- what the help says, against what the code does ------------------------------------------------------------


def test_compile_help_names_every_format_and_suffix_it_writes(capsys, monkeypatch):
    from vggspec.nn.export import FORMATS

    assert compile_command.NETWORK_FORMATS[2:] == FORMATS  # the exports, named without importing torch
    assert set(compile_command.SUFFIX_FORMATS.values()) == set(compile_command.NETWORK_FORMATS)
    format_flag = next(a for a in _commands()["compile"]._actions if "--format" in a.option_strings)
    assert tuple(format_flag.choices) == (*compile_command.NETWORK_FORMATS, "json")
    monkeypatch.setenv("COLUMNS", "200")
    text = " ".join(_help(capsys, "compile").split())
    said = re.findall(r"(?<![\w.])(\.[a-z0-9]+)\b", format_flag.help)  # .pt, not torch.export
    assert sorted(set(said)) == sorted(compile_command.SUFFIX_FORMATS)  # every suffix, and no other
    assert all(words in text for words in compile_command.FORMAT_WORDS.values())
    summary = dict(completion.commands_of(cli._parser()).items())["compile"][0]
    for word in ("checkpoint", "safetensors", "torch.export", "TorchScript", "ONNX", "Python"):
        assert word in summary and word in format_flag.help + text


def test_the_gpus_help_says_how_a_batch_they_do_not_divide_is_split(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = " ".join(_help(capsys, "train").split())
    assert "where N does not divide it, the first batch % N processes take one image more" in text
    assert "rounded up to a multiple of the processes" in text
    assert [batch_split(10, 3, None, rank).share for rank in range(3)] == [4, 3, 3]  # as said
    assert default_batch(100_000, 3) == 258 and default_batch(100_000, 1) == 256


# -- completion ----------------------------------------------------------------------------------------------

SMALL = [name for name in bundled_names() if name.startswith("small/")]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory) -> str:
    """The script as a user gets it: from the program."""
    result = subprocess.run(
        [sys.executable, "-m", "vggspec", "completion", "bash"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    path = tmp_path_factory.mktemp("completion") / "vggspec.bash"
    path.write_text(result.stdout)
    return str(path)


def _bash_complete(script: str, *lines: list[str], cwd=ROOT) -> list[list[str]]:
    """What bash's completion offers for each line (the words after vggspec; the last is the one completed)."""
    program = [f"source {shlex.quote(script)}"]
    for words in lines:
        quoted = " ".join(shlex.quote(word) for word in ["vggspec", *words])
        program.append(f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; COMPREPLY=(); _vggspec")
        program.append("printf '%s\\n' \"${COMPREPLY[@]}\"; echo '---'")
    result = subprocess.run(["bash", "-c", "\n".join(program)], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [[word for word in block.split("\n") if word] for block in result.stdout.split("---\n")[:-1]]


def test_bash_completes_commands_flags_choices_and_specs(bash_script):
    found = _bash_complete(
        bash_script,
        ["tr"],
        ["train", "--ep"],
        ["analyze", "sm"],
        ["analyze", "D", "small/A"],
        ["list", "--format", ""],
        ["list", "--format", "=", "j"],  # --format=j, as bash splits it
        ["train", "--amp", "f"],
        ["compile", "D", "--format", "o"],
        ["evaluate", "run", "--method", "m"],
        ["completion", ""],
        ["analyze", "--memory", "--tr"],  # --memory's value is optional: a flag may follow
        ["train", "D", "--epochs", "3", "--no-f"],
        ["-"],
    )
    assert found == [
        ["train"],
        ["--epochs"],
        SMALL,
        ["small/A-narrow-32"],
        ["text", "json"],
        ["json"],
        ["fp16"],
        ["onnx"],
        ["multi-crop"],
        ["bash", "zsh", "fish"],
        ["--train"],
        ["--no-flip"],
        ["-h", "--help", "--version"],
    ]
    with open(bash_script) as script:  # how to install it, on its first line
        assert script.readline().startswith('# bash completion for vggspec. Install: eval "$(vggspec completion bash)"')


def test_bash_completes_every_flag_of_every_command(bash_script):
    """The flags come from the parser: whatever a command has, '-' offers, and nothing else."""
    commands = _commands()
    found = _bash_complete(bash_script, *([name, "-"] for name in commands))
    for (name, command), offered in zip(commands.items(), found):
        assert offered == [flag for action in command._actions for flag in action.option_strings], name


def test_bash_completes_paths_where_a_path_goes(bash_script, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images.txt").write_text("")
    (tmp_path / "run").mkdir()
    found = _bash_complete(
        bash_script,
        ["train", "--data", "im"],  # a folder
        ["train", "--config", "im"],  # a file (or a folder on the way to it)
        ["predict", "run", "im"],  # images after the checkpoint
        ["evaluate", "r"],
        ["train", "--epochs", "im"],  # a number: nothing to offer
        cwd=tmp_path,
    )
    assert found == [["images"], ["images", "images.txt"], ["images", "images.txt"], ["run"], []]


@pytest.mark.parametrize(
    "command, argument, kind",
    [
        ("train", "--data", "dir"),
        ("train", "--out", "dir"),
        ("train", "--config", "file"),
        ("train", "--weights", "file"),
        ("train", "--init-from", "file"),
        ("train", "SPEC", "spec"),
        ("train", "--epochs", "text"),
        ("evaluate", "CKPT", "file"),
        ("evaluate", "--data", "dir"),
        ("evaluate", "--json", "file"),
        ("evaluate", "--save-probs", "file"),
        ("predict", "CKPT|SPEC", "spec"),
        ("predict", "IMAGE", "file"),
        ("compile", "--output", "file"),
        ("compile", "--format", "words"),
        ("graph", "--output", "file"),
        ("table", "--output", "file"),
        ("fmt", "SPEC", "spec"),
        ("diff", "OLD", "spec"),
        ("list", "PATTERN", "name"),
        ("analyze", "--device", "words"),
        ("analyze", "--params", ""),
        ("samples", "DIR", "dir"),
        ("samples", "--classes", "text"),
    ],
)
def test_what_each_argument_completes(command, argument, kind):
    found = {a.names[-1] if a.names else a.metavar: a.kind for a in completion.arguments_of(_commands()[command])}
    assert found[argument] == kind


def _script(shell: str, tmp_path) -> str:
    path = tmp_path / f"vggspec.{shell}"
    path.write_text(completion.script(cli._parser(), shell))
    return str(path)


def test_zsh_script_describes_every_command_and_flag(tmp_path):
    text = completion.script(cli._parser(), "zsh")
    lines = text.splitlines()
    assert lines[0] == "#compdef vggspec" and lines[1].startswith("# zsh completion for vggspec. Install: ")
    for name, command in _commands().items():
        body = text[text.index(f"_vggspec_command_{name}() {{") :]
        body = body[: body.index("\n}\n")]
        for action in command._actions:
            for flag in action.option_strings:
                assert re.search(rf"'(\([^)]*\))?{re.escape(flag)}[=+]?\[", body), (name, flag)
    assert "'--format=[output format]:FORMAT:(text json)'" in text
    assert "'::SPEC:_vggspec_specs'" in text and "'*:SPEC:_vggspec_specs'" in text
    assert "(A A-LRN B C D E small/A-narrow-32" in text


def test_zsh_loads_the_script(tmp_path):
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed: the script is checked by content (test_zsh_script_describes_...)")
    script = _script("zsh", tmp_path)
    assert subprocess.run(["zsh", "-n", script], capture_output=True, text=True, timeout=60).returncode == 0
    shell = f"autoload -U compinit; compinit -u -D; source {shlex.quote(script)}; print -r -- $_comps[vggspec]"
    result = subprocess.run(
        ["zsh", "-f", "-c", shell], capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path)}
    )
    assert result.returncode == 0 and result.stdout == "_vggspec\n" and result.stderr == "", result.stderr


def test_fish_script_has_every_command_and_flag():
    text = completion.script(cli._parser(), "fish")
    assert text.startswith("# fish completion for vggspec. Install: vggspec completion fish > ")
    for name, command in _commands().items():
        lines = [line for line in text.splitlines() if f"string match -q -- {name}'" in line]
        for action in command._actions:
            for flag in action.option_strings:
                option = f" -l {flag[2:]}" if flag.startswith("--") else f" -s {flag[1:]}"
                assert any(option + " " in line for line in lines), (name, flag)
    assert "-l amp -x -a 'bf16 fp16' -d 'mixed precision'" in text


def test_fish_completes_with_the_script(tmp_path):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed: the script is checked by content (test_fish_script_has_...)")
    script = _script("fish", tmp_path)
    assert subprocess.run(["fish", "-n", script], capture_output=True, text=True, timeout=60).returncode == 0
    found = []
    for line in ("vggspec tr", "vggspec train --ep", "vggspec analyze sm", "vggspec list --format ", "vggspec -"):
        shell = f"source {shlex.quote(script)}; complete -C {shlex.quote(line)}"
        result = subprocess.run(["fish", "--no-config", "-c", shell], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        found.append([row.split("\t")[0] for row in result.stdout.splitlines()])
    assert found == [["train"], ["--epochs"], sorted(SMALL), ["json", "text"], ["-h", "--help", "--version"]]


def test_a_completion_menu_shows_the_first_clause_of_the_help():
    assert completion.summary("image folder: DATA/train/<class>/*, DATA/val/<class>/* (required)") == "image folder"
    assert completion.summary("output format (default: text). markdown: a pipe table") == "output format"
    assert completion.summary("compute: MACs of conv and FC layers, FLOPs = 2 × MACs") == (
        "compute: MACs of conv and FC layers, FLOPs = 2 × MACs"  # a one-word label is kept
    )
    assert completion.summary("at most this many epochs (the paper: 74)") == "at most this many epochs (the paper: 74)"
    long = completion.summary("word " * 40)
    assert len(long) <= 80 and long.endswith("word…")
