"""``vggspec completion bash|zsh|fish``: a completion script, written from the argparse parser itself (the
commands, each one's flags, the choices of the flags that have them), so that it cannot drift from the command
line. Paths complete file names; a SPEC completes the bundled specs' names too (D, small/A-narrow-32).

No completion library: the scripts are plain shell, a few lines of logic each over tables generated here."""

from __future__ import annotations

import argparse
import re
import shlex
import textwrap
from dataclasses import dataclass

from ..errors import ExitCode
from ..plan.gpus import GPUS
from ..spec.bundled import bundled_names
from ..spec.initialisation import INIT_NAMES
from .common import INTERRUPTED, Commands, ExitCodes

SHELLS = ("bash", "zsh", "fish")

# How to install each script: said on its first line (a comment) and in 'vggspec completion --help'.
INSTALL = {
    "bash": 'eval "$(vggspec completion bash)" in ~/.bashrc (or the script saved as '
    "~/.local/share/bash-completion/completions/vggspec)",
    "zsh": "vggspec completion zsh > ~/.zfunc/_vggspec, with fpath+=(~/.zfunc) before compinit in ~/.zshrc "
    "(or source <(vggspec completion zsh) after compinit)",
    "fish": "vggspec completion fish > ~/.config/fish/completions/vggspec.fish",
}

# What an argument's values are, by its metavar (argparse knows only a name): file names for paths, folder
# names for folders, the bundled specs' names and files for a SPEC. Any other value is completed with nothing.
VALUE_KINDS = {
    "SPEC": "spec", "CKPT|SPEC": "spec", "OLD": "spec", "NEW": "spec", "PATTERN": "name",
    "FILE": "file", "CKPT": "file", "IMAGE": "file", "W": "file", "WEIGHTS": "file", "FROM": "file",
    "DIR": "dir", "DATA": "dir", "OUT": "dir",
}  # fmt: skip
# Values that are words vggspec knows, though argparse has no choices for them (they take more spellings).
KNOWN_WORDS = {"INIT": INIT_NAMES, "GPU": tuple(GPUS)}

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the script printed",
    ExitCode.BAD_INPUT: "bad input: a shell it has no script for",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands, parser: argparse.ArgumentParser) -> None:
    """``vggspec completion SHELL``: the script for ``parser``, the whole command line."""
    about = (
        "Print a script that completes vggspec's commands, their flags, the choices of the flags that have "
        "them, file names, and the bundled specs' names where a SPEC is expected. Install it:"
    )
    install = [
        textwrap.fill(how, 79, initial_indent=f"  {shell:<6}", subsequent_indent=" " * 8)
        for shell, how in INSTALL.items()
    ]
    p = commands.add_parser(
        "completion",
        help="a shell completion script for bash, zsh or fish",
        description="\n".join([textwrap.fill(about, 79), *install]),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # one line per shell
    )
    p.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    p.set_defaults(run=lambda args: _print_script(parser, args.shell), exit_codes=EXIT_CODES)


def _print_script(parser: argparse.ArgumentParser, shell: str) -> int:
    print(script(parser, shell), end="")
    return ExitCode.OK


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` of the command line ``parser``."""
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](parser)


# -- the command line, as a shell completes it ---------------------------------------------------------------


@dataclass(frozen=True)
class Argument:
    """One argument of a command: its option strings (none: a positional argument), what its value is, and a
    line that says what it is for."""

    names: tuple[str, ...]
    kind: str  # "" takes no value; text (nothing to complete), file, dir, spec, name, words
    words: tuple[str, ...]  # the words a value of kind "words" is one of
    metavar: str
    nargs: object  # argparse's: None one value, "?" an optional one, "*" or "+" several
    summary: str
    alone: bool = False  # -h, --version: nothing else goes with it

    @property
    def takes_value(self) -> bool:
        return self.kind != ""


def commands_of(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Each command's name → (its one-line help, its parser)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    return {name: (helps.get(name, ""), command) for name, command in sub.choices.items()}


def arguments_of(parser: argparse.ArgumentParser) -> list[Argument]:
    """The arguments of ``parser`` (a command's, or the program's own flags), in the order --help shows."""
    found = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        found.append(
            Argument(
                names=tuple(action.option_strings),
                kind=value_kind(action),
                words=tuple(_words(action)),
                metavar=_metavar(action),
                nargs=action.nargs,
                summary=summary(parser._get_formatter()._expand_help(action) if action.help else ""),
                alone=isinstance(action, (argparse._HelpAction, argparse._VersionAction)),
            )
        )
    return found


def value_kind(action: argparse.Action) -> str:
    """What follows ``action`` on the command line: "" (nothing: a switch), or the kind of its value."""
    if action.option_strings and action.nargs == 0:
        return ""
    if _words(action):
        return "words"
    return VALUE_KINDS.get(_metavar(action), "text")


def _words(action: argparse.Action) -> list[str]:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return [str(choice) for choice in action.choices]
    return list(KNOWN_WORDS.get(_metavar(action), ()))


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper() if action.option_strings else action.dest


def summary(help_text: str, width: int = 80) -> str:
    """A flag's help cut to its first clause, for a completion menu: "image folder", not the whole paragraph.
    Cut at the first ". ", "; " or ": " outside brackets (a ": " after one word is a label, kept)."""
    text = re.sub(r"\s*\(default: [^()]*(\([^()]*\)[^()]*)*\)", "", " ".join(help_text.split()))
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and text.startswith((". ", "; ", ": "), i):
            if ch == ":" and " " not in text[start:i].strip():
                start = i + 2
                continue
            text = text[:i]
            break
    text = text.rstrip(".")
    if len(text) > width:
        text = text[: text.rfind(" ", 0, width - 1)].rstrip(",;:") + "…"
    return text


# -- bash ----------------------------------------------------------------------------------------------------

BASH_ENGINE = r"""
_vggspec_reply() {  # COMPREPLY: the values of kind $1 that begin with $2
    case $1 in
        words:*) COMPREPLY=($(compgen -W "${1#words:}" -- "$2")) ;;
        name) COMPREPLY=($(compgen -W "$_vggspec_specs" -- "$2")) ;;
        spec | file | dir)
            compopt -o filenames 2>/dev/null
            COMPREPLY=()
            [[ $1 == spec ]] && COMPREPLY=($(compgen -W "$_vggspec_specs" -- "$2"))
            local IFS=$'\n' files=-f
            [[ $1 == dir ]] && files=-d
            COMPREPLY+=($(compgen $files -- "$2")) ;;
        *) COMPREPLY=() ;;
    esac
}

_vggspec() {
    local cur=${COMP_WORDS[COMP_CWORD]} word command= describe i position=0 value= only_positionals=
    local _vggspec_flags= _vggspec_value= _vggspec_kind=
    for ((i = 1; i < COMP_CWORD; i++)); do  # the command: the first word that is not a flag
        if [[ ${COMP_WORDS[i]} != -?* ]]; then
            command=${COMP_WORDS[i]}
            break
        fi
    done
    if [[ -z $command ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$_vggspec_program_flags" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$_vggspec_commands" -- "$cur"))
        fi
        return 0
    fi
    describe=_vggspec_command_${command//[^A-Za-z0-9]/_}
    declare -F "$describe" >/dev/null || return 0
    for ((i = i + 1; i < COMP_CWORD; i++)); do  # the words typed: which are values, how many are positional
        word=${COMP_WORDS[i]}
        if [[ -n $value ]]; then
            if [[ $word == = ]]; then continue; fi  # --flag=value, split at '=' by bash: the value is next
            value=
            if [[ $word != -?* ]]; then continue; fi
        fi
        if [[ -z $only_positionals && $word == -?* ]]; then
            if [[ $word == -- ]]; then
                only_positionals=1
            elif [[ $word != *=* ]]; then
                $describe "$word" 0
                value=$_vggspec_value
            fi
            continue
        fi
        ((position++))
    done
    if [[ -n $value && ($value != \?* || $cur != -?*) ]]; then  # the value of the flag before ('?': optional)
        [[ $cur == = ]] && cur=
        _vggspec_reply "${value#\?}" "$cur"
        return 0
    fi
    $describe "" "$position"
    if [[ -z $only_positionals && $cur == --*=* ]]; then  # --flag=value in one word
        $describe "${cur%%=*}" "$position"
        if [[ -n $_vggspec_value ]]; then
            _vggspec_reply "${_vggspec_value#\?}" "${cur#*=}"
            COMPREPLY=("${COMPREPLY[@]/#/${cur%%=*}=}")
        fi
    elif [[ -z $only_positionals && $cur == -* ]] || [[ -z $_vggspec_kind ]]; then
        COMPREPLY=($(compgen -W "$_vggspec_flags" -- "$cur"))
    else
        _vggspec_reply "$_vggspec_kind" "$cur"
    fi
    return 0
}

complete -F _vggspec vggspec
"""


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A script that bash sources: ``_vggspec`` completes ``vggspec``'s words from the tables it defines, a
    function per command (``_vggspec_command_train FLAG POSITION``: its flags, what FLAG's value is, what the
    positional argument at POSITION is)."""
    commands = commands_of(parser)
    lines = [
        "# bash completion for vggspec. Install: " + INSTALL["bash"],
        "# Written by 'vggspec completion bash' from vggspec's own parser.",
        f"_vggspec_commands={_sh(' '.join(commands))}",
        f"_vggspec_program_flags={_sh(' '.join(n for a in arguments_of(parser) for n in a.names))}",
        f"_vggspec_specs={_sh(' '.join(bundled_names()))}",
    ]
    for name, (_, command) in commands.items():
        lines += ["", *_bash_command(name, arguments_of(command))]
    return "\n".join(lines) + "\n" + BASH_ENGINE


def _bash_command(name: str, arguments: list[Argument]) -> list[str]:
    flags = [n for a in arguments for n in a.names]
    by_kind: dict[str, list[str]] = {}
    for a in arguments:
        if a.names and a.takes_value:
            by_kind.setdefault(_bash_kind(a), []).extend(a.names)
    lines = [
        f"_vggspec_command_{re.sub(r'[^A-Za-z0-9]', '_', name)}() {{  # vggspec {name}: FLAG POSITION",
        f"    _vggspec_flags={_sh(' '.join(flags))}",
        "    case $1 in",
        *(f"        {'|'.join(names)}) _vggspec_value={_sh(kind)} ;;" for kind, names in by_kind.items()),
        "        *) _vggspec_value= ;;",
        "    esac",
        "    case $2 in",
    ]
    position, rest = 0, ""
    for a in arguments:
        if a.names:
            continue
        if a.nargs in ("*", "+", argparse.REMAINDER):
            rest = _bash_kind(a)
            break
        lines.append(f"        {position}) _vggspec_kind={_sh(_bash_kind(a))} ;;")
        position += 1
    lines += [f"        *) _vggspec_kind={_sh(rest)} ;;", "    esac", "}"]
    return lines


def _bash_kind(a: Argument) -> str:
    """The kind of ``a``'s value as the bash script reads it: words listed, "?" first for an optional one."""
    kind = f"words:{' '.join(a.words)}" if a.kind == "words" else a.kind
    return f"?{kind}" if a.names and a.nargs == "?" else kind


def _sh(text: str) -> str:
    return shlex.quote(text) if text else "''"


# -- zsh -----------------------------------------------------------------------------------------------------


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """A completion function for zsh's compsys: ``_arguments`` per command, the flags described."""
    commands = commands_of(parser)
    names = " ".join(bundled_names())
    lines = [
        "#compdef vggspec",
        "# zsh completion for vggspec. Install: " + INSTALL["zsh"],
        "# Written by 'vggspec completion zsh' from vggspec's own parser.",
        "",
        "_vggspec_specs() {",
        f"    _alternative 'specs:bundled spec:({names})' 'files:file:_files'",
        "}",
        "",
        "_vggspec_commands() {",
        "    local -a commands=(",
        *(f"        {_zq(name + ':' + summary(help_text))}" for name, (help_text, _) in commands.items()),
        "    )",
        "    _describe -t commands 'vggspec command' commands",
        "}",
    ]
    for name, (_, command) in commands.items():
        specs = [spec for a in arguments_of(command) for spec in _zsh_specs(a)]
        lines += ["", f"_vggspec_command_{name}() {{", "    _arguments -S \\"]
        lines += [f"        {spec} \\" for spec in specs[:-1]] + [f"        {specs[-1]}", "}"]
    program = [spec for a in arguments_of(parser) for spec in _zsh_specs(a)]
    lines += [
        "",
        "_vggspec() {",
        "    local curcontext=$curcontext state state_descr line ret=1",
        "    typeset -A opt_args",
        "    _arguments -C \\",
        *(f"        {spec} \\" for spec in program),
        "        '1: :_vggspec_commands' \\",
        "        '*:: :->command' && ret=0",
        "    if [[ $state == command ]]; then",
        "        curcontext=${curcontext%:*:*}:vggspec-$words[1]:",
        "        if (( $+functions[_vggspec_command_$words[1]] )); then",
        "            _vggspec_command_$words[1] && ret=0",
        "        fi",
        "    fi",
        "    return ret",
        "}",
        "",
        "if [[ $funcstack[1] == _vggspec ]]; then  # autoloaded from $fpath by compinit",
        '    _vggspec "$@"',
        "else  # sourced",
        "    compdef _vggspec vggspec",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _zsh_specs(a: Argument) -> list[str]:
    """``_arguments``' specs of one argument: one per option string, or one or two for a positional."""
    action = {
        "": "",
        "text": " ",
        "words": f"({' '.join(a.words)})",
        "file": "_files",
        "dir": "_files -/",
        "spec": "_vggspec_specs",
        "name": f"({' '.join(bundled_names())})",
    }[a.kind]
    message = a.metavar.replace(":", r"\:")
    if not a.names:
        if a.nargs == "?":
            return [_zq(f"::{message}:{action}")]
        if a.nargs in ("*", argparse.REMAINDER):
            return [_zq(f"*:{message}:{action}")]
        if a.nargs == "+":
            return [_zq(f":{message}:{action}"), _zq(f"*:{message}:{action}")]
        return [_zq(f":{message}:{action}")]
    excluded = "(- *)" if a.alone else f"({' '.join(a.names)})" if len(a.names) > 1 else ""
    description = re.sub(r"([\[\]])", r"\\\1", a.summary)
    specs = []
    for name in a.names:
        value = ""
        if a.takes_value:
            optional = ":" if a.nargs == "?" else ""
            name += ("=" if name.startswith("--") else "+") if not optional else ("=" if name.startswith("--") else "")
            value = f":{optional}{message}:{action}"
        specs.append(_zq(f"{excluded}{name}[{description}]{value}"))
    return specs


def _zq(text: str) -> str:
    """``text`` as one zsh word, in single quotes."""
    return "'" + text.replace("'", "'\\''") + "'"


# -- fish ----------------------------------------------------------------------------------------------------

FISH_ENGINE = """function __vggspec_command --description 'the vggspec command on the line (none: status 1)'
    set -l words (commandline -opc)
    set -e words[1]
    for word in $words
        if not string match -q -- '-?*' $word
            echo $word
            return 0
        end
    end
    return 1
end
"""


def fish_script(parser: argparse.ArgumentParser) -> str:
    """``complete`` lines for fish: the commands, then each command's flags and arguments."""
    commands = commands_of(parser)
    lines = [
        "# fish completion for vggspec. Install: " + INSTALL["fish"],
        "# Written by 'vggspec completion fish' from vggspec's own parser.",
        FISH_ENGINE,
        "complete -c vggspec -f  # no file names, but where an argument is a path",
    ]
    top = "-n 'not __vggspec_command'"
    lines += [_fish_line(top, a) for a in arguments_of(parser)]
    lines += [f"complete -c vggspec {top} -a {_fq(name)} -d {_fq(summary(h))}" for name, (h, _) in commands.items()]
    for name, (_, command) in commands.items():
        condition = f"-n {_fq(f'__vggspec_command | string match -q -- {name}')}"
        lines += ["", f"# vggspec {name}"]
        lines += dict.fromkeys(line for a in arguments_of(command) if (line := _fish_line(condition, a)))
    return "\n".join(lines) + "\n"


def _fish_line(condition: str, a: Argument) -> str:
    """The ``complete`` line of one argument: a flag with its value, or a positional argument's values (a
    positional argument whose values cannot be listed has no line)."""
    names = " ".join(bundled_names())
    if not a.names:  # its values wherever a word that is not a flag goes
        value = {
            "words": f"-a {_fq(' '.join(a.words))} -d {_fq(a.summary or a.metavar)}",
            "file": "-F",
            "dir": "-a '(__fish_complete_directories (commandline -ct))'",
            "spec": f"-F -a {_fq(names)} -d 'bundled spec'",
            "name": f"-a {_fq(names)} -d 'bundled spec'",
        }.get(a.kind)
        return f"complete -c vggspec {condition} {value}" if value else ""
    value = {
        "": "",
        "text": " -x",
        "words": f" -x -a {_fq(' '.join(a.words))}",
        "file": " -r -F",
        "dir": " -x -a '(__fish_complete_directories (commandline -ct))'",
        "spec": f" -r -F -a {_fq(names)}",
        "name": f" -x -a {_fq(names)}",
    }[a.kind]
    if a.nargs == "?":  # an optional value: offered, not required
        value = value.replace(" -x", " -f").replace(" -r", "")
    flags = "".join(f" -s {n[1:]}" if not n.startswith("--") else f" -l {n[2:]}" for n in a.names)
    return f"complete -c vggspec {condition}{flags}{value} -d {_fq(a.summary)}"


def _fq(text: str) -> str:
    """``text`` as one fish word, in single quotes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
