"""Property tests (hypothesis) for the .vgg language: parser, formatter, analyzer, error positions.

1. Generated valid specs parse to the network the generator wrote, round-trip through the
   formatter (``parse(format_spec(s)) == s``), format idempotently and analyse identically.
2. Every comment of the input survives the formatter.
3. Mutated spec text (the bundled specs and generated ones) makes ``parse`` return a Spec or
   raise SpecError, nothing else; the error renders and points at a line of the file.
4. Fully random text: the same.
5. An unknown layer word inserted at a known place is reported at that line and column.

Line numbers are lark's: lines are separated by ``\\n`` (``\\r\\n`` ends a line too; ``\\r``,
form feed, ``\\x85``, ``\\u2028`` and the other characters ``str.splitlines`` also breaks on
do not start a new line in a .vgg file). A test failing here is a bug in vggspec, not in the
test: the tests are not bent around known bugs, and the inputs that showed them are pinned as
explicit examples so they are exercised on every run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import vggspec
from vggspec import SpecError, analyze, format_spec, load, parse
from vggspec.errors import SHOWN_LINE
from vggspec.spec.layers import kind_for_word

SPECS = Path(__file__).resolve().parent.parent / "specs"
PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")
PAPER_SPECS = [SPECS / f"{name}.vgg" for name in PAPER_CONFIGS]  # Table 1, in canonical form
ALL_SPECS = sorted(SPECS.rglob("*.vgg"))
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in ALL_SPECS]

COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ------------------------------------------------------------------------------


def n_lines(text: str) -> int:
    """Lines as the parser counts them: separated by '\\n'."""
    return text.count("\n") + 1


def parse_or_spec_error(text: str) -> vggspec.Spec | SpecError:
    """``parse``, which may only return a Spec or raise SpecError (anything else propagates)."""
    try:
        return parse(text)
    except SpecError as err:
        return err


def check_error(err: SpecError, text: str) -> None:
    rendered = str(err)  # must not raise
    assert isinstance(rendered, str) and "error:" in rendered
    assert err.render() == rendered
    if err.line is not None:
        assert 1 <= err.line <= n_lines(text) + 1, (err.line, n_lines(text), rendered)
    if err.column is not None:
        assert err.column >= 1, rendered


def semantic_layers(analysis: vggspec.Analysis) -> list[dict]:
    """Per-layer numbers without source positions."""
    return [{k: v for k, v in layer.to_dict().items() if k not in ("line", "column")} for layer in analysis.layers]


# -- a generator of valid specs, as text ---------------------------------------------------

# Anything but a line break (and, in names, '#', which starts a comment), surrogates excluded.
# Comments and names may legally hold form feeds, '\r', '\x85', '\u2028', ...
ANY_CHAR_BUT_NL = st.characters(blacklist_characters="\n", blacklist_categories=("Cs",))
ANY_NAME_CHAR = st.characters(blacklist_characters="\n#", blacklist_categories=("Cs",))
PLAIN = st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="#")

comment_bodies = st.one_of(
    st.text(PLAIN, max_size=30),
    st.text(st.one_of(PLAIN, ANY_CHAR_BUT_NL), max_size=20),
)
names = st.one_of(
    st.sampled_from(["A", "D", "VGG-16 (configuration D)", "A-LRN", "tiny net", "vgg11-gray-10"]),
    st.text(PLAIN, min_size=1, max_size=20),
    st.text(st.one_of(PLAIN, ANY_NAME_CHAR), min_size=1, max_size=12),
)
spaces = st.sampled_from(["", " ", "  ", "\t", " \t "])
some_space = st.sampled_from([" ", "  ", "\t", " \x0c "])  # \f is ignored whitespace too


@dataclass
class Line:
    """One source line: indentation, code, trailing comment."""

    code: str = ""
    comment: str | None = None  # '#...' or None
    indent: str = ""
    gap: str = "  "  # between code and comment
    layer_line: bool = False  # code is a layer list

    def text(self) -> str:
        if self.comment is None:
            return self.indent + self.code
        return self.indent + self.code + (self.gap if self.code else "") + self.comment


@dataclass
class Generated:
    lines: list[Line]
    newline: str
    final_newline: bool
    name: str | None  # as the parser should read it (stripped)
    input: tuple[int, int]  # (size, channels)
    words: list[str]  # the canonical layer words, repetitions expanded
    comments: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return render(self.lines, self.newline, self.final_newline)


def render(lines: list[Line], newline: str, final_newline: bool) -> str:
    return newline.join(line.text() for line in lines) + (newline if final_newline else "")


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


REPEAT_SPELLINGS = ["×{}", "x{}", "× {}", "*{}", "x {}", "* {}", "×  {}"]


@st.composite
def repeats(draw, max_count: int = 4) -> tuple[str, int]:
    if draw(st.booleans()):
        return "", 1
    count = draw(st.integers(1, max_count))
    return draw(st.sampled_from(REPEAT_SPELLINGS)).format(count), count


@st.composite
def attribute_list(draw, pairs: list[str]) -> str:
    inner = draw(st.sampled_from([", ", ",", " , "])).join(pairs)
    return f"[{inner}]" if draw(st.booleans()) else f"[ {inner} ]"


@st.composite
def feature_items(draw) -> tuple[str, list[str], tuple[str, int, int] | None]:
    """(text, canonical words, pooling (size, stride) per layer or None)."""
    kind = draw(st.sampled_from(["conv", "conv", "conv", "maxpool", "LRN"]))
    attrs = ""
    pool = None
    if kind == "conv":
        kernel = draw(st.one_of(st.sampled_from([1, 3, 3, 5, 7]), st.integers(0, 127).map(lambda i: 2 * i + 1)))
        channels = draw(st.integers(1, 512))
        word = f"conv{kernel}-{channels}"
        bn = draw(st.sampled_from([None, "bn", "bn", "bn=true", "bn=false", "bn=1"]))
        if bn:
            attrs = draw(attribute_list([bn]))
    elif kind == "maxpool":
        word = "maxpool"
        size, stride = 2, 2
        pairs = []
        if draw(st.booleans()):
            size = draw(st.integers(1, 4))
            pairs.append(f"size={size}")
        if draw(st.booleans()):
            stride = draw(st.integers(1, 3))
            pairs.append(f"stride={stride}")
        pairs = draw(st.permutations(pairs))
        if pairs:
            attrs = draw(attribute_list(pairs))
        pool = (size, stride)
    else:
        word = "LRN"
        pairs = []
        if draw(st.booleans()):
            pairs.append(f"n={draw(st.integers(1, 255))}")
        for key in ("alpha", "beta", "k"):
            if draw(st.booleans()):
                value = draw(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
                pairs.append(f"{key}={number_text(value)}")
        pairs = draw(st.permutations(pairs))
        if pairs:
            attrs = draw(attribute_list(pairs))
    rep, count = draw(repeats())
    return layer_text(draw, word, attrs, rep), [word] * count, pool and [pool] * count


def layer_text(draw, word: str, attrs: str, rep: str) -> str:
    parts = [word]
    if attrs and rep and draw(st.booleans()):
        parts += [rep, attrs]  # conv3-64 ×2 [bn]
    else:
        parts += [p for p in (attrs, rep) if p]
    return draw(st.sampled_from([" ", "  ", "\t"])).join(parts)


@st.composite
def classifier_items(draw) -> list[tuple[str, list[str]]]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        features = draw(st.one_of(st.sampled_from([10, 1000, 4096]), st.integers(1, 5000)))
        word = f"FC-{features}"
        attrs = ""
        if draw(st.booleans()):
            p = draw(st.one_of(st.sampled_from([0, 0.0, 0.2, 0.5]), st.floats(0, 1, exclude_max=True)))
            attrs = draw(attribute_list([f"dropout={number_text(p)}"]))
        rep, count = draw(repeats(max_count=2))
        out.append((layer_text(draw, word, attrs, rep), [word] * count))
    if draw(st.booleans()):
        out.append(("soft-max", ["soft-max"]))
    return out


def min_input(pools: list[tuple[int, int] | None]) -> int:
    """vggspec.spec.analysis.min_input_size, by hand: walk the pools back from an output of 1."""
    need = 1
    for pool in reversed(pools):
        if pool is not None:
            size, stride = pool
            need = (need - 1) * stride + size
    return need


@st.composite
def input_lines(draw, least: int, required: bool) -> tuple[str | None, int, int]:
    """(line or None, size, channels) with size >= least."""
    if not required and draw(st.booleans()):
        return None, 224, 3
    size = draw(st.integers(max(least, 1), max(least, 1) + 64))
    colour, channels = draw(
        st.one_of(
            st.sampled_from(
                [("RGB", 3), ("rgb", 3), ("gray", 1), ("grey", 1), ("Gray", 1), ("grayscale", 1),
                 ("greyscale", 1), ("", 3)]
            ),
            st.integers(1, 64).map(lambda c: (f"{c} channels", c)),
            st.just(("1 channel", 1)),
        )
    )
    by = draw(st.sampled_from(["x", "×", " x ", " × "]))
    dims = draw(st.sampled_from([f"{size}{by}{size}", f"{size}"]))
    shape = f"{dims} {colour}".rstrip()
    style = draw(st.sampled_from(["colon", "colon", "paren", "paren-image"]))
    if style == "colon":
        line = f"input:{draw(some_space)}{shape}"
    elif style == "paren":
        line = f"input ({shape})"
    else:
        line = f"input ({shape} image)"
    return line, size, channels


@st.composite
def comment_texts(draw) -> str:
    return "#" + draw(st.sampled_from(["", " "])) + draw(comment_bodies)


@st.composite
def valid_specs(draw) -> Generated:
    lines: list[Line] = []
    comments: list[str] = []

    def maybe_comment() -> str | None:
        if draw(st.integers(0, 3)) == 0:
            text = draw(comment_texts())
            comments.append(text)
            return text
        return None

    def filler() -> None:
        """Blank lines and comment-only lines between statements."""
        for _ in range(draw(st.integers(0, 2))):
            if draw(st.booleans()):
                lines.append(Line(indent=draw(spaces)))
            else:
                text = draw(comment_texts())
                comments.append(text)
                lines.append(Line(comment=text, indent=draw(spaces)))

    filler()  # the header
    features = draw(st.lists(feature_items(), max_size=8))
    pools = [p for _, _, ps in features for p in (ps or [None])]
    least = min_input(pools)
    assume(least <= 4096)  # MAX_INPUT is 65,536; keep the inputs (and the arithmetic) modest
    name = None
    name_where = draw(st.sampled_from(["first", "first", "after input", "last"]))

    def name_line() -> None:
        nonlocal name
        raw = draw(names)
        lines.append(Line(code=f"name:{draw(some_space)}{raw}", comment=maybe_comment(), indent=draw(spaces)))
        name = raw.strip()
        filler()

    with_name = draw(st.booleans())
    if with_name and name_where == "first":
        name_line()
    line, size, channels = draw(input_lines(least, required=least > 224))
    if line is not None:
        lines.append(Line(code=line, comment=maybe_comment(), indent=draw(spaces)))
        filler()
    if with_name and name_where == "after input":
        name_line()

    items = [(text, words) for text, words, _ in features] + draw(classifier_items())
    words = [w for _, ws in items for w in ws]
    i = 0
    while i < len(items):
        take = draw(st.integers(1, 3))
        chunk = [text for text, _ in items[i : i + take]]
        i += take
        sep = draw(st.sampled_from([", ", ",", " , ", ",\t"]))
        code = sep.join(chunk) + draw(st.sampled_from(["", "", ",", " ,"]))
        lines.append(Line(code=code, comment=maybe_comment(), indent=draw(spaces), layer_line=True))
        filler()
    if with_name and name_where == "last":  # the name may come anywhere
        name_line()
    return Generated(
        lines=lines,
        newline=draw(st.sampled_from(["\n", "\n", "\r\n"])),
        final_newline=draw(st.booleans()),
        name=name,
        input=(size, channels),
        words=words,
        comments=comments,
    )


# -- 0. the bundled specs are in canonical form ----------------------------------------------


@pytest.mark.parametrize("path", PAPER_SPECS, ids=lambda p: p.stem)
def test_bundled_spec_is_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spec = load(path)
    assert format_spec(spec) == text
    again = parse(format_spec(spec))
    assert again == spec
    assert analyze(again).to_dict()["total"] == analyze(spec).to_dict()["total"]


# -- 1. valid specs round-trip ----------------------------------------------------------------


@settings(max_examples=120, **COMMON)
@given(valid_specs())
def test_valid_specs_round_trip(gen: Generated) -> None:
    text = gen.text
    spec = parse(text)
    # the parser read what the generator wrote
    assert [layer.word() for layer in spec.layers] == gen.words
    assert spec.name == gen.name
    assert (spec.input.size, spec.input.channels) == gen.input

    canonical = format_spec(spec)
    again = parse(canonical)
    assert again == spec
    assert again.name == spec.name
    assert format_spec(again) == canonical, "format_spec is not idempotent"

    a, b = analyze(spec), analyze(again)
    assert a.to_dict()["total"] == b.to_dict()["total"]
    assert a.min_input_size == b.min_input_size == vggspec.spec.analysis.min_input_size(spec)
    assert semantic_layers(a) == semantic_layers(b)


# -- 2. comments survive the formatter ------------------------------------------------------


@settings(max_examples=80, **COMMON)
@given(valid_specs())
def test_comments_survive_formatting(gen: Generated) -> None:
    out = format_spec(parse(gen.text))
    for comment in gen.comments:
        # trailing whitespace of a comment is not significant
        assert comment.rstrip() in out, (comment, out)
    assert len(parse(out).comments) == len(gen.comments)


# -- 3. mutated text raises SpecError or nothing -----------------------------------------------

MUTATION_CHARS = st.one_of(
    st.sampled_from(list("0123456789×x*[](),=:#.-+_ \n\t\r\x00\x0b\x0c\x1c\x85\u2028\u2029éſK" "ab")),
    st.characters(blacklist_categories=("Cs",)),
)
MUTATION_WORDS = st.sampled_from(
    ["conv3-64", "maxpool", "LRN", "FC-10", "soft-max", "input", "name", "image", "RGB", "gray",
     "channels", "bn", "size", "stride", "dropout", "alpha", "n", "k", "×2", "x0", "*1025",
     "[", "]", "[bn]", "[size=3, stride=1]", "input: 32x32", "input: 32x16", "name: X", "9" * 30,
     "1e400", "-1", "0.5", "grayſcale", "conv2-64", "FC-0", "conv3-0"]
)


@st.composite
def mutations(draw, text: str) -> str:
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(
            ["insert", "insert", "insert_word", "delete", "replace", "dup_line", "swap_lines", "drop_line", "truncate"]
        ))
        pos = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:pos] + draw(st.text(MUTATION_CHARS, min_size=1, max_size=4)) + text[pos:]
        elif op == "insert_word":
            text = text[:pos] + draw(MUTATION_WORDS) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 8)) :]
        elif op == "replace" and pos < len(text):
            text = text[:pos] + draw(MUTATION_CHARS) + text[pos + 1 :]
        elif op == "truncate":
            text = text[:pos]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "drop_line":
                del lines[i]
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


source_texts = st.one_of(st.sampled_from(SEED_TEXTS), valid_specs().map(lambda g: g.text))
mutated_texts = source_texts.flatmap(mutations)


@settings(max_examples=300, **COMMON)
@given(mutated_texts)
@example("input: 32x64\nconv3-64\nFC-10\n")  # a non-square input
@example("input: 32 grayſcale\nconv3-64\nFC-10\n")  # 'ſ' matches 's' under (?i:...)
@example("conv3-" + "9" * 4301 + "\nFC-10\n")  # int() refuses > 4300 digits
@example("conv3-64 ×" + "9" * 4301 + "\nFC-10\n")
@example("input: " + "9" * 4301 + "\nconv3-64\nFC-10\n")
@example("conv3-64 [" + "\x0c" * 5)  # end of file on line 1, reported further down
@example("soft-max\nFC-10\nsoft-max\n")  # two soft-max layers in different stages
def test_mutated_text_raises_only_spec_error(text: str) -> None:
    result = parse_or_spec_error(text)
    if isinstance(result, SpecError):
        check_error(result, text)
    else:
        assert isinstance(result, vggspec.Spec)
        format_spec(result)  # whatever parses can be formatted


# -- 4. random text --------------------------------------------------------------------------

TOKENS = st.sampled_from(
    ["conv3-64", "conv1-8", "maxpool", "LRN", "FC-10", "FC-4096", "soft-max", "input", "name", ":",
     "(", ")", "image", "RGB", "gray", "channels", "3", "32", "x", "×", "*", "2", "[", "]", "=", ",",
     "bn", "size", "stride", "dropout", "n", "alpha", "0.5", "1e-4", "-", "#", " ", " ", "\n", "\n",
     "\t", "\r\n", "\x0c"]
)


@settings(max_examples=300, **COMMON)
@given(st.one_of(st.text(), st.lists(TOKENS, max_size=40).map("".join)))
def test_random_text_raises_only_spec_error(text: str) -> None:
    result = parse_or_spec_error(text)
    if isinstance(result, SpecError):
        check_error(result, text)


# -- 5. error positions ----------------------------------------------------------------------

unknown_words = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-.]{0,12}", fullmatch=True).filter(
    lambda w: kind_for_word(w) is None and w not in ("name", "input")
)


@st.composite
def specs_with_unknown_word(draw) -> tuple[str, str, int, int]:
    """(text, word, line, column): a valid spec with an unknown layer word at (line, column)."""
    gen = draw(valid_specs())
    word = draw(unknown_words)
    lines = list(gen.lines)
    layer_lines = [i for i, line in enumerate(lines) if line.layer_line]
    where = draw(st.sampled_from(["new line", "first", "last"]))
    if where == "new line":
        i = draw(st.integers(0, len(lines)))
        indent = draw(spaces)
        lines.insert(i, Line(code=word, indent=indent, comment=draw(st.none() | comment_texts())))
        column = len(indent) + 1
    else:
        i = draw(st.sampled_from(layer_lines))
        line = lines[i]
        if where == "first":
            lines[i] = replace(line, code=f"{word}, {line.code}")
            column = len(line.indent) + 1
        else:
            code = line.code.rstrip()
            joined = f"{code} {word}" if code.endswith(",") else f"{code}, {word}"
            lines[i] = replace(line, code=joined)
            column = len(line.indent) + len(joined) - len(word) + 1
    text = render(lines, gen.newline, gen.final_newline or i == len(gen.lines))
    return text, word, i + 1, column


@settings(max_examples=100, **COMMON)
@given(specs_with_unknown_word())
def test_unknown_word_is_reported_where_it_is(case: tuple[str, str, int, int]) -> None:
    text, word, line, column = case
    with pytest.raises(SpecError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert word in err.message


@settings(max_examples=60, **COMMON)
@given(specs_with_unknown_word())
@example(("name: \x0c A\nB, FC-10\n", "B", 2, 1))  # a form feed is not a line break
def test_error_report_quotes_the_offending_line(case: tuple[str, str, int, int]) -> None:
    """The report shows the line the error is on (control characters as U+FFFD, so that the report
    prints no escape sequence; a line longer than SHOWN_LINE cut around the spot), with the caret under
    the word."""
    text, word, line, column = case
    with pytest.raises(SpecError) as info:
        parse(text)
    report = str(info.value).split("\n")
    source = text.split("\n")[line - 1].rstrip()
    source = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in source)
    shown, caret = report[1].split("| ", 1)[1], report[2]
    assert shown == source if len(source) <= SHOWN_LINE else "…" in shown, (report, source)
    assert shown[caret.index("^") - caret.index("|") - 2 :].startswith(word), report


# -- known inputs, pinned ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "name: a\x85b\nconv3-64  # c1\nmaxpool  # c2\nFC-10\n",  # \x85 is not a line break in .vgg
        "conv3-64  # one\x0ctwo\nFC-10\n",  # nor is a form feed inside a comment
        "conv3-64  # a\rb\nFC-10\n",
    ],
)
def test_format_keeps_comments_whole_and_is_idempotent(text: str) -> None:
    out = format_spec(parse(text))
    for comment in re.findall(r"#[^\n]*", text):
        assert comment.rstrip() in out, (comment, out)
    assert format_spec(parse(out)) == out
