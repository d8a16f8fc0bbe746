"""Evaluation (Sections 3.2 and 4) on a small trained network and generated images."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.data import folders  # noqa: E402
from vggspec.data.scales import TrainingScale, parse_test_scales  # noqa: E402
from vggspec.run.config import EvaluateConfig, validated  # noqa: E402
from vggspec.run.evaluate import (  # noqa: E402
    PAPER,
    Results,
    dense_posteriors,
    evaluate,
    evaluation_scales,
    grid_positions,
    image_paths,
    load_network,
    multi_crops,
    predict,
)

from . import images  # noqa: E402
from .conftest import ROOT, TINY_SPEC  # noqa: E402


def test_scales_relative_to_the_training_scale():
    assert parse_test_scales("S-32,S,S+32", TrainingScale(256, 256)) == [224, 256, 288]
    assert parse_test_scales(None, TrainingScale(256, 512)) == [384]  # the paper's Q for jittered S
    assert parse_test_scales("S_min,S,S_max", TrainingScale(256, 512)) == [256, 384, 512]
    assert parse_test_scales("256, 384,512", TrainingScale(256, 256)) == [256, 384, 512]
    with pytest.raises(Exception, match="cannot read the test scale"):
        parse_test_scales("S*2", TrainingScale(256, 256))


def test_the_papers_test_scales_follow_how_the_network_was_trained(capfd):
    """Table 4: S-32, S, S+32 for a fixed S; S_min, S, S_max for a jittered one (and a note when asked
    for the former on a jittered network)."""
    assert parse_test_scales("paper", TrainingScale(256, 256)) == [224, 256, 288]
    assert parse_test_scales("Paper", TrainingScale(256, 512)) == [256, 384, 512]
    assert "note:" not in capfd.readouterr().err
    assert parse_test_scales("S-32, S, S+32", TrainingScale(256, 512)) == [352, 384, 416]
    assert "the paper tested at S_min, S, S_max (Table 4: --scales paper)" in capfd.readouterr().err


def test_the_grid_covers_the_image_corner_to_corner():
    assert grid_positions(256, 224) == [0, 8, 16, 24, 32]
    image = torch.arange(3 * 30 * 40, dtype=torch.float32).view(3, 30, 40)
    crops = multi_crops(image, 16)
    assert crops.shape == (50, 3, 16, 16)
    assert torch.equal(crops[0], image[:, :16, :16]) and torch.equal(crops[24], image[:, 14:, 24:])
    assert torch.equal(crops[25], crops[0].flip(2))


def test_dense_at_the_training_size_equals_the_classifier(trained):
    net = load_network(trained[0])
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    mean = torch.tensor(net.preprocessing.mean).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = net.classifier(image[None].float() - mean).softmax(1)
    torch.testing.assert_close(dense_posteriors(net, [image], flip=False), expected)


def test_networks_run_on_the_fast_path_in_the_dtype_asked(trained, monkeypatch):
    """float32 by default: the plain checkpoint's posteriors within float tolerance (batch norm
    folded, channels-last); bfloat16 on request: within bf16's rounding."""
    import copy

    from vggspec.nn.dense import posteriors, to_dense

    checkpoint, _ = trained
    plain = vggspec.load_model(checkpoint).eval()
    deepcopy = copy.deepcopy

    def no_whole_networks(thing, *args):
        assert not isinstance(thing, vggspec.VGG), "load_network copied a whole network"
        return deepcopy(thing, *args)

    with monkeypatch.context() as patch:  # the networks are converted in place: one copy each, not two
        patch.setattr(copy, "deepcopy", no_whole_networks)
        fp32, bf16 = load_network(checkpoint), load_network(checkpoint, dtype="bfloat16")
    assert (fp32.dense.dtype, fp32.classifier.dtype, bf16.dense.dtype) == (torch.float32, torch.float32, torch.bfloat16)
    assert fp32.dense.channels_last and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fp32.dense.modules())
    images = [torch.randint(0, 256, (3, 24, 30), dtype=torch.uint8) for _ in range(2)]
    mean = torch.tensor(fp32.preprocessing.mean).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = posteriors(to_dense(plain), torch.stack(images).float() - mean)
    torch.testing.assert_close(dense_posteriors(fp32, images), expected, rtol=1e-4, atol=1e-5)
    rounded = dense_posteriors(bf16, images)
    assert not torch.equal(rounded, expected) and (rounded - expected).abs().max() < 0.05
    with pytest.raises(vggspec.SpecError, match="invalid evaluation settings: dtype: Input should be 'float32'"):
        validated(EvaluateConfig, {"checkpoints": [checkpoint], "data": trained[1], "dtype": "fp8"}, "evaluation")


def test_150_crops_per_image_over_three_scales(trained, monkeypatch):
    checkpoint, data = trained
    net = load_network(checkpoint)
    seen = []
    net.classifier.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    from vggspec.run import evaluate as evaluation

    monkeypatch.setattr(evaluation, "load_network", lambda path, device="cpu": net)
    folder = folders.scan(data, "val")
    paths = [p for p, _ in folder.samples[:3]]
    evaluation.image_posteriors(net, paths, [18, 22, 26], ["multi-crop"])
    assert sum(seen) == 150 * len(paths)


def test_progress_in_a_log_is_lines_not_a_redrawn_bar(trained, capfd, monkeypatch):
    from vggspec.run import runlog

    checkpoint, data = trained
    monkeypatch.setattr(runlog, "LOG_EVERY_SECONDS", 0.0)
    # stderr is no terminal here
    evaluate(EvaluateConfig(checkpoints=[checkpoint], data=data, scales="18", batch_size=8, progress=True))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evaluating: ")]
    assert lines and "\r" not in err
    done = lines[-1].split()[1].split("/")
    assert done[0] == done[1] and "imgs (100%)" in lines[-1]


def test_fusing_a_network_with_itself_changes_nothing(trained, tmp_path):
    checkpoint, data = trained
    alone = evaluate(EvaluateConfig(checkpoints=[checkpoint], data=data, method="all", scales="18,24", progress=False))
    twice = evaluate(
        EvaluateConfig(checkpoints=[checkpoint, checkpoint], data=data, method="all", scales="18,24", progress=False)
    )
    single = {r.method: (r.top1_err, r.top5_err) for r in alone.rows}
    fused = {r.method: (r.top1_err, r.top5_err) for r in twice.rows if "+" in r.network}
    assert fused == single
    assert single["dense"][0] < 0.5  # it learned something (chance: 2/3)
    assert [r.network for r in twice.rows][-1] == "shapes + shapes #2"


def test_two_processes_give_the_errors_of_one(trained, tmp_path):
    checkpoint, data = trained
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    evaluate(EvaluateConfig(checkpoints=[checkpoint], data=data, method="both", json_path=one, progress=False))
    evaluate(EvaluateConfig(checkpoints=[checkpoint], data=data, method="both", json_path=two, nproc=2, progress=False))
    rows = [json.loads(p.read_text()) for p in (one, two)]
    assert rows[0]["images"] == rows[1]["images"] == 30
    for a, b in zip(rows[0]["rows"], rows[1]["rows"]):
        assert a["top1_err"] == pytest.approx(b["top1_err"]) and a["top5_err"] == pytest.approx(b["top5_err"])


def test_saved_posteriors_fuse_without_the_networks(trained, tmp_path):
    checkpoint, data = trained
    saved = tmp_path / "probs.pt"
    results = evaluate(EvaluateConfig(checkpoints=[checkpoint], data=data, save_probs=saved, progress=False))
    again = Results.load([saved, saved])
    rows = again.compute_rows()
    assert rows[0].top1_err == results.rows[0].top1_err
    assert rows[-1].network == "shapes + shapes (probs)" and rows[-1].top1_err == results.rows[0].top1_err

    fused = evaluate(EvaluateConfig(checkpoints=[saved, saved], from_probs=True, json_path=tmp_path / "f.json",
                                    save_probs=tmp_path / "fused.pt", progress=False))  # fmt: skip
    written = json.loads((tmp_path / "f.json").read_text())  # --json and --save-probs are written here too
    assert [row["network"] for row in written["rows"]] == [row.network for row in fused.rows]
    assert Results.load([tmp_path / "fused.pt"]).compute_rows()[-1].top1_err == fused.rows[-1].top1_err
    with pytest.raises(vggspec.SpecError, match="--json and --save-probs name the same file"):
        validated(EvaluateConfig, {"checkpoints": [saved], "json_path": "x", "save_probs": "./x"}, "evaluation")

    text = tmp_path / "net.vgg"  # a file of another kind, given by mistake: said plainly, no traceback
    text.write_text("conv3-64\n")
    for wrong in (text, checkpoint):
        with pytest.raises(vggspec.SpecError, match="is not a file of posteriors written by vggspec evaluate"):
            Results.load([wrong])


def test_an_unreadable_image_is_counted_as_an_error_and_named(trained, tmp_path, capfd):
    import shutil

    checkpoint, data = trained
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    broken = copy / "val" / "ellipse" / "zz_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    clean = evaluate(EvaluateConfig(checkpoints=[checkpoint], data=data, progress=False))
    capfd.readouterr()
    results = evaluate(
        EvaluateConfig(checkpoints=[checkpoint], data=copy, save_probs=tmp_path / "p.pt", progress=False)
    )
    assert results.unreadable() == [str(broken)]
    # One more image, and a wrong one: the errors are the clean set's, counted over 31.
    assert results.rows[0].top1_err * 31 == pytest.approx(clean.rows[0].top1_err * 30 + 1)
    assert results.rows[0].top5_err * 31 == pytest.approx(1)  # 3 classes: only the unreadable one misses
    assert f"note: 1 of 31 images could not be read; each is counted as an error: {broken}" in capfd.readouterr().err
    Results.load([tmp_path / "p.pt"]).note_unreadable()  # and again from the saved posteriors
    assert str(broken) in capfd.readouterr().err


def test_predict_takes_folders_and_goes_on_past_an_unreadable_image(trained, tmp_path):
    import shutil

    checkpoint, data = trained
    folder = tmp_path / "photos"
    shutil.copytree(data / "val" / "triangle", folder / "triangles")
    (folder / "triangles" / "m_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image: not listed")
    images = sorted(str(p) for p in folder.rglob("*.png"))
    assert image_paths([folder]) == images
    result = subprocess.run(
        [sys.executable, "-m", "vggspec", "predict", str(checkpoint.parent), str(folder), "--top", "1"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2  # one image could not be read ...
    assert f"cannot read {folder / 'triangles' / 'm_broken.png'} as an image: not a format PIL knows" in result.stderr
    printed = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert printed == [p for p in images if "broken" not in p]  # ... and every other one was classified
    with pytest.raises(vggspec.SpecError, match="cannot read"):
        predict(checkpoint, images)  # the Python API raises
    (tmp_path / "empty").mkdir()
    with pytest.raises(vggspec.SpecError, match="holds no image files"):
        image_paths([tmp_path / "empty"])


def test_cli_evaluate_and_predict(trained):
    checkpoint, data = trained
    result = subprocess.run(
        [sys.executable, "-m", "vggspec", "evaluate", str(checkpoint.parent), "--data", str(data), "--method", "all",
         "--scales", "S_min,S,S_max", "--no-progress", "--dtype", "auto"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["network", "method", "test"]
    assert [line.split()[1] for line in lines[2:]] == ["dense", "multi-crop", "both"]
    assert "18,21,24" in result.stdout  # (the run folder stands for its best.pt)

    image = next((data / "val" / "triangle").iterdir())
    top = predict(checkpoint, [image], top=3)
    names = [name for name, _ in top[0][1]]
    assert sorted(names) == ["ellipse", "rectangle", "triangle"]
    assert sum(p for _, p in top[0][1]) == pytest.approx(1.0, abs=1e-4)


def test_paper_rows_are_those_of_tables_3_to_5():
    assert PAPER[("D", 256, 512, "both", (256, 384, 512))] == (24.4, 7.2)
    assert PAPER[("E", 256, 512, "dense", (384,))] == (25.5, 8.0)
    assert PAPER[("A", 256, 256, "dense", (256,))] == (29.6, 10.4)


def test_paper_rows_match_the_network_its_training_scale_and_protocol():
    from types import SimpleNamespace

    from vggspec.run.evaluate import looks_like_ilsvrc2012_val, paper_row

    d_jittered = SimpleNamespace(name="D", train_scale=(256, 512))
    assert paper_row(d_jittered, "both", [256, 384, 512]) == (24.4, 7.2)
    assert paper_row(d_jittered, "dense", [384]) == (25.6, 8.1)
    assert paper_row(d_jittered, "dense", [256]) is None  # a protocol the paper did not report
    assert paper_row(SimpleNamespace(name="D", train_scale=(256, 256)), "dense", [224, 256, 288]) == (26.6, 8.6)
    assert paper_row(SimpleNamespace(name="my net", train_scale=(256, 256)), "dense", [256]) is None
    synsets = [f"n{i:08d}" for i in range(1000)]
    assert looks_like_ilsvrc2012_val(synsets, 50_000)
    assert not looks_like_ilsvrc2012_val(synsets, 49_999)
    assert not looks_like_ilsvrc2012_val([f"class{i}" for i in range(1000)], 50_000)


def test_checkpoints_without_training_facts_and_missing_images_are_clear_errors(trained, tmp_path):
    import vggspec
    from vggspec.nn.checkpoint import save_checkpoint

    compiled = tmp_path / "compiled.pt"
    save_checkpoint(vggspec.build(vggspec.parse(TINY_SPEC), seed=0), compiled)
    with pytest.raises(vggspec.SpecError, match="not written by vggspec train"):
        load_network(compiled)
    with pytest.raises(vggspec.SpecError, match="no such image"):
        predict(trained[0], [tmp_path / "missing.jpg"])


def test_images_of_one_size_share_a_batch(trained, tmp_path):
    from vggspec.run.evaluate import by_aspect_ratio, image_posteriors

    net = load_network(trained[0])
    paths = []
    for i in range(6):  # alternating landscape and portrait
        size = (36, 24) if i % 2 == 0 else (24, 36)
        path = tmp_path / f"{i}.png"
        images.drawing(36, seed=i).resize(size).save(path)
        paths.append(str(path))
    order = by_aspect_ratio(paths, range(6))
    assert order == [1, 3, 5, 0, 2, 4]  # portrait (2/3) before landscape (3/2)
    calls = []
    net.dense.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    image_posteriors(net, [paths[i] for i in order], [24], ["dense"], flip=False)
    assert [shape[0] for shape in calls] == [3, 3]  # two sizes, two batches of three


def test_the_training_scale_travels_in_the_checkpoint(trained, tmp_path):
    """S is stored as train_scale; a checkpoint from before (S only in its configuration) still
    evaluates, and its configuration need not be one this vggspec's TrainConfig accepts."""
    checkpoint = torch.load(trained[0], weights_only=True)
    assert checkpoint["train_scale"] == [18, 24]
    assert load_network(trained[0]).train_scale == (18, 24)

    del checkpoint["train_scale"]
    checkpoint["config"] = {"scale": "18:24", "a_setting_of_another_version": 1}
    checkpoint["version"] = 1  # as vggspec 0.1 wrote it: checksums of the tensors only
    checkpoint["checksums"] = {key: checkpoint["checksums"][key] for key in ("state_dict", "optimizer", "rng")}
    older = tmp_path / "older.pt"
    torch.save(checkpoint, older)
    assert load_network(older).train_scale == (18, 24)
    assert parse_test_scales(None, load_network(older).train_scale) == [21]


def test_the_papers_plus_minus_32_scales_with_the_input_and_says_so(trained, tmp_path, capfd):
    """Table 4's S-32, S, S+32 are for 224-pixel inputs: a 32-pixel network (S = 37) is tested at 32, 37, 42
    (±32 × 32/224 = ±5), and a 16-pixel one trained at S = 18 at 16, 18, 20, each said in a note that shows where
    the numbers came from; at 224 nothing changes and nothing is said."""
    assert parse_test_scales("paper", TrainingScale(37, 37), 32) == [32, 37, 42]
    note = capfd.readouterr().err
    assert "the paper's S-32, S, S+32 are for 224-pixel inputs; for 32-pixel inputs, S-5, S, S+5" in note
    assert "(32 × 32/224, at least one pixel): Q = 32, 37, 42" in note
    assert parse_test_scales("paper", TrainingScale(256, 256), 224) == [224, 256, 288]
    assert parse_test_scales("paper", TrainingScale(4, 4), 3, say=False) == [3, 4, 5]  # at least one pixel
    assert "note:" not in capfd.readouterr().err

    checkpoint, data = trained
    fixed = torch.load(checkpoint, weights_only=True)
    fixed["train_scale"] = TrainingScale(18, 18).to_checkpoint()
    from vggspec.nn.weights_file import checksums

    fixed["checksums"] = checksums(fixed)  # written so: a network trained at S = 18
    torch.save(fixed, tmp_path / "fixed.pt")
    results = evaluate(EvaluateConfig(checkpoints=[str(tmp_path / "fixed.pt")], data=data, scales="paper",
                                      progress=False))  # fmt: skip
    assert results.scales == {"shapes": [16, 18, 20]}
    assert "for 16-pixel inputs, S-2, S, S+2" in capfd.readouterr().err


def test_a_network_trained_without_flips_is_evaluated_without_them(tmp_path, shapes, capsys):
    """Digits and text are trained with --no-flip: their mirror images are not images of their classes,
    so evaluate and predict do not average with them unless asked, and the table says which was done."""
    from vggspec.run.train import train

    from .conftest import tiny_config

    run = train(tiny_config(tmp_path, shapes, epochs=1, flip=False))
    net = load_network(run)
    assert not net.trained_with_flips and load_network(trained_path := run / "best.pt").flips(True)
    image = folders.scan(shapes, "val").samples[0][0]
    (_, top), = predict(trained_path, [image], top=3)
    from vggspec.data import decoding

    q = evaluation_scales(net, None, dense=True, say=False)[0]
    expected = dense_posteriors(net, [decoding.rescale(image, q, 3)], flip=False)[0].topk(3)
    assert [p for _, p in top] == pytest.approx(expected.values.tolist())

    capsys.readouterr()
    results = evaluate(EvaluateConfig(checkpoints=[str(run)], data=str(shapes), progress=False))
    assert results.rows[0].flip is False and " no " in capsys.readouterr().out
    results = evaluate(EvaluateConfig(checkpoints=[str(run)], data=str(shapes), flip=True, progress=False))
    assert results.rows[0].flip is True and " yes " in capsys.readouterr().out


def test_the_centre_crop_method_reproduces_the_runs_validation_error(trained):
    """--method center at the default scale is what the trainer's validation measured: its error is the
    one the run recorded for its best epoch."""
    checkpoint, data = trained
    best = torch.load(checkpoint, weights_only=True)["best"]
    results = evaluate(EvaluateConfig(checkpoints=[str(checkpoint)], data=str(data), method="center", progress=False))
    (row,) = results.rows
    assert row.method == "center" and row.scales == [21]  # S jittered over 18..24: its middle
    assert row.flip is False  # one crop, not mirrored: the table says so
    assert (row.top1_err, row.top5_err) == pytest.approx((best["val_top1_err"], best["val_top5_err"]), abs=1e-9)


def test_the_default_test_scale_uses_every_pixel(trained, capfd):
    """By default Q = S, but where S leaves pixels outside every pooling window of the dense evaluation
    (this network's S = 21, stride 4: one row), the nearest scale that uses them all, said in a note;
    --scales S tests at S itself; crops at the input size (center) keep S."""
    checkpoint, data = trained
    rows = {}
    for method, scales in (("dense", None), ("dense", "S"), ("center", None), ("both", None)):
        (row,) = evaluate(EvaluateConfig(checkpoints=[str(checkpoint)], data=str(data), method=method,
                                         scales=scales, progress=False)).rows  # fmt: skip
        rows[method, scales] = row.scales
    assert rows == {("dense", None): [20], ("dense", "S"): [21], ("center", None): [21], ("both", None): [20]}
    err = capfd.readouterr().err
    assert "note: testing shapes at Q = 20, not its S = 21: at 21 the dense evaluation leaves the last 1 rows" in err
    net = load_network(checkpoint)
    assert evaluation_scales(net, None, dense=True, say=False) == [20]
    assert evaluation_scales(net, "S", dense=True) == [21]
    assert "(--scales S tests at S)" in err  # what evaluate takes
    assert predict(checkpoint, [next(iter(folders.scan(data, "val").samples))[0]], top=1)  # predict too, at 20
    err = capfd.readouterr().err
    assert "at Q = 20, not its S = 21" in err
    assert "(--scale 21 tests at S)" in err and "--scales" not in err  # predict takes --scale Q, not --scales


def test_the_table_and_the_json_call_the_mirror_images_flip_as_the_flag_does():
    from vggspec.run.evaluate import Row, render_rows

    row = Row("D", "dense", [256], 0.25, 0.1, flip=True)
    header = render_rows([row]).splitlines()[0].split("  ")
    assert "flip" in [cell.strip() for cell in header] and "flip" in row.to_dict()
    assert "flips" not in render_rows([row]) and "--flip" in EvaluateConfig.model_fields["flip"].description


def test_a_test_scale_that_leaves_pixels_unused_is_said(trained, capfd):
    """The tiny network pools twice (stride 4): at its S = 21 one row falls outside every pooling window."""
    checkpoint, data = trained
    evaluate(EvaluateConfig(checkpoints=[str(checkpoint)], data=str(data), scales="20,21", progress=False))
    err = capfd.readouterr().err
    assert "at Q = 21, shapes's dense evaluation leaves the last 1 rows" in err and "20 or 24 use every pixel" in err
    assert "at Q = 20" not in err


@pytest.mark.parametrize("scales", ["99999", "S,9000", "8"])
def test_test_scales_that_cannot_work_are_refused_before_an_image_is_read(trained, monkeypatch, capsys, scales):
    from vggspec import cli
    from vggspec.data import decoding

    checkpoint, data = trained

    def no_reading(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(decoding, "rescale", no_reading)
    monkeypatch.setattr(folders, "scan", no_reading)
    capsys.readouterr()
    code = cli.main(["evaluate", str(checkpoint), "--data", str(data), "--scales", scales, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "unreadable" not in err and "could not be read" not in err
    first = err.strip().splitlines()[0]
    if scales == "8":
        assert "the test scale 8 is smaller than shapes's 16-pixel input" in first
    else:
        assert f"the test scale {scales.split(',')[-1]} is above 8192" in first and "memory" in first
    assert "Traceback" not in err


def test_running_out_of_memory_is_not_an_unreadable_image(trained, monkeypatch):
    from vggspec.data import decoding
    from vggspec.run.evaluate import image_posteriors

    checkpoint, data = trained
    net = load_network(checkpoint)
    paths = [p for p, _ in folders.scan(data, "val").samples][:3]

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried")

    monkeypatch.setattr(decoding, "rescale", out_of_memory)
    with pytest.raises(vggspec.SpecError, match="out of memory rescaling .* to Q = 21 \\(RuntimeError: "):
        image_posteriors(net, paths, [21], ["dense"])
    monkeypatch.setattr(decoding, "rescale", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(vggspec.SpecError, match="out of memory"):
        image_posteriors(net, paths, [21], ["dense"])
    monkeypatch.setattr(decoding, "rescale", lambda *a, **k: (_ for _ in ()).throw(OSError("truncated")))
    assert torch.isnan(image_posteriors(net, paths, [21], ["dense"])["dense"]).all()  # the files' fault: NaN rows


def test_image_paths_lists_each_real_file_once(trained, tmp_path, capsys):
    import shutil

    _, data = trained
    folder = tmp_path / "photos"
    shutil.copytree(data / "val" / "triangle", folder)
    (folder / "again").symlink_to(folder)  # a loop
    inner = folder / "sub"
    inner.mkdir()
    shutil.copy(next((data / "val" / "ellipse").iterdir()), inner / "x.png")  # given again below, as a folder
    capsys.readouterr()
    paths = image_paths([folder, inner])
    err = capsys.readouterr().err
    assert paths == sorted(str(p) for p in folder.rglob("*.png") if "again" not in str(p))
    assert "skipped 1 linked folder already visited" in err
    assert "skipped 1 file that an earlier folder given holds too" in err


def test_a_trained_network_evaluates_as_before_the_preprocessing_record(trained, tmp_path, monkeypatch):
    """A run's record is the paper's mean subtraction with its colour_stats mean; its posteriors are those of
    the former ``image - mean`` to the bit, and a checkpoint written before the record existed reads the same."""
    from vggspec.data.preprocessing import Preprocessing
    from vggspec.nn.checkpoint import atomic_save, read_checkpoint
    from vggspec.run import evaluate as evaluation

    checkpoint, data = trained
    stored = read_checkpoint(checkpoint)
    net = load_network(checkpoint)
    mean = json.loads(stored["colour_stats"])["mean"]
    assert net.preprocessing == Preprocessing.paper(mean, stored["classes"]) and net.preprocessing.is_paper
    older = {key: value for key, value in stored.items() if key != "preprocessing"}
    older["version"] = 1  # as vggspec 0.1 wrote it: checksums of the tensors only
    older["checksums"] = {key: stored["checksums"][key] for key in ("state_dict", "optimizer", "rng")}
    atomic_save(older, tmp_path / "older.pt")
    paths = [path for path, _ in folders.scan(data, "val").samples[:4]]
    methods = ["dense", "multi-crop", "center"]
    now = evaluation.image_posteriors(net, paths, [18, 24], methods)
    again = evaluation.image_posteriors(load_network(tmp_path / "older.pt"), paths, [18, 24], methods)

    def former(images, record, device, **_):  # the code before the record: uint8 → float32, then + (-mean)
        offset = -torch.tensor(record.mean, dtype=torch.float32, device=device)
        return images.to(device).to(torch.float32).add_(offset.view(1, -1, 1, 1))

    monkeypatch.setattr(evaluation, "normalise", former)
    before = evaluation.image_posteriors(net, paths, [18, 24], methods)
    for method in methods:
        assert torch.equal(now[method], before[method]) and torch.equal(again[method], before[method]), method


def test_wordnet_id_folders_are_imagenets_numbering_for_named_classes(trained, tmp_path, capfd):
    """torchvision's weights name their classes in ImageNet's order ("tench", "goldfish", ...); ImageNet's folders
    are WordNet IDs. As many ID folders as such named classes are taken in sorted order, ImageNet's numbering: the
    same images under IDs give the same error as under the class names, and the note says so. Fewer ID folders:
    refused. Names in sorted order are folders' (a run trained on named folders): the IDs say nothing of them."""
    import shutil

    from vggspec.nn.weights_file import checksums

    checkpoint, data = trained
    imagenet_like = tmp_path / "unsorted.pt"  # its classes in an order of their own, as torchvision's are
    state = torch.load(checkpoint, weights_only=True)
    state["classes"] = list(reversed(state["classes"]))
    state["checksums"] = checksums(state)  # written so: its checksums agree
    torch.save(state, imagenet_like)
    config = EvaluateConfig(checkpoints=[str(imagenet_like)], data=str(data), method="center", progress=False)
    named = evaluate(config)
    assert named.classes != sorted(named.classes)
    ids = tmp_path / "ids"
    for i, name in enumerate(named.classes):  # sorted IDs in the classes' order: n00000003 for the third
        shutil.copytree(data / "val" / name, ids / "val" / f"n{i + 1:08d}")
    capfd.readouterr()
    by_id = evaluate(config.model_copy(update={"data": str(ids)}))
    assert "are WordNet IDs (n00000001, ...)" in capfd.readouterr().err
    assert [(r.top1_err, r.top5_err) for r in by_id.rows] == [(r.top1_err, r.top5_err) for r in named.rows]
    label_of = dict(zip(named.paths, named.labels.tolist()))
    copied_from = {  # ids/val/n00000003/x.png was data/val/<the third class>/x.png
        path: str(data / "val" / named.classes[int(Path(path).parent.name[1:]) - 1] / Path(path).name)
        for path in by_id.paths
    }
    assert [label_of[copied_from[path]] for path in by_id.paths] == by_id.labels.tolist()  # image by image
    with pytest.raises(vggspec.SpecError, match="class folders the training split has not"):
        evaluate(config.model_copy(update={"checkpoints": [str(checkpoint)], "data": str(ids)}))  # sorted names
    shutil.rmtree(ids / "val" / "n00000002")
    with pytest.raises(vggspec.SpecError, match="class folders the training split has not"):
        evaluate(config.model_copy(update={"data": str(ids)}))


@pytest.mark.parametrize("method", ["dense", "center", "multi-crop", "both"])
def test_predict_gives_evaluations_posteriors_for_each_method(trained, method):
    """predict reads each image once, as the method reads it, and gives what evaluate's image_posteriors
    gives for that image, method and scale."""
    from vggspec.run.config import PREDICT_METHODS
    from vggspec.run.evaluate import image_posteriors, predictions

    assert method in PREDICT_METHODS
    checkpoint, data = trained
    paths = [path for path, _ in folders.scan(data, "val").samples[:3]]
    result = predictions(checkpoint, paths, method=method, top=3)
    expected = image_posteriors(result.net, paths, [result.scale], [method], flip=result.flip)[method]
    for (path, top), probs in zip(result, expected):
        values, indices = probs.topk(3)
        assert [name for name, _ in top] == [result.net.classes[i] for i in indices], path
        assert [p for _, p in top] == pytest.approx(values.tolist(), abs=1e-6)


def test_dash_writes_the_json_or_the_posteriors_to_standard_output(trained, tmp_path, capsys):
    """`--json -` wrote a file named '-': it is standard output, and the table goes to standard error then."""
    import io

    from vggspec import cli

    checkpoint, data = trained
    capsys.readouterr()
    assert cli.main(["evaluate", str(checkpoint), "--data", str(data), "--json", "-", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    table = json.loads(out)  # nothing but the JSON on standard output
    assert table["images"] > 0 and table["rows"][0]["top1_err"] is not None
    assert "top-1" in err and not (Path.cwd() / "-").exists()

    result = subprocess.run(
        [sys.executable, "-m", "vggspec", "evaluate", str(checkpoint), "--data", str(data), "--save-probs", "-",
         "--no-progress"],
        capture_output=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    saved = torch.load(io.BytesIO(result.stdout), weights_only=True)
    assert saved["format"] == "vggspec.posteriors" and len(saved["paths"]) == table["images"]


def test_a_test_scale_too_large_for_the_memory_is_refused_before_an_image_is_read(trained, monkeypatch):
    """Each pass is asked of the analysis (weights there, one image at Q) before any image is decoded at Q."""
    from vggspec.data import decoding
    from vggspec.nn import devices

    checkpoint, data = trained

    def no_reading(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(decoding, "rescale", no_reading)
    monkeypatch.setattr(devices, "free_memory", lambda device: 1 << 20)  # 1 MiB free
    with pytest.raises(vggspec.SpecError, match=r"a forward pass of 1 image of 3×2000×2000 needs at least"):
        evaluate(EvaluateConfig(checkpoints=[str(checkpoint)], data=data, scales="2000", progress=False))


# -- torch.compile (--compile), and --format json ----------------------------------------------


def test_compiled_networks_give_the_posteriors_of_uncompiled_ones(trained, capfd):
    """--compile: both networks compiled (dense at two test scales: new shapes, compiled again), the same
    posteriors to float tolerance, so the same errors; the compiles are said beforehand."""
    from torch._dynamo.utils import counters

    checkpoint, data = trained
    settings = dict(checkpoints=[checkpoint], data=data, method="all", scales="18,24", progress=False)
    plain = evaluate(EvaluateConfig(**settings))
    capfd.readouterr()
    graphs = counters["stats"]["unique_graphs"]
    compiled = evaluate(EvaluateConfig(**settings, compile=True))
    assert counters["stats"]["unique_graphs"] >= graphs + 2  # the classifier's and the dense network's at least
    err = capfd.readouterr().err
    assert "torch.compile: each network compiles at its first batch" in err and "torch.compile failed" not in err
    for method in ("dense", "multi-crop", "both"):
        torch.testing.assert_close(compiled.probs["shapes"][method], plain.probs["shapes"][method])
    assert [(r.top1_err, r.top5_err) for r in compiled.rows] == [(r.top1_err, r.top5_err) for r in plain.rows]


def test_an_evaluation_that_cannot_compile_warns_once_and_goes_on(trained, monkeypatch, capfd):
    """No C compiler, an unsupported platform: one line for all the networks, no traceback, the errors as without."""
    from vggspec.nn import inference

    checkpoint, data = trained
    settings = dict(checkpoints=[checkpoint, checkpoint], data=data, method="both", progress=False)
    plain = evaluate(EvaluateConfig(**settings))

    def refuse(*args, **kwargs):
        raise RuntimeError("Python 3.99+ not yet supported for torch.compile")

    monkeypatch.setattr(torch, "compile", refuse)
    monkeypatch.setattr(inference, "_COMPILE_FAILURES_SAID", set())
    capfd.readouterr()
    compiled = evaluate(EvaluateConfig(**settings, compile=True))
    err = capfd.readouterr().err
    warning = "warning: torch.compile failed (RuntimeError: Python 3.99+ not yet supported for torch.compile); "
    assert err.count(warning + "running uncompiled\n") == 1 and "Traceback" not in err
    assert [r.to_dict() for r in compiled.rows] == [r.to_dict() for r in plain.rows]


def test_format_json_prints_what_json_file_writes(trained, tmp_path, capsys):
    """--format json: one document on standard output, what --json FILE writes (one function makes both); the
    table on standard error. With --json FILE or --save-probs - as well, one line says which to give."""
    from vggspec import cli

    checkpoint, data = trained
    written = tmp_path / "table.json"
    common = ["evaluate", str(checkpoint), "--data", str(data), "--method", "all", "--no-progress"]
    assert cli.main([*common, "--json", str(written)]) == 0
    capsys.readouterr()
    assert cli.main([*common, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document == json.loads(written.read_text())
    assert document["images"] == 30 and [row["method"] for row in document["rows"]] == ["dense", "multi-crop", "both"]
    assert "top-1 err" in err and "top-1 err" not in out
    assert cli.main([*common, "--format", "text"]) == 0
    out, _ = capsys.readouterr()
    assert "top-1 err" in out

    assert cli.main([*common, "--format", "json", "--json", str(tmp_path / "other.json")]) == 2
    assert "--format json writes the JSON to standard output" in capsys.readouterr().err
    assert not (tmp_path / "other.json").exists()
    assert cli.main([*common, "--format", "json", "--save-probs", "-"]) == 2
    assert "give --save-probs FILE" in capsys.readouterr().err
