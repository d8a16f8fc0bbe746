"""The language: Table 1 as the paper writes it, the shorthands, and errors that point at the spot."""

import pytest

import vggspec
from vggspec import ShapeError, SpecError, SpecSyntaxError, SpecValueError, UnknownLayerError
from vggspec.spec.layers import FC, LRN, Conv, MaxPool, SoftMax

from .conftest import PAPER_CONFIGS, SPECS

# Table 1 of the paper, one layer per row as printed there (not vggspec's ×N shorthand).
TABLE_1 = """
A         | A-LRN     | B         | C         | D         | E
conv3-64  | conv3-64  | conv3-64  | conv3-64  | conv3-64  | conv3-64
          | LRN       | conv3-64  | conv3-64  | conv3-64  | conv3-64
maxpool   | maxpool   | maxpool   | maxpool   | maxpool   | maxpool
conv3-128 | conv3-128 | conv3-128 | conv3-128 | conv3-128 | conv3-128
          |           | conv3-128 | conv3-128 | conv3-128 | conv3-128
maxpool   | maxpool   | maxpool   | maxpool   | maxpool   | maxpool
conv3-256 | conv3-256 | conv3-256 | conv3-256 | conv3-256 | conv3-256
conv3-256 | conv3-256 | conv3-256 | conv3-256 | conv3-256 | conv3-256
          |           |           | conv1-256 | conv3-256 | conv3-256
          |           |           |           |           | conv3-256
maxpool   | maxpool   | maxpool   | maxpool   | maxpool   | maxpool
conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512
conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512
          |           |           | conv1-512 | conv3-512 | conv3-512
          |           |           |           |           | conv3-512
maxpool   | maxpool   | maxpool   | maxpool   | maxpool   | maxpool
conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512
conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512 | conv3-512
          |           |           | conv1-512 | conv3-512 | conv3-512
          |           |           |           |           | conv3-512
maxpool   | maxpool   | maxpool   | maxpool   | maxpool   | maxpool
FC-4096   | FC-4096   | FC-4096   | FC-4096   | FC-4096   | FC-4096
FC-4096   | FC-4096   | FC-4096   | FC-4096   | FC-4096   | FC-4096
FC-1000   | FC-1000   | FC-1000   | FC-1000   | FC-1000   | FC-1000
soft-max  | soft-max  | soft-max  | soft-max  | soft-max  | soft-max
"""


def table1_columns() -> dict[str, str]:
    rows = [[cell.strip() for cell in line.split("|")] for line in TABLE_1.strip().splitlines()]
    names, body = rows[0], rows[1:]
    return {name: "\n".join(row[i] for row in body if row[i]) for i, name in enumerate(names)}


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_a_pasted_column_of_table_1_is_the_bundled_spec(name, paper_specs):
    pasted = vggspec.parse("name: " + name + "\n" + table1_columns()[name])
    assert pasted == paper_specs[name]


def test_table_1_cells_comma_separated_as_in_the_paper_summary():
    text = """
    input (224 × 224 RGB image)
    conv3-64, LRN
    maxpool
    conv3-128
    maxpool
    conv3-256 ×2
    maxpool
    conv3-512 ×2
    maxpool
    conv3-512 ×2
    maxpool
    FC-4096, FC-4096, FC-1000, soft-max
    """
    spec = vggspec.parse(text)
    assert spec == vggspec.load(SPECS / "A-LRN.vgg").model_copy(update={"name": None})
    assert spec.input.shape == (3, 224, 224)


def test_layer_kinds_and_defaults():
    spec = vggspec.parse("conv5-32 [bn]\nLRN\nmaxpool [size=3, stride=2]\nFC-100\nFC-10\nsoft-max")
    conv, lrn, pool, fc1, fc2, softmax = spec.layers
    assert conv == Conv(kernel=5, channels=32, bn=True)
    # Krizhevsky et al.'s LRN settings are the defaults.
    assert (lrn.n, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert isinstance(lrn, LRN)
    assert pool == MaxPool(size=3, stride=2)
    assert isinstance(fc1, FC) and isinstance(softmax, SoftMax)
    # The paper's dropout: 0.5 on every FC but the classifier.
    assert (spec.dropout(3), spec.dropout(4)) == (0.5, 0.0)
    assert fc1.dropout is None  # the spec records what was written; the default is resolved on use


def test_dropout_can_be_set_per_fc():
    spec = vggspec.parse("conv3-8\nFC-16 [dropout=0.2]\nFC-16 [dropout=0]\nFC-4 [dropout=0.1]")
    assert [spec.dropout(i) for i in (1, 2, 3)] == [0.2, 0.0, 0.1]


@pytest.mark.parametrize("repeat", ["×3", "x3", "× 3", "x 3", "*3"])
def test_repetition_spellings(repeat):
    spec = vggspec.parse(f"conv3-64 {repeat}\nFC-10")
    assert [layer.word() for layer in spec.layers] == ["conv3-64"] * 3 + ["FC-10"]


def test_repetition_and_attributes_in_either_order():
    a = vggspec.parse("conv3-64 [bn] ×2\nFC-10")
    b = vggspec.parse("conv3-64 ×2 [bn]\nFC-10")
    assert a == b
    assert all(layer.bn for layer in a.layers[:2])


@pytest.mark.parametrize(
    "declaration, shape",
    [
        ("input: 224x224 RGB", (3, 224, 224)),
        ("input: 32×32 RGB", (3, 32, 32)),
        ("input: 28x28 gray", (1, 28, 28)),
        ("input: 64 grayscale", (1, 64, 64)),
        ("input: 64x64 5 channels", (5, 64, 64)),
        ("input (224 × 224 RGB image)", (3, 224, 224)),
        ("input: 96", (3, 96, 96)),
    ],
)
def test_input_declarations(declaration, shape):
    spec = vggspec.parse(f"{declaration}\nconv3-8\nmaxpool\nFC-10")
    assert spec.input.shape == shape


def test_defaults_are_the_papers_input_and_the_file_name(tmp_path):
    path = tmp_path / "my-net.vgg"
    path.write_text("conv3-8, maxpool, FC-10\n")
    spec = vggspec.load(path)
    assert spec.input.shape == (3, 224, 224)
    assert spec.name is None and spec.display_name == "my-net"
    assert spec.source == str(path)


def test_layers_carry_their_source_position():
    spec = vggspec.parse("# header\n\nconv3-64 ×2, maxpool\n  FC-10, soft-max\n")
    positions = [(layer.line, layer.column) for layer in spec.layers]
    assert positions == [(3, 1), (3, 1), (3, 14), (4, 3), (4, 10)]


def test_comments_blank_lines_and_trailing_commas():
    text = "# a comment\nconv3-8,   # trailing comment\n\n\n   # indented comment\nmaxpool,\nFC-10 # end"
    assert [layer.word() for layer in vggspec.parse(text).layers] == ["conv3-8", "maxpool", "FC-10"]


def test_crlf_line_endings():
    assert len(vggspec.parse("conv3-8\r\nmaxpool\r\nFC-10\r\n").layers) == 3


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word, suggestion",
    [
        ("maxpol", "maxpool"),
        ("conv3_64", "conv3-64"),
        ("softmax", "soft-max"),
        ("FC4096", "FC-4096"),
        ("fc-4096", "FC-4096"),
        ("lrn", "LRN"),
        ("conv3-64x2", "conv3-64 ×2"),
        ("Maxpool", "maxpool"),
    ],
)
def test_misspelled_layers_get_did_you_mean(word, suggestion):
    text = f"input: 224x224 RGB\nconv3-64\n  {word}\nFC-10\n"
    with pytest.raises(UnknownLayerError) as info:
        vggspec.parse(text, "net.vgg")
    err = info.value
    assert (err.line, err.column) == (3, 3)
    assert err.hint == f"did you mean '{suggestion}'?"
    report = str(err)
    assert report.startswith("net.vgg:3:3: error: unknown layer")
    # the offending line, then a caret under the word
    lines = report.splitlines()
    source_line = next(i for i, line in enumerate(lines) if line.endswith(f"  {word}"))
    caret = lines[source_line + 1]
    assert caret.index("^") == lines[source_line].index(word)
    assert caret.count("^") == len(word)


def test_unknown_word_without_a_close_spelling_lists_what_exists():
    with pytest.raises(UnknownLayerError) as info:
        vggspec.parse("conv3-64\nbanana\nFC-10")
    assert info.value.hint is None
    assert "conv3-64" in info.value.expected and "maxpool" in info.value.expected


@pytest.mark.parametrize(
    "text, line, column, message",
    [
        ("conv2-64\nFC-10", 1, 1, "kernel size must be odd"),
        ("conv3-0\nFC-10", 1, 1, "channel count must be at least 1"),
        ("conv3-8\nFC-0", 2, 1, "output count must be at least 1"),
        ("conv3-8 [bm]\nFC-10", 1, 10, "has no attribute 'bm'"),
        ("conv3-8\nFC-10 [dropout=1.5]", 2, 8, "dropout is a probability"),
        ("conv3-8 ×0\nFC-10", 1, 9, "repeated 1 to"),
        ("input: 32x16\nconv3-8\nFC-10", 1, 8, "non-square"),
        ("input: 0x0\nconv3-8\nFC-10", 1, 1, "between 1 and"),
        ("conv3-8\ninput: 32x32\nFC-10", 2, 1, "before the first layer"),
        ("input: 32\ninput: 32\nFC-10", 2, 1, "declared twice"),
        ("name: a\nname: b\nFC-10", 2, 7, "named twice"),
        ("LRN [n=5, n=3]\nFC-10", 1, 11, "given twice"),
    ],
)
def test_value_errors_point_at_the_cause(text, line, column, message):
    with pytest.raises(SpecValueError) as info:
        vggspec.parse(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert message in info.value.message


def test_even_kernel_suggests_the_papers_3x3():
    with pytest.raises(SpecValueError) as info:
        vggspec.parse("conv4-64\nFC-10")
    assert info.value.hint == "did you mean 'conv3-64'?"


@pytest.mark.parametrize(
    "text, line, column, expected",
    [
        ("conv3-64 conv3-64\nFC-10", 1, 10, "','"),
        ("conv3-64 [bn\nFC-10", 1, 13, "']'"),
        ("conv3-64 ×\nFC-10", 1, 10, "a repetition"),
        ("input 224\nFC-10", 1, 7, "':'"),
        ("conv3-64 {x}\nFC-10", 1, 10, None),
    ],
)
def test_syntax_errors_say_what_was_expected(text, line, column, expected):
    with pytest.raises(SpecSyntaxError) as info:
        vggspec.parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column)
    if expected:
        assert expected in err.expected


def test_shape_error_points_at_the_pool_that_reaches_zero():
    text = "input: 16x16 RGB\nconv3-8\n" + "maxpool\n" * 5 + "FC-10\n"
    with pytest.raises(ShapeError) as info:
        vggspec.parse(text, "small.vgg")
    err = info.value
    assert (err.line, err.column) == (7, 1)  # the fifth maxpool
    assert "pool5" in err.message and "16 → pool1 8" in err.message
    assert "at least 32×32" in err.hint


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("conv3-8\nmaxpool", 2, "no classifier"),
        ("FC-10\nconv3-8", 2, "after the fully-connected layer"),
        ("conv3-8\nFC-10\nmaxpool", 3, "after the fully-connected layer"),
        ("conv3-8\nsoft-max\nFC-10", 2, "soft-max must be the last layer"),
        ("# nothing\n", 1, "no layers"),
    ],
)
def test_structural_errors(text, line, message):
    with pytest.raises(ShapeError) as info:
        vggspec.parse(text)
    assert info.value.line == line
    assert message in info.value.message


def test_every_error_is_a_spec_error_with_a_position():
    for cls in (SpecSyntaxError, UnknownLayerError, SpecValueError, ShapeError):
        assert issubclass(cls, SpecError)
    with pytest.raises(SpecError) as info:
        vggspec.parse("conv3-64 ]")
    assert info.value.line == 1 and info.value.column == 10


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        vggspec.load(tmp_path / "nope.vgg")


def test_check_false_skips_the_shape_check():
    spec = vggspec.parse("input: 8\n" + "maxpool\n" * 5 + "FC-10", check=False)
    with pytest.raises(ShapeError):
        vggspec.analyze(spec)


def test_a_byte_order_mark_is_dropped():
    text = "input: 32x32 RGB\nconv3-8\nmaxpool\nFC-10\n"
    assert vggspec.parse("\ufeff" + text) == vggspec.parse(text)


@pytest.mark.parametrize(
    "line, column, named, hint",
    [
        ("\u0441onv3-64", 1, "'\u0441' (U+0441 CYRILLIC SMALL LETTER ES) in '\u0441onv3-64'", "retype it"),
        ("conv3-64,\u00a0maxpool", 10, "U+00A0 NO-BREAK SPACE (invisible)", "plain space"),
        ("conv3-64\x00", 9, "U+0000 NULL (invisible)", "control character"),
        ("conv3-64, maxp\u043el", 15, "'\u043e' (U+043E CYRILLIC SMALL LETTER O)", "retype it"),
    ],
)
def test_an_unexpected_character_is_named_by_its_code_point(line, column, named, hint):
    with pytest.raises(SpecSyntaxError) as info:
        vggspec.parse(f"input: 32x32 RGB\n{line}\nFC-10\n")
    assert (info.value.line, info.value.column) == (2, column)
    assert f"unexpected character {named}" in info.value.message and hint in info.value.hint
    assert "\x00" not in str(info.value)  # the echoed line shows a control character, not the byte


def test_an_error_on_a_huge_line_shows_the_spot_not_the_line():
    text = "input: 32x32 RGB\n" + "conv3-8, " * 2_000 + "maxpol, FC-10\n"  # 18,000 characters
    with pytest.raises(SpecError) as info:
        vggspec.parse(text)
    report = str(info.value)
    assert len(report) < 1000 and "…" in report
    source, caret = report.splitlines()[1:3]
    assert source[caret.index("^")] == "m"  # the caret is under the culprit's first letter
