"""``vggspec study``: the plan, its cells and their paper's scales, a study's files (results.csv, tables.md, the plot),
and a study that continues: finished cells kept, a killed one resumed, a changed one retrained."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

import vggspec
from vggspec.cli import main
from vggspec.data.scales import TrainingScale, parse_train_scales
from vggspec.errors import SpecError
from vggspec.plan.budget import TrainSettings, train_budget
from vggspec.run.study import (
    POSTERIORS,
    STATE,
    StudyConfig,
    StudyState,
    next_step,
    plan_cells,
)
from vggspec.run.study_report import CSV_COLUMNS, CellResults, fusion_groups
from vggspec.units import human_bytes, human_count

from .test_cli import run, without_torch

# Two narrow nets of different depth for 16×16 inputs and 3 classes; the first's first four convolutions and its
# FC layers fit the second (Section 3.1's transfer from A).
SHALLOW = "name: tiny A\ninput: 16x16 RGB\nconv3-4\nmaxpool\nconv3-8\nmaxpool\nconv3-8 ×2\nmaxpool\nFC-16 ×2\nFC-3\n"
DEEP = SHALLOW.replace("tiny A", "tiny B").replace("conv3-4\n", "conv3-4 ×2\n").replace("conv3-8\n", "conv3-8 ×2\n")
RECIPE = ["--epochs", "1", "--batch-size", "16", "--lr", "0.05", "--init", "kaiming", "--normalise", "mean",
          "--workers", "0", "--stats-images", "40", "--no-progress"]  # fmt: skip


def write_specs(folder: Path, deep: str = DEEP) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.vgg").write_text(SHALLOW)
    (folder / "b.vgg").write_text(deep)
    return str(folder / "a.vgg"), str(folder / "b.vgg")


def mtimes(study: Path) -> dict[str, int]:
    """Each cell's last.pt, by cell: a cell trained again writes it again."""
    return {str(p.parent.relative_to(study)): p.stat().st_mtime_ns for p in sorted(study.glob("*/*/last.pt"))}


# -- the plan ----------------------------------------------------------------------------------------------


def test_help_takes_trains_recipe_and_says_how_gpus_are_used(capsys):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    shown = capsys.readouterr().out
    flags = set(re.findall(r"^\s+(--[a-z][a-z-]*)", shown, re.M))  # the options, not the words of the help
    assert {"--train-scales", "--init-from-first", "--dry-run", "--format", "--lr", "--epochs", "--gpus"} <= flags
    assert not flags & {"--scale", "--resume", "--nnodes", "--rdzv-endpoint"}  # the study's, or another machine's
    assert "each over every GPU given" in " ".join(shown.split())


def test_training_scales_are_read_as_the_paper_writes_them():
    assert parse_train_scales("256,384,256-512", 224) == [(256, 256), (384, 384), (256, 512)]
    assert parse_train_scales("256:512", 224) == [(256, 512)]
    assert parse_train_scales(None, 224) == [(256, 256)] and parse_train_scales(None, 32) == [(37, 37)]
    for text, said in (
        ("256,big", "cannot read 'big'"),
        ("512-256", "S_min ≤ S_max"),
        ("200", "does not fit 224×224 crops"),
        ("256,256:256", "--train-scales 256 and 256:256 are both S = 256"),
    ):
        with pytest.raises(SpecError, match=re.escape(said)):
            parse_train_scales(text, 224)
    with pytest.raises(SpecError, match=re.escape("--train-scales 256 and 250 are both S = 18 for 16-pixel inputs")):
        parse_train_scales("256,250", 16)


def test_the_papers_scales_for_a_32_pixel_input(tmp_path):
    """S = 256, 384, [256;512] are 37, 55, [37;73] at 32 pixels; Table 4's ±32 is ±5; Table 3's Q for a jittered S
    is the middle of its range; the deeper net's cells start from the first's at the same scale."""
    notes: list[str] = []
    config = StudyConfig(
        specs=["small/A-narrow-32", "small/D-narrow-32-bn"], data=str(tmp_path), out=str(tmp_path / "study"),
        recipe={"lr": 0.05, "workers": 0}, train_scales="256,384,256-512", init_from_first=True,
    )  # fmt: skip
    cells = plan_cells(config, notes)
    assert [c.key for c in cells] == [f"{net}/{s}" for net in ("A-narrow-32", "D-narrow-32-bn")
                                      for s in ("S37", "S55", "S37-73")]  # fmt: skip
    assert [c.scale for c in cells[:3]] == [(37, 37), (55, 55), (37, 73)]
    assert [c.single_scales for c in cells[:3]] == [[37], [55], [55]]
    assert [c.multi_scales for c in cells[:3]] == [[32, 37, 42], [50, 55, 60], [37, 55, 73]]
    assert [c.init_from for c in cells] == [None, None, None, *cells[:3]]
    assert cells[0].run == tmp_path / "study" / "A-narrow-32" / "S37"
    assert any("for 32-pixel ones" in n and "are 37, 55, 73" in n and "S−5, S, S+5" in n for n in notes), notes
    assert (  # the rows dense evaluation leaves out, Q mod 32, said once for each network
        "note: at Q = 37, 42, 50, 55, 60 and 73, A narrow 32's dense evaluation leaves the last 5, 10, 18, 23, 28 and "
        "9 rows and columns of the shorter side outside every pooling window (a Q that is a multiple of its stride, "
        "32, uses every pixel)"
    ) in notes
    recipe = cells[3].recipe
    assert recipe["lr"] == 0.05 and recipe["scale"] == "37" and recipe["init_from"].startswith("A-narrow-32/S37 ")
    assert "workers" not in recipe and "gpus" not in recipe  # how the work is done: not what is learned


def test_a_test_scale_below_the_input_is_left_out_and_said(tmp_path):
    notes: list[str] = []
    (cell,) = plan_cells(StudyConfig(specs=["small/A-narrow-32"], data=str(tmp_path), out=str(tmp_path),
                                     train_scales="224"), notes)  # fmt: skip
    assert cell.scale == (32, 32) and cell.multi_scales == [32, 37]
    assert any("Q = 27 is below its 32-pixel input; Table 4 tests it at 32, 37" in n for n in notes), notes


def test_what_the_study_does_with_a_cell_follows_its_record(tmp_path):
    """Done, evaluated again, resumed, continued to more epochs, or started anew with the change said."""

    def step_for(epochs: int = 2, lr: float = 0.05, **entry):
        config = StudyConfig(specs=[a], data=str(tmp_path), out=str(study), recipe={"epochs": epochs, "lr": lr})
        (cell,) = plan_cells(config)
        state = StudyState(study)
        if entry:
            state.cells[cell.key] = {"recipe": {**recorded.recipe, **entry.pop("changes", {})}, **entry}
        return next_step(cell, state), cell

    a, _ = write_specs(tmp_path / "specs")
    study = tmp_path / "study"
    step, recorded = step_for()
    assert (step.train, step.evaluate, step.said) == ("new", True, "trains")
    recorded.run.mkdir(parents=True)
    (recorded.run / "last.pt").write_bytes(b"")
    assert step_for()[0].said.startswith("starts anew: ") and "no record" in step_for()[0].said
    assert step_for(trained=False)[0].train == "resume"
    protocol = recorded.protocol
    assert step_for(trained=True, evaluation={"protocol": protocol})[0].said == "trained; evaluates"  # no posteriors
    (recorded.run / POSTERIORS).write_bytes(b"")
    assert step_for(trained=True, evaluation={"protocol": protocol})[0].done
    assert step_for(trained=True, evaluation={"protocol": {**protocol, "single": [99]}})[0].said == "trained; evaluates"
    grown = step_for(epochs=4, trained=True, evaluation={"protocol": protocol})[0]
    assert (grown.train, grown.said) == ("continue", "continues to 4 epochs (it had 2)")
    shrunk = step_for(epochs=1, trained=True)[0]
    assert (shrunk.train, shrunk.said) == ("anew", "recipe changed (epochs 2 → 1): starts anew")
    changed = step_for(lr=0.01, trained=True)[0]
    assert changed.said == "recipe changed (lr 0.05 → 0.01): starts anew"


def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys, shapes):
    a, b = write_specs(tmp_path / "specs")
    out = str(tmp_path / "study")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.vgg").write_text(DEEP)
    config = tmp_path / "recipe.json"
    config.write_text('{"scale": "256"}')
    for args, said in (
        ([a, b, "--train-scales", "256,x"], "--train-scales: cannot read 'x'"),
        ([a, str(tmp_path / "other" / "a.vgg")], "would share STUDY/a"),
        ([a, a], "is given twice"),
        ([a, "--config", str(config)], "a study sets scale itself"),
        ([a, b, "--init-from-first", "--init-from", a], "--init-from-first and --init-from both"),
        ([a, "--data", str(tmp_path / "nowhere")], "the data directory"),
    ):
        assert main(["study", "--data", str(shapes), *args, "--out", out, *RECIPE]) == 2, args
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) <= 2, err  # the error and its hint
    assert not Path(out).exists()


def test_a_dry_run_shows_the_plan_trains_nothing_and_needs_no_torch(tmp_path, shapes):
    a, b = write_specs(tmp_path / "specs")
    study = tmp_path / "study"
    args = ["study", a, b, "--data", str(shapes), "--out", str(study), "--train-scales", "256,256-512", "--dry-run",
            "--init-from-first", *RECIPE]  # fmt: skip
    no_torch = without_torch(tmp_path)
    result = run(*args, env=no_torch)
    assert result.returncode == 0, result.stderr
    assert not study.exists()
    budget = train_budget(vggspec.load(b), TrainSettings(batch=16, device="cpu"))
    row = next(line for line in result.stdout.splitlines() if line.startswith("b/S18-37 "))
    deep = vggspec.analyze(vggspec.load(b))
    assert f"{deep.params:,}" in row and human_count(deep.flops) in row and "[18;37]" in row and "a/S18-37" in row
    assert human_bytes(budget.peak_bytes) in row and row.rstrip().endswith("trains")
    assert "4 cells on 96 training images in 3 classes (36 validation images); nothing trained" in result.stdout
    result = run(*args, "--format", "json", "--device", "h100", env=no_torch)
    plan = json.loads(result.stdout)
    assert [c["cell"] for c in plan["cells"]] == ["a/S18", "a/S18-37", "b/S18", "b/S18-37"]
    assert plan["cells"][3]["step_memory_bytes"] == budget.peak_bytes and plan["cells"][3]["action"] == "new"
    assert plan["cells"][3]["time_at_least_seconds"] > plan["cells"][1]["time_at_least_seconds"] > 0  # deeper: longer
    assert plan["cells"][1]["test_scales_single"] == [27] and plan["cells"][1]["test_scales_multi"] == [18, 27, 37]
    assert not study.exists()


def test_a_dry_run_refuses_a_network_whose_classes_are_not_the_folders_as_its_run_would(tmp_path, shapes):
    """The second spec ends in FC-5 for 3 class folders: the run of its first cell would stop at its start; the
    dry run says so in the run's words (exit 2), and --num-classes auto makes it a plan that trains."""
    a, b = write_specs(tmp_path / "specs", DEEP.replace("FC-3", "FC-5"))
    line = DEEP.splitlines().index("FC-3") + 1
    study = tmp_path / "study"
    args = ["study", a, b, "--data", str(shapes), "--out", str(study), "--dry-run", *RECIPE]
    no_torch = without_torch(tmp_path)
    refused = run(*args, env=no_torch)
    assert refused.returncode == 2 and refused.stdout == "", refused.stderr
    err = refused.stderr.splitlines()
    said = f"{b}:{line}:1: error: {b} ends in FC-5 (5 classes) but {shapes / 'train'} has 3 class folders"
    assert err[0] == said, err
    assert err[-1] == "hint: change the last FC layer to FC-3 or give --num-classes 3 (or auto), or train on the " \
        "data it was written for"  # fmt: skip
    assert "Traceback" not in refused.stderr and not study.exists()

    planned = run(*args, "--num-classes", "auto", env=no_torch)
    assert planned.returncode == 0, planned.stderr
    assert "note: tiny B's FC-5 becomes FC-3 (--num-classes auto: 3 classes)" in planned.stdout.splitlines()
    assert all(line.rstrip().endswith("trains") for line in planned.stdout.splitlines() if line.startswith("b/S"))


def test_fusions_are_the_two_best_networks_and_all_of_them():
    def cell(network: str, key: str, top1: float) -> CellResults:
        rows = [{"protocol": "multi-scale", "method": "both", "test_scales": [1], "top1_err": top1, "top5_err": 0.0}]
        return CellResults(key, network, 3, 10, 10, TrainingScale(18, 18), Path(key), rows, 9, 3)

    a1, a2, b, c = cell("A", "a1", 0.4), cell("A", "a2", 0.3), cell("B", "b", 0.5), cell("C", "c", 0.2)
    assert [[r.key for r in g] for g in fusion_groups([a1, a2, b, c])] == [["c", "a2"], ["c", "a2", "b"]]
    assert [[r.key for r in g] for g in fusion_groups([a1, a2])] == [["a2", "a1"]]  # one network: its runs
    assert fusion_groups([a1]) == []


# -- a study run -------------------------------------------------------------------------------------------


def test_a_study_writes_the_papers_tables_and_continues(tmp_path, shapes, capsys):
    """Four cells (two nets × S = 18 and [18;37]), the deeper started from the shallower; then the same command
    again trains and evaluates nothing; then an edited spec retrains its own cells only."""
    from vggspec.run.config import EvaluateConfig
    from vggspec.run.evaluate import evaluate

    a, b = write_specs(tmp_path / "specs")
    study = tmp_path / "study"
    args = ["study", a, b, "--data", str(shapes), "--out", str(study), "--train-scales", "256,256-512",
            "--init-from-first", *RECIPE]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out == (study / "tables.md").read_text()
    lines = err.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith("[")] == [
        "[1/4] tiny A, S = 18", "[2/4] tiny A, S ∈ [18;37]", "[3/4] tiny B, S = 18", "[4/4] tiny B, S ∈ [18;37]"
    ]  # fmt: skip
    assert sum(line.startswith("epoch 1: ") for line in lines) == 4  # the trainer's progress, and none of its chatter
    assert not any(word in err for word in ("configuration (also in", "files in", "test scales Q"))

    rows = list(csv.DictReader(io.StringIO((study / "results.csv").read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * 4 + 3  # per cell: Table 3's row, Table 4's (dense) and Table 5's other two; a fusion
    jittered_b = [r for r in rows if r["run"] == str(study / "b" / "S18-37")]
    assert [(r["protocol"], r["method"], r["test_scales"]) for r in jittered_b] == [
        ("single-scale", "dense", "27"), ("multi-scale", "dense", "18 27 37"),
        ("multi-scale", "multi-crop", "18 27 37"), ("multi-scale", "both", "18 27 37"),
    ]  # fmt: skip
    params = {name: str(vggspec.analyze(vggspec.load(spec)).params) for name, spec in (("tiny A", a), ("tiny B", b))}
    assert {r["network"]: r["params"] for r in rows[:16]} == params
    assert float(jittered_b[0]["forward_gflops"]) == vggspec.analyze(vggspec.load(b)).flops / 1e9
    assert jittered_b[0]["train_scale"] == "18:37"
    fused = [r for r in rows if r["protocol"] == "fusion"]
    assert [r["method"] for r in fused] == ["dense", "multi-crop", "both"] and fused[0]["network"] == "tiny A + tiny B"

    # the numbers are evaluate()'s, on each run as training left it
    results = evaluate(EvaluateConfig(checkpoints=[str(study / "b" / "S18-37" / "last.pt")], data=str(shapes),
                                      scales="18,27,37", method="all", progress=False))  # fmt: skip
    capsys.readouterr()
    for row, measured in zip(jittered_b[1:], results.rows):
        assert float(row["top1_err_percent"]) == round(100 * measured.top1_err, 3)
        assert float(row["top5_err_percent"]) == round(100 * measured.top5_err, 3)
    started_from = json.loads((study / "b" / "S18" / "config.json").read_text())["init_from"]
    assert started_from == str(study / "a" / "S18" / "last.pt")

    tables = (study / "tables.md").read_text()
    titles = re.findall(r"^## (Table \d)", tables, re.M)
    assert titles == ["Table 3", "Table 4", "Table 5", "Table 6"]
    table3 = tables.split("## Table 3")[1].split("## Table 4")[0]
    body = [line.split(" | ") for line in table3.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [cells[1:3] for cells in body] == [["18", "18"], ["[18;37]", "27"], ["18", "18"], ["[18;37]", "27"]]
    top1 = [float(cells[3].strip("*")) for cells in body]
    assert [cells[3].startswith("**") for cells in body] == [t == min(top1) for t in top1]  # the best is bold
    assert "multi-crop & dense" in tables and "(tiny A/" in tables.split("## Table 6")[1]
    assert "S−2, S, S+2" in tables  # the paper's ±32 at 16 pixels, said
    assert tables.count("outside every pooling window") == 2  # once for each network, not for each run and Q
    assert (study / "error-vs-gflops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same command again: nothing trained or evaluated
    before, record = mtimes(study), (study / STATE).read_text()
    assert main([*args, "--format", "json", "--workers", "1"]) == 0  # how the work is done is not the recipe
    out, err = capsys.readouterr()
    assert mtimes(study) == before and (study / STATE).read_text() == record
    assert [line.rsplit(": ", 1)[1] for line in err.splitlines() if line.startswith("[")] == ["done"] * 4
    assert "epoch" not in err
    assert len(json.loads(out)["rows"]) == len(rows)

    # an edited deeper spec: its cells start anew, the shallower's are kept
    write_specs(tmp_path / "specs", deep=DEEP.replace("conv3-8 ×2\nmaxpool\nFC", "conv3-8 ×3\nmaxpool\nFC"))
    assert main(args) == 0
    err = capsys.readouterr().err
    after = mtimes(study)
    assert {cell for cell in after if after[cell] != before[cell]} == {"b/S18", "b/S18-37"}
    said = [line for line in err.splitlines() if line.startswith("[")]
    assert said[0].endswith(": done") and said[1].endswith(": done")
    assert said[2].endswith("(the network changed): starts anew") and said[3].endswith("starts anew")


def test_a_killed_study_resumes_without_retraining_its_finished_cells(tmp_path, shapes, capsys):
    """The deeper net's run killed (SIGKILL) in its second epoch: the same command again resumes it from the
    checkpoint of its first, and leaves the finished cell alone."""
    a, b = write_specs(tmp_path / "specs")
    study = tmp_path / "study"
    recipe = [*RECIPE[:1], "2", *RECIPE[2:]]  # two epochs of 6 steps
    assert main(["study", a, "--data", str(shapes), "--out", str(study), *recipe]) == 0
    capsys.readouterr()
    finished = mtimes(study)
    args = ["study", a, b, "--data", str(shapes), "--out", str(study), *recipe]
    killed = run(*args, env={"VGGSPEC_TEST_FAULT_AT": "0:8"})  # after step 8 of a training run: B's (A is done)
    assert killed.returncode == -9, killed.stderr
    assert "[2/2] tiny B, S = 18" in killed.stderr and "epoch 1: " in killed.stderr
    state = json.loads((study / STATE).read_text())["cells"]
    assert state["a/S18"]["trained"] and not state["b/S18"]["trained"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "[1/2] tiny A, S = 18 (" in err and err.count(": done") == 1
    assert "[2/2] tiny B, S = 18 (" in err and "resumes its stopped run" in err
    assert "epoch 2: " in err and "epoch 1: " not in err
    assert "resuming" in (study / "b" / "S18" / "events.log").read_text()
    assert mtimes(study)["a/S18"] == finished["a/S18"]
    assert len((study / "b" / "S18" / "metrics.jsonl").read_text().splitlines()) == 2
