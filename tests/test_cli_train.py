"""``vggspec analyze --train``: a training step's budget, the planner and the time bound on the command line."""

from __future__ import annotations

import json

import pytest

import vggspec
from vggspec.cli import main
from vggspec.plan.budget import TrainSettings, plan, time_bound, train_budget
from vggspec.plan.gpus import gpu, rates
from vggspec.units import human_bytes

from .test_cli import run, without_torch

NARROW = "small/A-narrow-32"


def test_the_text_shows_every_layer_and_the_steps_memory(capsys):
    assert main(["analyze", "D", "--train", "--batch", "64", "--amp", "bf16"]) == 0
    out = capsys.readouterr().out
    budget = train_budget(vggspec.load("D"), TrainSettings(batch=64, amp="bf16"))
    assert (
        f"peak memory:  {human_bytes(budget.peak_bytes)} ({budget.peak_bytes:,} bytes), in the {budget.peak_at}" in out
    )
    for layer in budget.layers:
        assert any(line.split()[1:2] == [layer.name] for line in out.splitlines()), layer.name
    assert "batch 64 in one process" in out and "bf16 autocast" in out
    assert "autocast's half copies of the weights included" in out


def test_json_adds_the_train_object_and_per_layer_numbers(capsys):
    assert main(["analyze", NARROW, "--train", "--batch", "32", "--gpus", "2", "--format", "json"]) == 0
    (document,) = json.loads(capsys.readouterr().out)
    budget = train_budget(vggspec.load(NARROW), TrainSettings(batch=32, processes=2))
    train = document["total"]["train"]
    for key in ("batch", "micro_batch", "peak_bytes", "weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert key in train
    assert train == budget.to_dict()
    params = vggspec.analyze(vggspec.load(NARROW)).params  # DDP's buckets: a float32 copy of every gradient
    assert train["micro_batch"] == 16 and train["ddp_buckets_bytes"] == -(-params * 4 // 512) * 512
    assert [layer["train_saved_bytes"] for layer in document["layers"]] == [la.saved_bytes for la in budget.layers]
    assert [layer["backward_flops"] for layer in document["layers"]] == [la.backward_flops for la in budget.layers]
    assert document["total"]["params"] == vggspec.analyze(vggspec.load(NARROW)).params  # the analysis stays


def test_markdown_and_csv_hold_the_same_numbers(capsys):
    """markdown: the text's table as a pipe table, its summary, plan and bound as a list; csv: a row per layer
    per spec with plain numbers, whose columns sum to the budget's totals."""
    import csv
    import io

    settings = TrainSettings(batch=32)
    assert main(["analyze", "D", "--train", "--batch", "32", "--memory", "16GiB", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    budget = plan(vggspec.load("D"), 16 * 2**30, settings).budget
    assert out.startswith("### D (") and "| # | name | layer |" in out
    assert f"| **{human_bytes(budget.weights_bytes)}** |" in out
    assert f"- peak memory: {human_bytes(budget.peak_bytes)} ({budget.peak_bytes:,} bytes)" in out
    assert "- fits: the whole share of 32 images in one pass" in out

    assert main(["analyze", "D", NARROW, "--train", "--batch", "32", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    for name in ("D", NARROW):
        spec = vggspec.load(name)
        budget, mine = train_budget(spec, settings), [row for row in rows if row["spec"] == spec.display_name]
        assert [row["name"] for row in mine] == [la.name for la in budget.layers]
        assert sum(int(row["weights"]) for row in mine) == budget.weights_bytes
        assert [int(row["kept for backward"]) for row in mine] == [la.saved_bytes for la in budget.layers]
        assert sum(int(row["backward FLOPs"]) for row in mine) == budget.backward_flops


def test_memory_plans_the_micro_batch(capsys):
    assert main(["analyze", "D", "--memory", "16GiB", "--format", "json"]) == 0
    train = json.loads(capsys.readouterr().out)[0]["total"]["train"]
    found = plan(vggspec.load("D"), 16 * 2**30)
    assert train["plan"]["fits"] and train["micro_batch"] == found.budget.settings.micro
    assert train["accumulation_steps"] == found.budget.settings.accumulation > 1
    assert train["plan"]["largest_micro_batch"] == found.largest
    assert main(["analyze", "D", "--memory", "16GiB"]) == 0
    out = capsys.readouterr().out
    assert (
        f"fits: micro-batches of {found.budget.settings.micro}, {found.budget.settings.accumulation} accumulation"
        in out
    )


def test_a_batch_that_cannot_fit_says_what_would_and_exits_1(capsys):
    """The answer is no: said, with status 1 (as grep's no match), so a script can ask; any spec that does not
    fit makes it 1."""
    assert main(["analyze", "E", "--memory", "1GiB"]) == 1
    out = capsys.readouterr().out
    needed = plan(vggspec.load("E"), 2**30).needed
    assert "does not fit" in out and f"the smallest memory that would do is {human_bytes(needed)}" in out
    assert main(["analyze", NARROW, "--memory", "1GiB"]) == 0
    capsys.readouterr()
    assert main(["analyze", NARROW, "E", "--memory", "1GiB", "--format", "json"]) == 1
    assert [d["total"]["train"]["plan"]["fits"] for d in json.loads(capsys.readouterr().out)] == [True, False]


def test_the_time_bound_is_said_as_one(capsys):
    assert main(["analyze", "D", "--amp", "bf16", "--gpus", "4", "--device", "A100", "--images", "25600"]) == 0
    out = capsys.readouterr().out
    budget = train_budget(vggspec.load("D"), TrainSettings(batch=256, processes=4, amp="bf16"))
    bound = time_bound(budget, *rates(gpu("a100"), "bf16"), images=25600)
    assert bound.steps_per_epoch == 100
    assert "time on a100" in out and "at least" in out and "a lower bound" in out
    assert f"{bound.step_seconds * 1000:.3g} ms a step" in out


@pytest.mark.parametrize(
    "args, said",
    [
        (["--batch", "0"], "--batch must be at least 1"),
        (["--memory", "-1"], "is not a memory size"),
        (["--memory", "12 parsecs"], "is not a memory size"),
        (["--memory", "12", "parsecs"], "needs a unit"),
        (["--batch", "2", "--gpus", "3"], "a batch of 2 cannot be split over 3 processes"),
        (["--device", "h900"], "unknown GPU"),
        (["--device-flops", "fast"], "not a rate"),
        (["--train", "--dense"], "declared input"),
        (["--memory", "8GiB", "--micro-batch", "4"], "not both"),
    ],
)
def test_nonsense_gets_one_line_and_exit_2(args, said, capsys):
    assert main(["analyze", "D", *args]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) <= 2, err  # the error, and at most a hint


def test_memory_alone_is_still_the_activations_column(capsys):
    assert main(["analyze", "--memory", "D"]) == 0
    out = capsys.readouterr().out
    assert "activations" in out and "peak memory" not in out


def test_memory_without_a_size_reads_the_gpu():
    torch = pytest.importorskip("torch")
    result = run("analyze", NARROW, "--train", "--memory")
    if torch.cuda.is_available():
        assert result.returncode == 0 and ("fits" in result.stdout or "does not fit" in result.stdout)
    else:
        assert result.returncode == 2 and "this machine has no GPU" in result.stderr


def test_analyze_train_never_imports_torch(tmp_path):
    env = without_torch(tmp_path)
    for args in (
        ["analyze", "D", "--train"],
        ["analyze", "E", "--memory", "80GiB", "--amp", "bf16", "--channels-last", "--gpus", "4", "--device", "h100"],
        ["analyze", "A-LRN", "--train", "--format", "json", "--device-flops", "100e12"],
    ):
        result = run(*args, env=env)
        assert result.returncode == 0, result.stderr


# -- vggspec train --micro-batch auto ---------------------------------------------------------------


def test_micro_batch_auto_is_a_setting_and_a_flag():
    from vggspec.run.config import TrainConfig, validated

    assert validated(TrainConfig, {"data": "d", "micro_batch": "auto"}, "training").micro_batch == "auto"
    assert validated(TrainConfig, {"data": "d", "micro_batch": "8"}, "training").micro_batch == 8
    config = TrainConfig(data="d", batch_size=256, micro_batch="auto")
    assert config.batch_split(4) == (64, 64, 1)  # not resolved: the whole share
    assert config.batch_split(4, 10) == (64, 10, 7)  # resolved to 10 images a pass
    assert "N|auto" in run("train", "--help").stdout


def test_micro_batch_auto_on_the_cpu_says_it_is_not_needed(tmp_path, shapes, capfd):
    pytest.importorskip("torch")
    from vggspec.run.train import train

    from .conftest import tiny_config

    train(tiny_config(tmp_path, shapes, epochs=1, micro_batch="auto"))
    err = capfd.readouterr().err
    assert "--micro-batch auto: not needed on the CPU" in err
    assert "micro-batches of 16" in err  # the whole share of the batch of 16


# -- vggspec train --format json ----------------------------------------------------------------------------------


def test_train_format_json_prints_the_runs_summary_on_standard_output(tmp_path, shapes, capfd):
    """One JSON object on standard output when the run ends (RUN/summary.json, for scripts to read later too), the
    progress and notes on standard error; a run that diverges prints its own, with its exit status; text prints
    nothing there."""
    pytest.importorskip("torch")
    from pathlib import Path

    from .conftest import SMALL_SPEC, cli_args, tiny_config

    config = tiny_config(tmp_path, shapes, epochs=2)
    run = Path(config.out)
    assert main([*cli_args(config), "--format", "json"]) == 0
    out, err = capfd.readouterr()
    assert out.count("\n") == 1  # one line: one object
    summary = json.loads(out)
    assert summary == json.loads((run / "summary.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min(records, key=lambda record: record["val_top1_err"])
    assert (summary["stopped"], summary["epochs"], summary["epochs_this_session"], summary["max_epochs"]) == (
        "epochs", 2, 2, 2,
    )  # fmt: skip
    assert summary["best"] == {key: best[key] for key in
                               ("epoch", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err",
                                "lr")}  # fmt: skip
    assert summary["run"] == str(run) and summary["seconds"] > 0
    assert summary["files"]["best"] == str(run / "best.pt") and summary["files"]["curves"] == str(run / "curves.png")
    assert all(Path(path).exists() for path in summary["files"].values())
    assert "epoch 2: train loss" in err and "done: 2 epochs in" in err  # what people read: standard error

    resume = ["train", "--out", str(run), "--resume", "--no-progress"]
    assert main(resume) == 0
    assert capfd.readouterr().out == ""  # text: standard output stays empty
    assert main([*resume, "--format", "json"]) == 0
    again = json.loads(capfd.readouterr().out)
    assert (again["stopped"], again["epochs"], again["epochs_this_session"]) == ("epochs", 2, 0)

    diverging = tiny_config(tmp_path / "nan", shapes, text=SMALL_SPEC, lr=1e6, epochs=1)
    with pytest.raises(SystemExit) as info:
        main([*cli_args(diverging), "--format", "json"])
    assert info.value.code == 3
    out, err = capfd.readouterr()
    summary = json.loads(out)
    assert summary["stopped"] == "diverged" and summary["message"].startswith("the loss became")
    assert summary["message"] in err and summary["best"] is None and summary["epochs"] == 0
