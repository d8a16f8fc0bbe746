"""vggspec diff and table --mark-added: two networks' layers aligned as Table 1's bold layers say."""

import json
import re
import shutil

import networkx as nx
import pytest

import vggspec
from vggspec import analyze, format_spec
from vggspec.cli import main
from vggspec.plan.diff import align, diff, new_layers

from .conftest import PAPER_CONFIGS, SPECS
from .test_architecture import _imports_torch, module_graph, module_names
from .test_notebook import cells

# The layers Table 1 sets in bold in each column, against the column before it (A-LRN against A):
# (status, old layer, new layer) for every row that is not "same", in order.
PAPER_CHANGES = {
    ("A", "B"): [("added", None, "conv3-64"), ("added", None, "conv3-128")],
    ("B", "C"): [("added", None, "conv1-256"), ("added", None, "conv1-512"), ("added", None, "conv1-512")],
    ("C", "D"): [
        ("changed", "conv1-256", "conv3-256"),
        ("changed", "conv1-512", "conv3-512"),
        ("changed", "conv1-512", "conv3-512"),
    ],
    ("D", "E"): [("added", None, "conv3-256"), ("added", None, "conv3-512"), ("added", None, "conv3-512")],
    ("A", "A-LRN"): [("added", None, "LRN")],
}


@pytest.mark.parametrize("old, new", list(PAPER_CHANGES))
def test_consecutive_columns_of_table_1_differ_by_the_papers_bold_layers(paper_specs, old, new):
    changes = diff(paper_specs[old], paper_specs[new])
    differing = [(row.status, row.old_text, row.new_text) for row in changes.rows if row.status != "same"]
    assert differing == PAPER_CHANGES[(old, new)]
    assert not changes.same
    kept = [row for row in changes.rows if row.status == "same"]
    assert len(kept) + changes.count("changed") + changes.count("removed") == len(paper_specs[old].layers)
    assert len(changes.rows) - changes.count("removed") == len(paper_specs[new].layers)


def test_each_added_layer_sits_in_its_own_stage(paper_specs):
    """One new layer per stage, at the stage's end (before its maxpool), as the paper draws them."""
    for old, new in [("A", "B"), ("B", "C"), ("D", "E")]:
        rows = diff(paper_specs[old], paper_specs[new]).rows
        stages_of_added = []
        stage = 0
        for before, row in zip(rows, rows[1:]):
            if before.new_text == "maxpool":
                stage += 1
            if row.status == "added":
                stages_of_added.append(stage)
                following = rows[rows.index(row) + 1]
                assert following.new_text == "maxpool", (old, new, row)
        assert stages_of_added == {"B": [0, 1], "C": [2, 3, 4], "E": [2, 3, 4]}[new]


def test_the_receptive_field_grows_at_the_stage_ends_after_an_added_layer(paper_specs):
    changes = diff(paper_specs["D"], paper_specs["E"])
    pools = [row for row in changes.rows if row.ends_stage]
    assert [(p.old.receptive_field, p.new.receptive_field) for p in pools] == [
        (6, 6),
        (16, 16),
        (44, 52),
        (100, 124),
        (212, 268),
    ]
    text = str(changes)
    assert "44 → 52" in text and "212 → 268" in text


def test_the_summary_counts_and_totals(paper_specs):
    changes = diff(paper_specs["B"], paper_specs["C"])
    summary = str(changes).splitlines()[-1]
    assert summary.startswith("B → C: 3 added, 0 removed, 0 changed; params +591 k (+0.44%), MACs +462 M")
    assert "activations +1.3 M" in summary


def test_a_layer_added_to_a_run_is_its_last():
    """Three conv3-8 where there were two: the third is added (Table 1 bolds the last of a run)."""
    old = vggspec.parse("input: 32x32 RGB\nconv3-8 ×2\nmaxpool\nFC-10")
    new = vggspec.parse("input: 32x32 RGB\nconv3-8 ×3\nmaxpool\nFC-10")
    assert align(old.layers, new.layers) == [(0, 0), (1, 1), (None, 2), (2, 3), (3, 4)]


def test_an_inserted_layer_is_added_not_every_later_one_changed():
    old = vggspec.parse("input: 32x32 RGB\nconv3-8\nconv3-16\nconv3-32\nmaxpool\nFC-10")
    new = vggspec.parse("input: 32x32 RGB\nconv3-8\nconv3-12\nconv3-16\nconv3-32\nmaxpool\nFC-10")
    statuses = [row.status for row in diff(old, new).rows]
    assert statuses == ["same", "added", "same", "same", "same", "same"]


def test_layers_of_different_kinds_never_pair_and_settings_make_a_change():
    old = vggspec.parse("input: 32x32 RGB\nconv3-8\nmaxpool\nFC-10")
    new = vggspec.parse("input: 32x32 RGB\nconv3-8 [bn]\nLRN\nmaxpool\nFC-10")
    rows = [(row.status, row.old_text, row.new_text) for row in diff(old, new).rows]
    assert rows == [
        ("changed", "conv3-8", "conv3-8 [bn]"),
        ("added", None, "LRN"),
        ("same", "maxpool", "maxpool"),
        ("same", "FC-10", "FC-10"),
    ]


def test_another_input_size_is_a_difference_even_with_the_same_layers():
    old = vggspec.parse("input: 32x32 RGB\nconv3-8\nmaxpool\nFC-10")
    new = vggspec.parse("input: 64x64 RGB\nconv3-8\nmaxpool\nFC-10")
    changes = diff(old, new)
    assert all(row.status == "same" for row in changes.rows) and not changes.same
    assert str(changes).startswith("input: 32x32 RGB → 64x64 RGB")


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_a_spec_and_its_formatted_text_are_the_same_network(tmp_path, capsys, name):
    written = vggspec.load(SPECS / f"{name}.vgg")
    formatted = tmp_path / f"{name}-formatted.vgg"
    formatted.write_text(format_spec(written))
    assert diff(written, vggspec.load(formatted)).same
    assert main(["diff", str(SPECS / f"{name}.vgg"), str(formatted)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{name} → {name}: the same network"


def test_names_comments_and_spelling_do_not_count(tmp_path, capsys):
    one = tmp_path / "one.vgg"
    two = tmp_path / "two.vgg"
    one.write_text("name: first\ninput: 32x32 RGB\nconv3-8 ×2  # two at once\nmaxpool\nFC-10\n")
    two.write_text("# another file\nname: second\ninput: 32x32 RGB\nconv3-8\nconv3-8\nmaxpool\nFC-10\n")
    assert main(["diff", str(one), str(two)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "first → second: the same network"
    assert main(["diff", str(one), str(two), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is True


def test_different_networks_exit_1_and_a_missing_file_2(capsys):
    assert main(["diff", "B", "C"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("B → C: 3 added, 0 removed, 0 changed;")
    assert re.search(r"^added +conv1-256 +\+65,792 +\+205,520,896 +\+802,816$", out, re.MULTILINE)
    assert main(["diff", "B", str(SPECS / "no-such.vgg")]) == 2
    assert "no such spec file" in capsys.readouterr().err


def test_a_spec_error_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.vgg"
    bad.write_text("input: 32x32 RGB\nconv3-8\nmaxpoo\nFC-10\n")
    assert main(["diff", "A", str(bad)]) == 2
    assert "bad.vgg:3:" in capsys.readouterr().err


@pytest.mark.parametrize("old, new", list(PAPER_CHANGES))
def test_json_totals_are_the_analyses_totals(paper_specs, capsys, old, new):
    assert main(["diff", old, new, "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["old"], out["new"], out["same"]) == (old, new, False)
    before, after = analyze(paper_specs[old]), analyze(paper_specs[new])
    for number in ("params", "macs", "activations"):
        total = out["total"][number]
        old_total, new_total = getattr(before, number), getattr(after, number)
        assert total == {"old": old_total, "new": new_total, "delta": new_total - old_total}
        assert total["delta"] == sum(layer["delta"][number] for layer in out["layers"])
    rows = [(layer["status"], layer["old"], layer["new"]) for layer in out["layers"] if layer["status"] != "same"]
    assert rows == [tuple(change) for change in PAPER_CHANGES[(old, new)]]
    assert all(set(layer) >= {"status", "old", "new"} for layer in out["layers"])


def test_a_checkpoint_and_a_run_folder_are_read_for_their_spec(tmp_path, capsys):
    checkpoint = tmp_path / "a.pt"
    assert main(["compile", "small/A-narrow-32", "-o", str(checkpoint)]) == 0
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(checkpoint, run / "best.pt")
    assert main(["diff", "small/A-narrow-32", str(checkpoint)]) == 0
    assert main(["diff", str(run), "small/D-narrow-32-bn"]) == 1
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "empty-run"), "A"]) == 2


def test_table_mark_added_bolds_exactly_the_papers_layers(capsys):
    assert main(["table", "--mark-added"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| A | A-LRN | B | C | D | E |"
    bold = [
        (row, column, cell)
        for row, line in enumerate(lines)
        for column, cell in enumerate(line.strip("|").split(" | "))
        if "**" in cell
    ]
    columns = {column for _, column, _ in bold}
    assert columns == {1, 2, 3, 4, 5}
    by_column = {c: [cell.strip() for _, column, cell in bold if column == c] for c in columns}
    assert by_column == {
        1: ["**LRN**"],
        2: ["**conv3-64**", "**conv3-128**"],  # against A-LRN: its LRN is gone, not shown
        3: ["**conv1-256**", "**conv1-512**", "**conv1-512**"],
        4: ["**conv3-256**", "**conv3-512**", "**conv3-512**"],
        5: ["**conv3-256**", "**conv3-512**", "**conv3-512**"],
    }
    assert "|  |  |  | **conv1-256** | **conv3-256** | conv3-256 |" in lines
    assert "|  |  |  |  |  | **conv3-256** |" in lines
    assert main(["table"]) == 0
    assert "**" not in capsys.readouterr().out


def test_new_layers_against_the_column_before(paper_specs):
    specs = [paper_specs[name] for name in ("A", "B", "C")]
    assert new_layers(specs) == [set(), {1, 4}, {8, 12, 16}]
    assert [specs[2].layers[i].word() for i in sorted(new_layers(specs)[2])] == ["conv1-256", "conv1-512", "conv1-512"]


def test_diff_never_reaches_torch_code():
    graph = module_graph()
    reached = nx.descendants(graph, "plan.diff") | {"plan.diff"}
    torch_modules = {name for name, path in module_names().items() if _imports_torch(path)}
    assert reached.isdisjoint(torch_modules), reached & torch_modules
    assert not any(name.startswith("cli") for name in reached) and "diff" in vggspec.__all__


def test_diff_reads_checkpoints_as_every_reader_does(tmp_path, capsys):
    """A checkpoint's weights edited after it was written (a flipped bit: weights ×1000 under the old checksum)
    are refused by diff as by load_model, not called "the same network"; a truncated checkpoint is said to be
    one, not read as spec text ("not UTF-8"); a .safetensors checkpoint under any name is a checkpoint."""
    torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")
    spec = vggspec.parse("input: 16x16 RGB\nconv3-4\nmaxpool\nFC-8\nFC-3\n", filename="tiny.vgg")
    (tmp_path / "tiny.vgg").write_text(format_spec(spec))
    checkpoint = vggspec.save_checkpoint(vggspec.build(spec, init="kaiming", seed=0), tmp_path / "tiny.pt")
    assert main(["diff", str(checkpoint), str(tmp_path / "tiny.vgg")]) == 0
    capsys.readouterr()

    data = torch.load(checkpoint, weights_only=True)
    data["state_dict"]["features.conv1_1.conv.weight"].mul_(1000)  # the checksums left as they were
    edited = tmp_path / "edited.pt"
    torch.save(data, edited)
    assert main(["diff", str(edited), str(tmp_path / "tiny.vgg")]) == 2
    err = capsys.readouterr().err
    assert "checksum" in err and "same" not in err

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    assert main(["diff", str(truncated), "A"]) == 2
    err = capsys.readouterr().err
    assert "UTF-8" not in err and "truncated" in err, err

    other_name = tmp_path / "weights.bin"
    vggspec.save_checkpoint(vggspec.build(spec, init="kaiming", seed=0), tmp_path / "tiny.safetensors")
    shutil.copy(tmp_path / "tiny.safetensors", other_name)
    assert main(["diff", str(other_name), str(tmp_path / "tiny.vgg")]) == 0


# -- in Jupyter ------------------------------------------------------------------------------


def test_a_diff_shows_in_jupyter_with_its_new_layers_marked():
    changes = vggspec.diff(vggspec.load("B"), vggspec.load("C"))
    page = changes._repr_html_()
    table = cells(page)
    header, *rows = table.rows
    assert header[1:3] == ["B", "C"] and {"params", "MACs", "activations", "RF at stage end"} <= set(header)
    text_rows = [line.split() for line in str(changes).splitlines()[2:-2]]
    assert [[cell for cell in row if cell] for row in rows] == text_rows  # the text form's cells, row for row
    assert table.caption == changes.summary()
    added = re.findall(r'<tr class="vggspec-added">(.*?)</tr>', page)
    assert len(added) == changes.count("added") == 3
    assert all(cell.count("font-weight:bold") == len(header) for cell in added)
    assert page.count("font-weight:bold") == 3 * len(header)  # the same layers are not marked
    assert '<tr class="vggspec-same">' in page


def test_a_diff_marks_changed_layers_escapes_names_and_says_the_input_changed():
    old = vggspec.parse("name: <old> & co\ninput: 32x32 RGB\nconv3-8\nmaxpool\nFC-10\n")
    new = vggspec.parse("name: new\ninput: 64x64 RGB\nconv3-8 [bn]\nmaxpool\nFC-10\n")
    page = vggspec.diff(old, new)._repr_html_()
    assert "<old>" not in page and "&lt;old&gt; &amp; co" in page
    table = cells(page)  # raises on any tag but the table's
    assert table.caption.startswith("input: 32x32 RGB → 64x64 RGB; <old> & co → new: 0 added, 0 removed, 1 changed")
    changed = re.findall(r'<tr class="vggspec-changed">(.*?)</tr>', page)
    assert len(changed) == 1 and "conv3-8 [bn]" in changed[0] and "font-weight:bold" in changed[0]
    assert table.rows[1][:3] == ["changed", "conv3-8", "conv3-8 [bn]"]
