"""Specs in notebooks and reports: the HTML view, analyze's markdown and CSV, and `vggspec list`."""

import csv
import io
import json
import subprocess
import sys
from html.parser import HTMLParser

import vggspec
from vggspec.cli import main
from vggspec.spec.bundled import bundled_names

D_PARAMS = 138_357_544  # Table 2: 138 million
D_MACS = 15_470_264_320


class Cells(HTMLParser):
    """The table's rows as lists of cell texts (th or td), and its caption."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self._where: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._where = "cell"
        elif tag == "caption":
            self._where = "caption"
        elif tag != "table":
            raise AssertionError(f"unexpected <{tag}>: text was not escaped")

    def handle_endtag(self, tag):
        self._where = None

    def handle_data(self, data):
        if self._where == "cell":
            self.rows[-1][-1] += data
        elif self._where == "caption":
            self.caption += data


def cells(html: str) -> Cells:
    parser = Cells()
    parser.feed(html)
    return parser


# -- Jupyter -------------------------------------------------------------------------------


def test_an_analysis_shows_in_jupyter_as_a_table_with_totals():
    analysis = vggspec.analyze(vggspec.load("D"))
    table = cells(analysis._repr_html_())
    header, *layers, totals = table.rows
    assert len(table.rows) == len(analysis.layers) + 2
    assert {"output (C×H×W)", "params", "MACs", "RF"} <= set(header)
    assert all(len(row) == len(header) for row in table.rows)
    assert [row[header.index("name")] for row in layers] == [la.name for la in analysis.layers]
    assert totals[header.index("params")] == f"{analysis.params:,}" == f"{D_PARAMS:,}"
    assert totals[header.index("MACs")] == f"{D_MACS:,}"
    pool5 = layers[[la.name for la in analysis.layers].index("pool5")]
    assert (pool5[header.index("output (C×H×W)")], pool5[header.index("RF")]) == ("512×7×7", "212")


def test_a_spec_shows_as_its_analysis_and_its_text_is_escaped():
    spec = vggspec.parse("name: x <b>&</b>\ninput: 32x32 RGB\nconv3-8\nmaxpool\nFC-10\nsoft-max\n")
    html = spec._repr_html_()
    assert html == vggspec.analyze(spec)._repr_html_()
    assert "<b>" not in html and "&lt;b&gt;&amp;" in html
    table = cells(html)  # raises on any tag but the table's
    assert table.caption.startswith("x <b>&</b>")
    assert len(table.rows) == 4 + 2
    assert table.rows[-1][table.rows[0].index("params")] == f"{vggspec.analyze(spec).params:,}"


def test_a_spec_too_small_for_its_input_shows_the_error_not_a_traceback():
    spec = vggspec.load("D").with_input_size(16)
    html = spec._repr_html_()
    assert html.startswith("<pre>") and "the spatial size reaches zero" in html


def test_the_drawing_renders_inline_and_importing_vggspec_needs_no_graphviz():
    dot = vggspec.to_dot(vggspec.analyze(vggspec.load("small/A-narrow-32")))
    bundle = dot._repr_mimebundle_()  # what Jupyter calls: SVG from Graphviz's dot
    assert "<svg" in bundle["image/svg+xml"] and "conv1_1" in bundle["image/svg+xml"]
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, vggspec; print('graphviz' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"


def test_print_of_an_analysis_is_what_vggspec_analyze_prints(capsys):
    for name in ("D", "small/A-narrow-32"):
        assert main(["analyze", name]) == 0
        assert str(vggspec.analyze(vggspec.load(name))) + "\n" == capsys.readouterr().out
    print(vggspec.analyze(vggspec.load("E")))
    out = capsys.readouterr().out
    assert "conv5_4" in out and "parameters:  143,667,240" in out and "Analysis(" not in out
    # the title and a blank line, the header and its rule, a row per layer, the totals row, a blank line, 5 totals
    assert len(out.splitlines()) == 2 + 2 + len(vggspec.analyze(vggspec.load("E")).layers) + 1 + 1 + 5


def test_a_list_of_analyses_shows_short_reprs_and_a_spec_keeps_its_own():
    specs = [vggspec.load(name) for name in ("A", "D")]
    analyses = [vggspec.analyze(spec) for spec in specs]
    shown = repr(analyses)
    assert shown.count("<Analysis of ") == 2 and len(shown) < 200
    assert repr(specs[1]).startswith("Spec(name='D', input=InputShape(channels=3, size=224")  # pydantic's, as it was
    assert repr(specs[1]).count("Conv(kind='conv'") == 13


# -- analyze --format markdown | csv --------------------------------------------------------


def test_analyze_csv_has_a_row_per_layer_with_the_analysis_numbers(capsys):
    assert main(["analyze", "D", "small/A-narrow-32", "--format", "csv"]) == 0
    header, *rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header[:5] == ["spec", "#", "name", "layer", "line"]
    assert {"output (C×H×W)", "params", "MACs", "activations", "RF", "stride", "padding"} <= set(header)
    d = vggspec.analyze(vggspec.load("D"))
    narrow = vggspec.analyze(vggspec.load("small/A-narrow-32"))
    d_rows = [row for row in rows if row[0] == "D"]
    assert len(d_rows) == len(d.layers) and len(rows) == len(d.layers) + len(narrow.layers)
    column = {title: i for i, title in enumerate(header)}
    assert [int(row[column["params"]]) for row in d_rows] == [la.params for la in d.layers]
    assert sum(int(row[column["params"]]) for row in d_rows) == D_PARAMS
    assert sum(int(row[column["MACs"]]) for row in d_rows) == D_MACS
    assert [row[column["name"]] for row in d_rows][-3:] == ["fc7", "fc8", "prob"]


def test_analyze_csv_keeps_the_chosen_columns(capsys):
    assert main(["analyze", "D", "--format", "csv", "--params"]) == 0
    header = next(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header == ["spec", "#", "name", "layer", "line", "params"]


def test_analyze_markdown_is_a_pipe_table_per_spec_with_totals(capsys):
    assert main(["analyze", "D", "E", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    d, e = (vggspec.analyze(vggspec.load(name)) for name in ("D", "E"))
    pipe_rows = [line for line in out.splitlines() if line.startswith("|")]
    # each spec: header, alignment rule, a row per layer, totals
    assert len(pipe_rows) == (len(d.layers) + 3) + (len(e.layers) + 3)
    assert [line for line in out.splitlines() if line.startswith("### ")][0].startswith("### D")
    rule = pipe_rows[1]
    assert rule.startswith("|---:|---|---|") and set(rule) <= set("|-:")
    totals = next(line for line in pipe_rows if f"**{D_PARAMS:,}**" in line)
    assert "**total**" in totals and "**16 weight layers**" in totals
    assert sum(1 for line in pipe_rows if "| conv5_4 |" in line) == 1  # D has none; E one


# -- vggspec list --------------------------------------------------------------------------


def test_list_shows_every_bundled_spec_once(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "display", "name"] and set(lines[1]) <= {"-", " "}
    names = [line.split()[0] for line in lines[2:]]
    assert names == bundled_names() and len(set(names)) == len(names) == 10
    assert names[:6] == ["A", "A-LRN", "B", "C", "D", "E"]


def test_list_d_shows_its_parameters_and_input(capsys):
    assert main(["list", "D"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"D", "small/D-narrow-32-bn"}  # a substring, case aside
    assert "138,357,544" in rows["D"] and "224×224 RGB" in rows["D"] and " 1000 " in rows["D"]
    assert "15.5 G" in rows["D"]


def test_list_patterns_are_globs_or_substrings_case_aside(capsys):
    assert main(["list", "SMALL/*", "--format", "json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == [n for n in bundled_names() if "/" in n]
    assert main(["list", "[de]", "--format", "json"]) == 0  # a glob matches the whole name
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == ["D", "E"]
    assert main(["list", "gray", "--format", "json"]) == 0
    assert {e["input"][0] for e in json.loads(capsys.readouterr().out)} == {1}


def test_list_json_for_scripts(capsys):
    assert main(["list", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == bundled_names()
    d = next(e for e in entries if e["name"] == "D")
    assert d == {
        "name": "D",
        "display_name": "D",
        "source": d["source"],
        "input": [3, 224, 224],
        "classes": 1000,
        "params": D_PARAMS,
        "macs": D_MACS,
    }
    assert d["source"].endswith("D.vgg")
    narrow = next(e for e in entries if e["name"] == "small/A-narrow-32")
    assert (narrow["display_name"], narrow["input"], narrow["classes"]) == ("A narrow 32", [3, 32, 32], 10)


def test_list_of_nothing_is_one_line_and_exit_1(capsys):
    assert main(["list", "no-such-net"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and "no-such-net" in captured.err
