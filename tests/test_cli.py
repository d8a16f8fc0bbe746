"""The command line: what users type, what they see, and exit codes."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from PIL import Image

import vggspec
from vggspec import cli
from vggspec.cli import common, main

from .conftest import ROOT, SPECS


def run(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "vggspec", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=120,
    )


def test_analyze_params_prints_table_2(capsys):
    assert main(["analyze", "--params"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["A", "A-LRN", "B", "C", "D", "E"]
    row = next(line for line in out.splitlines() if line.startswith("params (millions)"))
    assert row.split()[2:] == ["133", "133", "133", "134", "138", "144"]
    assert "132,863,336" in out and "143,667,240" in out


def test_analyze_one_spec_is_a_per_layer_table(capsys):
    assert main(["analyze", str(SPECS / "D.vgg")]) == 0
    out = capsys.readouterr().out
    pool5 = next(line for line in out.splitlines() if " pool5 " in line)
    assert pool5.split()[-3:] == ["212", "32", "90"]
    assert "15,470,264,320" in out and "138,357,544" in out
    assert "FLOPs = 2 × MACs" in out


def test_analyze_columns_follow_the_flags(capsys):
    assert main(["analyze", str(SPECS / "A.vgg"), "--params"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and "MACs" not in out and "RF" not in out


def test_analyze_json_for_scripts(capsys):
    assert main(["analyze", "--format", "json", str(SPECS / "D.vgg"), str(SPECS / "E.vgg")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["D", "E"]
    assert data[0]["source"].endswith("D.vgg")
    assert data[0]["total"]["macs"] == 15_470_264_320
    assert data[1]["total"]["params"] == 143_667_240
    assert data[0]["layers"][17]["name"] == "pool5" and data[0]["layers"][17]["receptive_field"] == 212


def test_analyze_at_another_input_size(capsys):
    assert main(["analyze", str(SPECS / "D.vgg"), "--input", "384", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)[0]
    assert data["input"] == [3, 384, 384]
    assert data["min_input_size"] == 32
    assert next(la for la in data["layers"] if la["name"] == "pool5")["output_shape"] == [512, 12, 12]


def test_analyze_a_directory_puts_table_1_first(capsys):
    assert main(["analyze", str(SPECS), "--params"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["A", "A-LRN", "B", "C", "D", "E"]


def test_bad_spec_exits_2_with_a_located_error_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.vgg"
    bad.write_text("conv3-64\nmaxpol\nFC-10\n")
    result = run("analyze", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:2:1: error: unknown layer 'maxpol'" in result.stderr
    assert "^^^^^^" in result.stderr and "did you mean 'maxpool'?" in result.stderr


def test_missing_file_exits_2(tmp_path):
    result = run("analyze", str(tmp_path / "missing.vgg"))
    assert result.returncode == 2 and "no such spec file" in result.stderr and "Traceback" not in result.stderr


def test_too_small_input_is_a_shape_error(capsys):
    assert main(["analyze", str(SPECS / "D.vgg"), "--input", "16"]) == 2
    err = capsys.readouterr().err
    assert "D.vgg:15:1" in err and "spatial size reaches zero" in err and "at least 32×32" in err


def test_bad_flag_value_is_a_usage_error():
    result = run("analyze", "--input", "zero")
    assert result.returncode == 2 and "expected a whole number" in result.stderr


def without_torch(folder) -> dict[str, str]:
    """An environment in which importing torch fails: a poisoned package first on the path."""
    poison = folder / "torch"
    poison.mkdir()
    (poison / "__init__.py").write_text("raise ImportError('vggspec analyze imported torch')\n")
    return {"PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_analyze_never_imports_torch(tmp_path):
    env = without_torch(tmp_path)
    for args in (
        ["analyze"],
        ["analyze", "specs/D.vgg", "--format", "json", "--init", "paper"],
        ["table"],
        ["fmt", "specs/E.vgg"],
        ["list"],
        ["analyze", "D", "--format", "csv"],
        ["analyze", "D", "--format", "markdown"],
    ):
        result = run(*args, env=env)
        assert result.returncode == 0, result.stderr


def test_the_commands_that_run_networks_say_in_one_line_that_they_need_torch(tmp_path):
    """torch is an extra: without it, each command that needs it says so and how to install it, exit 2."""
    env = without_torch(tmp_path)
    checkpoint = tmp_path / "run.pt"
    with zipfile.ZipFile(checkpoint, "w") as archive:  # torch.save writes zip archives: taken for a checkpoint
        archive.writestr("data.pkl", b"")
    for args, what in (
        (["compile", "D"], "vggspec compile"),
        (["compile", str(checkpoint), "-o", str(tmp_path / "x.pt")], "vggspec compile"),
        (["train", "A", "--data", str(tmp_path)], "vggspec train"),
        (["evaluate", str(checkpoint), "--data", str(tmp_path)], "vggspec evaluate"),
        (["predict", str(checkpoint), str(tmp_path / "cat.jpg")], "vggspec predict"),
        (["diff", str(checkpoint), "D"], f"reading the checkpoint {checkpoint}"),
    ):
        result = run(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith(f"error: {what} needs PyTorch: pip install 'vggspec[torch]'"), result.stderr


def test_analyze_init_shows_how_a_fresh_network_scales_its_signal(capsys):
    """--init adds each layer's output RMS at initialisation (vggspec.initial_rms, checked against
    forward passes in test_compiler) and says whether the class scores' scale trains."""
    import vggspec
    from vggspec.spec.analysis import initial_rms

    assert main(["analyze", "A", "--params", "--init", "normal:0.1"]) == 0
    out = capsys.readouterr().out
    assert "RMS at init" in out.splitlines()[2]
    fc8 = next(line for line in out.splitlines() if " fc8 " in line)
    assert fc8.split()[-1] == f"{initial_rms(vggspec.load('A'), 'normal:0.1')[-2]:.2g}" == "1.5e+08"
    assert "with --init normal:0.1, class scores of RMS 1e+08" in out and "training is likely to diverge" in out

    assert main(["analyze", "A", "D", "--init", "paper"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("class-score RMS"))
    assert row.split()[-2:] == ["0.001", "4e-06"]  # the paper's std 0.01: A trains; D's signal fades
    # auto: Glorot's for both, on the inputs a run gives them: divided by their std (512 channels wide), where
    # the paper's pixels of RMS 58 would give 2 and 0.3; the narrow net keeps the paper's pixels.
    assert main(["analyze", "A", "D", "small/A-narrow-32", "--init", "auto"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("class-score RMS"))
    a, d, narrow = (vggspec.load(name) for name in ("A", "D", "small/A-narrow-32"))
    assert row.split()[-3:] == [f"{initial_rms(a, 'glorot', 1.0)[-1]:.1g}", "0.006", "1"]
    assert initial_rms(narrow, "glorot")[-1] == pytest.approx(1, abs=0.5)

    assert main(["analyze", "D", "--init", "glorot"]) == 0
    assert "class scores of RMS 0.006 for inputs divided by their std (RMS 1), in training mode" in (
        capsys.readouterr().out
    )
    assert main(["analyze", "D", "--format", "json", "--init", "glorot"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    expected = initial_rms(d, "glorot", 1.0)
    assert [layer["initial_rms"] for layer in found["layers"]] == pytest.approx(expected)
    assert found["total"]["initial_scale"] == {
        "init": "glorot",
        "class_score_rms": pytest.approx(expected[-1]),
        "input_rms": 1.0,
    }
    assert main(["analyze", "D", "--format", "json", "--init", "paper"]) == 0  # the paper's start, its inputs
    (found,) = json.loads(capsys.readouterr().out)
    assert found["total"]["initial_scale"]["input_rms"] == 58.0
    assert found["total"]["initial_scale"]["class_score_rms"] == pytest.approx(initial_rms(d, "paper")[-1])


def test_the_program_skips_pythons_last_garbage_collections(monkeypatch, capsys):
    """`vggspec` and `python -m vggspec` end in cli.run, whose gc.freeze() saves 1.2 s at exit."""
    import gc

    from vggspec import cli

    monkeypatch.setattr(sys, "argv", ["vggspec", "fmt", str(SPECS / "D.vgg")])
    try:
        with pytest.raises(SystemExit) as info:
            cli.run()
        assert info.value.code == 0 and "conv3-64 ×2" in capsys.readouterr().out
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_bundled_specs_go_by_name_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no specs/ here: as after `pip install vggspec`
    assert main(["analyze", "D", "small/A-narrow-32"]) == 0
    by_name = capsys.readouterr().out
    assert main(["analyze", str(SPECS / "D.vgg"), str(SPECS / "small" / "A-narrow-32.vgg")]) == 0
    assert capsys.readouterr().out == by_name
    assert main(["fmt", "E"]) == 0
    assert capsys.readouterr().out == (SPECS / "E.vgg").read_text()
    assert main(["fmt", "--check", "E"]) == 0  # the bundled file itself is read: it is canonical
    assert main(["fmt", "--write", "E"]) == 0 and not (tmp_path / "E").exists()

    assert main(["analyze", "F"]) == 2
    err = capsys.readouterr().err
    assert "no such spec file: F" in err and "bundled specs go by name alone: A, A-LRN, B, C, D, E, small/" in err
    (tmp_path / "D").write_text("name: mine\ninput: 32x32 RGB\nconv3-8\nmaxpool\nFC-10\n")  # a file wins
    assert main(["analyze", "D"]) == 0 and "mine" in capsys.readouterr().out
    assert main(["analyze", "D.vgg"]) == 2  # a file name is a file name


def test_an_output_that_cannot_be_written_is_one_line_of_error(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    for args in (
        ["graph", "D", "-o", str(blocker / "d.svg")],
        ["compile", "small/A-narrow-32", "-o", str(blocker / "a.py")],  # export's own check
        ["compile", "small/A-narrow-32", "-o", str(blocker / "a.pt")],  # a checkpoint: mkdir's error
    ):
        result = run(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].endswith(f"{blocker} is a file, where a folder is needed")
        assert "Traceback" not in result.stderr


def test_fmt_prints_canonical_text_and_check_and_write(tmp_path, capsys):
    messy = tmp_path / "messy.vgg"
    messy.write_text("# my net\nconv3-64,conv3-64 # twins\nmaxpool\nFC-10\n")
    assert main(["fmt", str(messy)]) == 0
    assert capsys.readouterr().out == "# my net\ninput: 224x224 RGB\n\nconv3-64 ×2  # twins\nmaxpool\nFC-10\n"
    assert main(["fmt", "--check", str(messy)]) == 1
    assert main(["fmt", "--write", str(messy)]) == 0
    assert main(["fmt", "--check", str(messy)]) == 0


def test_bundled_specs_are_canonical(capsys):
    files = sorted(str(p) for p in SPECS.rglob("*.vgg"))
    assert len(files) >= 10
    assert main(["fmt", "--check", *files]) == 0


def test_fmt_reads_standard_input():
    result = run("fmt", "-", stdin="conv3-8 x2, FC-10")
    assert result.returncode == 0 and result.stdout.endswith("conv3-8 ×2\nFC-10\n")


def test_table_renders_table_1_as_markdown(capsys):
    assert main(["table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| A | A-LRN | B | C | D | E |"
    assert (
        lines[2] == "| 11 weight layers | 11 weight layers | 13 weight layers | 16 weight layers "
        "| 16 weight layers | 19 weight layers |"
    )
    assert lines[5] == "|  | LRN | conv3-64 | conv3-64 | conv3-64 | conv3-64 |"
    assert "| conv3-256 | conv3-256 | conv3-256 | conv1-256 | conv3-256 | conv3-256 |" not in lines
    assert "|  |  |  | conv1-256 | conv3-256 | conv3-256 |" in lines
    assert "|  |  |  |  |  | conv3-256 |" in lines
    assert sum(line.startswith("| maxpool") for line in lines) == 5
    assert lines[-1] == "| soft-max | soft-max | soft-max | soft-max | soft-max | soft-max |"


def test_graph_writes_dot_source(tmp_path):
    out = tmp_path / "d.dot"
    assert main(["graph", str(SPECS / "D.vgg"), "-o", str(out)]) == 0
    source = out.read_text()
    assert "conv1_1 -> pool1" in source and "512×7×7" in source and "<B>conv3-512 ×3</B>" in source
    assert "119,545,856 params" in source  # fc6 and fc7, drawn once as FC-4096 ×2: 102,764,544 + 16,781,312
    assert source.count("subgraph cluster_") == 6  # five stages and the classifier, as Table 1 has them


TABLE_1_E = [  # the paper's column E, a stage to a row, the repeated layers as it counts them
    ["conv3-64 ×2", "maxpool"],
    ["conv3-128 ×2", "maxpool"],
    ["conv3-256 ×4", "maxpool"],
    ["conv3-512 ×4", "maxpool"],
    ["conv3-512 ×4", "maxpool"],
    ["FC-4096 ×2", "FC-1000", "soft-max"],
]


def test_graph_draws_each_stage_as_a_column_with_repeated_layers_once(tmp_path):
    out = tmp_path / "e.dot"
    assert main(["graph", "E", "-o", str(out)]) == 0
    source = out.read_text()
    clusters = source.split("subgraph cluster_")[1:]
    spec = vggspec.load("E")
    assert len(clusters) == sum(layer.kind == "maxpool" for layer in spec.layers) + 1 == len(TABLE_1_E)
    assert [re.findall(r"<B>(.*?)</B>", cluster) for cluster in clusters] == TABLE_1_E
    titles = [re.search(r'label="?([\w ]+)"? style=rounded', cluster)[1] for cluster in clusters]
    assert titles == ["stage 1", "stage 2", "stage 3", "stage 4", "stage 5", "classifier"]
    analysis = vggspec.analyze(spec)
    params = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) params<BR/>", source)]
    assert sum(params) == analysis.params  # a run's box carries all its layers' parameters
    assert "conv4_1–conv4_4" in source and "<B>conv3-512 ×4</B><BR/>512×28×28<BR/>8,259,584 params" in source
    assert "pool4 -> conv5_1 [constraint=false" in source  # across stages: the layout keeps the columns
    assert main(["graph", "E", "-o", str(tmp_path / "again.dot")]) == 0
    assert (tmp_path / "again.dot").read_text() == source


needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"),
    reason="needs Graphviz's dot: bash tools/install-system-deps.sh (CI installs it, and fails without it)",
)


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_graph_renders_with_dot(tmp_path, fmt):
    out = tmp_path / f"e.{fmt}"
    assert main(["graph", str(SPECS / "E.vgg"), "-o", str(out)]) == 0
    data = out.read_bytes()
    if fmt == "svg":
        svg = data.decode()
        assert "<svg" in svg and "conv5_1–conv5_4" in svg and svg.count("conv3&#45;512 ×4") == 2
    else:
        assert data.startswith(b"\x89PNG")


@needs_dot
@pytest.mark.parametrize("name", ["A", "E", "small/D-narrow-32-bn"])
def test_graph_png_is_landscape_with_text_at_full_size(tmp_path, name):
    out = tmp_path / "net.png"
    assert main(["graph", name, "-o", str(out)]) == 0
    width, height = Image.open(out).size
    assert 2 <= width / height <= 5, (width, height)  # E was 165×2585, one box per layer in a chain
    assert width <= 1600  # readable at 100% on a laptop's screen, no zooming out


def test_help_explains_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("list", "analyze", "fmt", "table", "graph"):
        assert command in result.stdout
    analyze_help = run("analyze", "--help").stdout
    for flag in ("--params", "--flops", "--memory", "--receptive-field", "--shapes", "--input", "--format"):
        assert flag in analyze_help


# -- compile ---------------------------------------------------------------------------

NARROW_A = str(SPECS / "small" / "A-narrow-32.vgg")


def test_compile_without_output_checks_the_network_against_the_analysis(capsys):
    assert main(["compile", NARROW_A, "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "OK: every layer's output shape and parameter count equal the analysis" in out
    assert "153,530" in out  # the analysed total, printed from the real module


def test_compile_dense_on_larger_images(capsys):
    assert main(["compile", NARROW_A, "--dense", "--input", "64"]) == 0
    out = capsys.readouterr().out
    assert "(dense)" in out and "output 10×2×2" in out


def test_compile_to_a_checkpoint_and_load_it(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import vggspec

    out = tmp_path / "a.pt"
    assert main(["compile", NARROW_A, "-o", str(out), "--init", "glorot", "--seed", "1"]) == 0
    model = vggspec.load_model(out)
    assert model.spec.display_name == "A narrow 32"
    reference = vggspec.build(vggspec.load(NARROW_A), init="glorot", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_compile_with_weights_and_transfer(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import vggspec

    weights = tmp_path / "w.pth"
    torch.save(vggspec.build(vggspec.load(NARROW_A), seed=2).state_dict(), weights)
    assert main(["compile", NARROW_A, "--weights", str(weights)]) == 0
    a_ckpt = tmp_path / "a.pt"
    assert main(["compile", NARROW_A, "--weights", str(weights), "-o", str(a_ckpt)]) == 0
    capsys.readouterr()
    d_narrow = str(SPECS / "small" / "D-narrow-32-bn.vgg")
    assert main(["compile", d_narrow, "--init-from", str(a_ckpt)]) == 0
    err = capsys.readouterr().err
    assert "Initialised D narrow 32 bn from A narrow 32 (Section 3.1): 7 layers copied, 9 left random" in err
    # weights of another network: a clear error, exit 2
    assert main(["compile", d_narrow, "--weights", str(weights)]) == 2
    assert "belong to another network" in capsys.readouterr().err


def test_compile_errors_exit_2_without_traceback(tmp_path):
    result = run("compile", NARROW_A, "--init-from", str(tmp_path / "missing.pt"))
    assert result.returncode == 2 and "no such checkpoint" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("suffix, fmt", [(".onnx", "onnx"), (".py", "python"), (".ts", "torchscript")])
def test_compile_exports_by_suffix(tmp_path, capsys, suffix, fmt):
    out = tmp_path / f"net{suffix}"
    assert main(["compile", NARROW_A, "--dense", "-o", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 0
    assert f"({fmt}, dense)" in capsys.readouterr().err


def test_an_unknown_flag_gets_the_commands_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "runs/x", "a.jpg", "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vggspec predict")
    assert "vggspec predict: error: unrecognized arguments: --no-progress" in err


def test_a_spec_too_small_for_the_input_is_located_in_its_file_whoever_asks(tmp_path, capsys):
    """analyze() attaches the file and text to its errors: graph (and compile, train) show them too."""
    spec = tmp_path / "net.vgg"
    spec.write_text("input: 32x32 RGB\nconv3-8\nmaxpool\nconv3-8\nmaxpool\nconv3-8\nmaxpool\nFC-10\n")
    assert main(["graph", str(spec), "--input", "4", "--format", "dot", "-o", str(tmp_path / "g.dot")]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:7:1: error: pool3 (maxpool) needs at least a 2×2 map" in err and "    7 | maxpool" in err


# -- flags: generated from the settings, shared ones defined once ------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _action(command: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return next((a for a in command._actions if option in a.option_strings), None)


def test_every_evaluate_setting_has_a_flag_that_says_its_description():
    """evaluate's flags are EvaluateConfig's fields: --help and the settings cannot disagree."""
    from vggspec.run.config import EvaluateConfig

    evaluate = _commands()["evaluate"]
    by_dest = {a.dest: a for a in evaluate._actions}
    for name, field in EvaluateConfig.model_fields.items():
        assert name in by_dest, f"no flag for EvaluateConfig.{name}"
        assert field.description and field.description in by_dest[name].help.replace("%%", "%"), name
    assert _action(evaluate, "--json").dest == "json_path" and by_dest["checkpoints"].option_strings == []
    # Nothing given: the model's defaults, not argparse's.
    args = evaluate.parse_args(["run", "--data", "images"])
    config = EvaluateConfig(**common.given(args, EvaluateConfig))
    assert config == EvaluateConfig(checkpoints=["run"], data="images")
    args = evaluate.parse_args(["a.pt", "b.pt", "--method", "all", "--no-flip", "--no-progress", "--json", "t.json"])
    config = EvaluateConfig(**common.given(args, EvaluateConfig))
    assert config.methods == ["dense", "multi-crop", "both"] and config.checkpoints == ["a.pt", "b.pt"]
    assert (config.flip, config.progress, config.json_path) == (False, False, "t.json")


@pytest.mark.parametrize(
    "option, commands",
    [
        ("--dtype", {"evaluate", "predict"}),
        ("--no-flip", {"train", "evaluate", "predict", "study"}),
        ("--input", {"analyze", "compile", "graph"}),
        ("--init", {"analyze", "compile", "train", "study"}),
    ],
)
def test_a_flag_that_several_commands_have_reads_the_same_in_each(option, commands):
    """One definition each: the same choices, type and help everywhere (only the default may differ)."""
    found = {name: action for name, command in _commands().items() if (action := _action(command, option))}
    assert set(found) == commands
    without_default = [re.sub(r" \(default: .*\)$", "", a.help) for a in found.values()]
    forms = {(type(a), tuple(a.option_strings), a.metavar, a.type, tuple(a.choices or ())) for a in found.values()}
    assert len(forms) == 1 and len(set(without_default)) == 1, (forms, without_default)


def test_an_invalid_evaluate_setting_is_one_line_and_exit_2(capsys):
    for args, said in (
        (["--batch-size", "0"], "invalid evaluation settings: batch_size: Input should be greater than or equal to 1"),
        (["--gpus", "-1"], "invalid evaluation settings: gpus: Input should be greater than or equal to 0"),
    ):
        assert main(["evaluate", "runs/x", "--data", "images", *args]) == 2
        assert capsys.readouterr().err.splitlines() == [f"error: {said}"]


def test_evaluate_without_data_asks_for_it(capsys):
    pytest.importorskip("torch")
    assert main(["evaluate", "runs/x"]) == 2
    assert capsys.readouterr().err.startswith("error: where is the data? give --data DIR")


# -- what real terminals and pipes do ------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "PYTHONUTF8": "0", "LANG": ""}])
def test_an_ascii_terminal_gets_plain_characters(env):
    """`×` and `→` where the stream can encode them, `x` and `->` where it cannot: never UnicodeEncodeError."""
    result = run("analyze", "D", env={"PYTHONIOENCODING": "", **env})
    assert result.returncode == 0, result.stderr
    assert "224x224" in result.stdout and "×" not in result.stdout
    result.stdout.encode("ascii")  # nothing else slipped through as '?'-less non-ASCII
    bad = run("analyze", str(SPECS / "D.vgg"), "--input", "7", env={"PYTHONIOENCODING": "", **env})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "UnicodeEncodeError" not in bad.stderr


def test_a_closed_pipe_keeps_the_commands_exit_status():
    """`vggspec diff D E | head -1`: the networks differ (1), whoever stops reading; nothing about the pipe."""
    shell = f"{sys.executable} -m vggspec diff D E | head -1; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1, result.stderr
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""
    same = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m vggspec diff D D | head -c 10; exit ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert same.returncode == 0 and same.stderr == ""


def test_ctrl_c_while_the_program_imports_exits_130_quietly():
    """Ctrl-C in the first second, as the command line's modules load: status 130 and no traceback. The
    interrupt is sent from inside an import, where a person's Ctrl-C lands, so no timing decides it."""
    code = (
        "import builtins, os, signal, sys\n"
        "sys.argv = ['vggspec', 'analyze', 'D']\n"
        "real = builtins.__import__\n"
        "def interrupting(name, *args, **kwargs):\n"
        "    if name == 'lark':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupting\n"
        "from vggspec.__main__ import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr


# -- output paths --------------------------------------------------------------------------------------------------


def test_dash_as_an_output_path_is_standard_output(tmp_path, capsys):
    assert main(["table", "A", "B", "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("| A | B |")
    assert main(["graph", "A", "-o", "-", "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    result = run("compile", "small/A-narrow-32", "-o", "-", "--format", "python")
    assert result.returncode == 0, result.stderr
    namespace: dict = {}
    exec(compile(result.stdout, "generated.py", "exec"), namespace)  # the standalone source, whole
    assert "wrote standard output (python)" in result.stderr
    assert not (ROOT / "-").exists()


def test_an_output_suffix_vggspec_does_not_know_is_refused(tmp_path):
    output = tmp_path / "x.safetensor"  # a typo of .safetensors: not written as a pickle
    result = run("compile", "small/A-narrow-32", "-o", str(output))
    assert result.returncode == 2 and not output.exists()
    assert "suffix '.safetensor'" in result.stderr and ".safetensors" in result.stderr and "--format" in result.stderr
    assert "building" not in result.stderr  # said before the network is built
    written = run("compile", "small/A-narrow-32", "-o", str(output), "--format", "safetensors")
    assert written.returncode == 0 and output.is_file(), written.stderr
    stdout = run("compile", "small/A-narrow-32", "-o", "-")
    assert stdout.returncode == 2 and "--format" in stdout.stderr


def test_compile_prints_its_check_as_json(capsys):
    """Every command that reports has a JSON form: compile's is the check of each layer against the analysis."""
    assert main(["compile", "small/A-narrow-32", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["mismatches"] == [] and report["name"] == "A narrow 32"
    import vggspec

    analysis = vggspec.analyze(vggspec.load("small/A-narrow-32"))
    assert [layer["name"] for layer in report["layers"]] == [layer.name for layer in analysis.layers]
    assert sum(layer["params"] for layer in report["layers"]) == analysis.params
    assert main(["compile", "small/A-narrow-32", "--format", "json", "-o", "x.pt"]) == 2
    assert "--format json is the check's report" in capsys.readouterr().err
