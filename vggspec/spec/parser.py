"""Text → :class:`~vggspec.spec.Spec`: the lark grammar (grammar.lark) plus the layer registry.

The grammar fixes the statement structure; each layer word is looked up in
:data:`vggspec.spec.layers.LAYER_KINDS`. Every failure becomes a :class:`SpecError` with the line,
column and, where a close spelling exists, a suggestion.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from pydantic import ValidationError

from ..errors import (
    SpecError,
    SpecSyntaxError,
    SpecValueError,
    UnknownLayerError,
    describe_character,
    did_you_mean,
    source_lines,
)
from .bundled import bundled_names, spec_path
from .layers import LayerSpec, kind_for_word, spelling_examples, suggest_word
from .spec import COLOUR_MODELS, Comment, InputShape, Spec

MAX_REPEAT = 1024
MAX_LAYERS = 4096


@functools.cache
def _lark() -> Lark:
    grammar = resources.files("vggspec.spec").joinpath("grammar.lark").read_text(encoding="utf-8")
    # The transformer runs inside the parser (no intermediate tree): half the cost of a parse.
    return Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=False, transformer=_ToStatements())


def parse(text: str, filename: str | None = None, *, check: bool = True) -> Spec:
    """Parse the text of a ``.vgg`` file.

    With ``check`` (the default) the network is also analysed at its declared input size, so a
    spec that cannot work (a spatial size that reaches zero, a layer after the classifier) is
    rejected here with a :class:`ShapeError` rather than later. A byte-order mark at the start
    (what some Windows editors write) is dropped.
    """
    text = text.removeprefix("\ufeff")
    try:
        spec = _parse(text, filename)
        if check:
            from .analysis import analyze

            analyze(spec)
    except SpecError as err:
        raise err.located(filename, text) from None
    return spec


def load(path: str | Path, *, check: bool = True) -> Spec:
    """Read and parse a ``.vgg`` file; a bare name that is no file names a bundled spec (``D``)."""
    path = spec_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"no such spec file: {path}", hint=f"bundled specs go by name alone: {', '.join(bundled_names())}"
        ) from None
    except IsADirectoryError:
        raise SpecError(f"{path} is a directory, not a .vgg spec file") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})", filename=str(path)) from None
    except OSError as err:
        raise SpecError(f"cannot read {path}: {err.strerror}") from None
    return parse(text, str(path), check=check)


# -- the parse tree, as plain statements -------------------------------------------------


@dataclass
class _LayerItem:
    word: Token
    attributes: list[tuple[Token, object]] = field(default_factory=list)
    repeat: Token | None = None


@dataclass
class _NameDecl:
    text: Token


@dataclass
class _InputDecl:
    token: Token
    size: int
    channels: int


class _ToStatements(Transformer):
    """One method per grammar rule; the result is a flat list of statements."""

    def start(self, items):
        out = []
        for item in items:
            out.extend(item if isinstance(item, list) else [item])
        return out

    def name_decl(self, items):
        raw = items[-1]
        text = str(raw).strip()
        token = Token("TEXT", text, line=raw.line, column=raw.column + len(str(raw)) - len(str(raw).lstrip()))
        return _NameDecl(token)

    def input_decl(self, items):
        size, channels, _ = items[-1]
        return _InputDecl(items[0], size, channels)

    def input_shape(self, items):
        size_token, size = items[0]
        channels = items[1] if len(items) > 1 else 3
        return size, channels, size_token

    def size(self, items):
        height = _int(items[0])
        if len(items) > 1 and _int(items[1]) != height:
            raise SpecValueError(
                f"non-square inputs are not supported yet: {items[0]}x{items[1]}",
                line=items[0].line,
                column=items[0].column,
                width=len(items[0]) + 1 + len(items[1]),
                hint=f"declare a square input, e.g. 'input: {max(height, int(items[1]))}x{max(height, int(items[1]))}'",
            )
        return items[0], height

    def channels(self, items):
        if len(items) == 1:
            # casefold, not lower: the grammar's case-insensitive match accepts 'ſ' for 's'
            channels = COLOUR_MODELS.get(items[0].casefold())
            if channels is None:
                raise _at(SpecValueError, f"unknown colour model '{items[0]}'", items[0], expected="RGB or gray")
            return channels
        return _int(items[0])

    def layer_list(self, items):
        return list(items)

    def layer(self, items):
        item = _LayerItem(items[0])
        for part in items[1:]:
            if isinstance(part, Token):
                item.repeat = part
            else:
                item.attributes = part
        return item

    def attributes(self, items):
        return list(items)

    def attribute(self, items):
        key = items[0]
        return (key, items[1] if len(items) > 1 else True)

    def number(self, items):
        text = str(items[0])
        if "." in text or "e" in text.lower():
            return float(text)
        return _int(items[0])

    def word(self, items):
        return str(items[0])


# -- statements → spec -------------------------------------------------------------------


def _parse(text: str, filename: str | None) -> Spec:
    try:
        statements = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text) from None

    name: str | None = None
    input_shape = InputShape()
    layers: list[LayerSpec] = []
    seen_input: _InputDecl | None = None
    for statement in statements:
        if isinstance(statement, _NameDecl):
            if name is not None:
                raise _at(SpecValueError, "the network is named twice", statement.text, hint="keep one 'name:' line")
            name = str(statement.text).strip()
        elif isinstance(statement, _InputDecl):
            if seen_input is not None:
                raise SpecValueError(
                    f"the input is declared twice (first on line {seen_input.token.line})",
                    line=statement.token.line,
                    column=statement.token.column,
                )
            if layers:
                raise SpecValueError(
                    "the input must be declared before the first layer",
                    line=statement.token.line,
                    column=statement.token.column,
                    hint="move the 'input:' line to the top of the file",
                )
            seen_input = statement
            try:
                input_shape = InputShape(
                    channels=statement.channels,
                    size=statement.size,
                    line=statement.token.line,
                    column=statement.token.column,
                )
            except ValidationError as err:
                raise SpecValueError(
                    _validation_message(err), line=statement.token.line, column=statement.token.column
                ) from None
        else:
            layer = _build_layer(statement)
            count = _repeat_count(statement.repeat)
            if len(layers) + count > MAX_LAYERS:
                raise _at(SpecValueError, f"a spec may have at most {MAX_LAYERS} layers", statement.word)
            layers.extend([layer] * count)

    first_line = min((t.line for t in _statement_tokens(statements)), default=0)
    return Spec(
        name=name,
        input=input_shape,
        layers=tuple(layers),
        source=filename,
        comments=_comments(text, first_line),
        text=text,
    )


def _statement_tokens(statements: list) -> list[Token]:
    return [
        s.word if isinstance(s, _LayerItem) else s.text if isinstance(s, _NameDecl) else s.token for s in statements
    ]


def _comments(text: str, first_statement_line: int) -> tuple[Comment, ...]:
    """The grammar ignores comments; recover them for the formatter.

    In text that parsed, every '#' starts a comment: no other token may contain one.
    """
    found = []
    for number, line in enumerate(source_lines(text), start=1):
        col = line.find("#")
        if col >= 0:
            found.append(
                Comment(
                    line=number,
                    text=line[col:].rstrip(),
                    trailing=bool(line[:col].strip()),
                    leading=not first_statement_line or number < first_statement_line,
                )
            )
    return tuple(found)


def _build_layer(item: _LayerItem) -> LayerSpec:
    word = str(item.word)
    found = kind_for_word(word)
    if found is None:
        suggestion = suggest_word(word)
        raise _at(
            UnknownLayerError,
            f"unknown layer '{word}'",
            item.word,
            expected="a layer: " + ", ".join(spelling_examples()) + ", ...",
            hint=f"did you mean '{suggestion}'?" if suggestion else None,
        )
    cls, match = found
    if any(len(value) > MAX_DIGITS for value in match.groupdict().values()):
        shown = word if len(word) <= 24 else word[:20] + "..."
        raise _at(SpecValueError, f"'{shown}' has a number too large to mean anything", item.word)
    fields = cls.fields_from_word(match)
    for key, value in item.attributes:
        if key not in cls.ATTRIBUTES:
            close = did_you_mean(str(key), cls.ATTRIBUTES)
            accepted = ", ".join(cls.ATTRIBUTES) or "none"
            raise _at(
                SpecValueError,
                f"'{word}' has no attribute '{key}'",
                key,
                expected=f"attributes of {cls.__name__}: {accepted}",
                hint=f"did you mean '{close}'?" if close else None,
            )
        if key in fields:
            raise _at(SpecValueError, f"attribute '{key}' is given twice", key)
        fields[str(key)] = value
    try:
        return cls(**fields, line=item.word.line, column=item.word.column)
    except ValidationError as err:
        bad_field = err.errors()[0]["loc"][0] if err.errors() and err.errors()[0]["loc"] else None
        where = next((k for k, _ in item.attributes if k == bad_field), item.word)
        hint = None
        if cls.__name__ == "Conv" and bad_field == "kernel":
            hint = f"did you mean 'conv3-{fields['channels']}'?"
        raise _at(SpecValueError, f"{word}: {_validation_message(err)}", where, hint=hint) from None


def _repeat_count(token: Token | None) -> int:
    if token is None:
        return 1
    count = _int(token, str(token).lstrip("x×*").strip())
    if not 1 <= count <= MAX_REPEAT:
        raise _at(SpecValueError, f"a layer can be repeated 1 to {MAX_REPEAT} times, not {count}", token)
    return count


MAX_DIGITS = 9


def _int(token: Token, digits: str | None = None) -> int:
    """An integer from the source; absurdly long numbers are an error, not a 4300-digit int."""
    digits = str(token) if digits is None else digits
    if len(digits.lstrip("+-")) > MAX_DIGITS:
        raise _at(SpecValueError, f"the number {digits[:12]}... is too large", token)
    return int(digits)


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    message = first["msg"]
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    field_name = ".".join(str(p) for p in first["loc"])
    return f"{field_name}: {message[:1].lower()}{message[1:]}"


def _at(cls: type[SpecError], message: str, token: Token, **kw) -> SpecError:
    return cls(message, line=token.line, column=token.column, width=len(str(token)), **kw)


# -- lark's errors, in the user's words ------------------------------------------------

_TERMINAL_NAMES = {
    "LAYER_WORD": "a layer (conv3-64, maxpool, FC-4096, ...)",
    "REPEAT": "a repetition (×2)",
    "COMMA": "','",
    "_NL": "a new line",
    "LSQB": "'['",
    "RSQB": "']'",
    "KEY": "an attribute name",
    "NUMBER": "a number",
    "INT": "a number",
    "EQUAL": "'='",
    "_BY": "'x'",
    "COLOUR_MODEL": "RGB or gray",
    "CHANNELS_WORD": "'channels'",
    "TEXT": "a name",
    "COLON": "':'",
    "LPAR": "'('",
    "RPAR": "')'",
    "NAME": "'name:'",
    "INPUT": "'input:'",
    "IMAGE": "'image'",
    "$END": "the end of the file",
}


def _expected(names: set[str] | frozenset[str] | None) -> str | None:
    if not names:
        return None
    described = sorted({_TERMINAL_NAMES.get(n, n.lower()) for n in names})
    return " or ".join(described)


def _syntax_error(err: UnexpectedInput, text: str) -> SpecSyntaxError:
    if isinstance(err, UnexpectedToken):
        token = err.token
        if token.type == "$END":
            return _eof_error(err, text)
        what = "end of line" if token.type == "_NL" else f"'{token}'"
        if token.type != "_NL" and (odd := _odd_character(str(token))) is not None:
            return _character_error(str(token)[odd], token.line, token.column + odd, within=str(token))
        hint = None
        if token.type == "LAYER_WORD" and "COMMA" in err.expected:
            hint = "separate layers with ',' or put them on separate lines"
        elif str(token) in ("×", "x", "*"):
            hint = "a repetition is written '×3' (or 'x3') after a layer, with a count"
        elif "COLON" in err.expected or "INT" in err.expected:
            hint = "write the input as 'input: 224x224 RGB' and the name as 'name: D'"
        width = 1 if token.type == "_NL" else len(str(token))
        return SpecSyntaxError(
            f"unexpected {what}",
            line=token.line,
            column=token.column,
            width=width,
            expected=_expected(err.expected),
            hint=hint,
        )
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        if char and char in "×x*":
            return SpecSyntaxError(
                f"unexpected character {char!r}",
                line=err.line,
                column=err.column,
                expected=_expected(err.allowed),
                hint="a repetition is written '×3' (or 'x3') after a layer, with a count",
            )
        return _character_error(char, err.line, err.column, expected=_expected(err.allowed))
    if isinstance(err, UnexpectedEOF):
        return _eof_error(err, text)
    return SpecSyntaxError(str(err))


def _odd_character(word: str) -> int | None:
    """Where ``word`` holds a character no spec word is made of (a look-alike letter, an invisible
    space, a control character), or None. The '×' of repetitions is the one non-ASCII character."""
    return next((i for i, ch in enumerate(word) if ch != "×" and not (ch.isascii() and ch.isprintable())), None)


def _character_error(char: str, line: int, column: int, *, within: str = "", expected: str | None = None):
    """An unexpected character named by its code point, with what to do about its kind."""
    if char.isspace():
        hint = "replace it with a plain space"
    elif char.isalnum():
        hint = "it looks like a letter or digit of a spec word but is another character: retype it"
    elif not char.isprintable():
        hint = "remove it: the file holds a control character here"
    else:
        hint = None
    where = f" in '{within}'" if within and within != char and within.isprintable() else ""
    return SpecSyntaxError(
        f"unexpected character {describe_character(char) if char else 'at the end'}{where}",
        line=line,
        column=column,
        expected=expected,
        hint=hint,
    )


def _eof_error(err: UnexpectedInput, text: str) -> SpecSyntaxError:
    lines = source_lines(text)
    return SpecSyntaxError(
        "unexpected end of file",
        line=len(lines),
        column=len(lines[-1]) + 1,
        expected=_expected(getattr(err, "expected", None)),
    )
