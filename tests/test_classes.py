"""The number of classes without editing the spec: ``Spec.with_classes``, ``build(num_classes=)`` and
``--num-classes`` (train: N or auto, the training split's class folders; compile and analyze: N)."""

import json
from pathlib import Path

import pytest

import vggspec
from vggspec.cli import main
from vggspec.run.config import TrainConfig, validated
from vggspec.spec.analysis import analyze
from vggspec.spec.formatter import format_spec

from .conftest import SPECS, tiny_config

NARROW_A = SPECS / "small" / "A-narrow-32.vgg"  # 10 classes (FC-10), header comments, FC-64 ×2 before it

# -- the spec -------------------------------------------------------------------------------------


def test_with_classes_changes_the_classifier_alone_and_keeps_where_it_was_written():
    spec = vggspec.load(NARROW_A)
    four = spec.with_classes(4, note="trained with --num-classes 4")
    index = spec.classifier_index
    assert four.classifier.features == 4 and four.classifier_index == index
    assert (four.classifier.line, four.classifier.column) == (spec.classifier.line, spec.classifier.column)
    assert four.layers[:index] == spec.layers[:index] and four.layers[index + 1 :] == spec.layers[index + 1 :]
    assert four.name == spec.name and four.input == spec.input and four != spec
    # The text says the network as it now is: only the classifier's line changed, a comment on it saying why.
    before, after = spec.text.splitlines(), four.text.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(before) == len(after) and changed == [spec.classifier.line - 1]
    assert after[spec.classifier.line - 1] == "FC-4  # trained with --num-classes 4"
    assert vggspec.parse(four.text) == four and format_spec(four) == four.text  # the file it would write reads back
    assert spec.with_classes(10) is spec  # already so: as it is
    # Parameters: Table 2's arithmetic, (fan-in + 1) per class.
    fan_in = analyze(spec).layers[index].input_shape[0]
    assert analyze(four).params == analyze(spec).params - (fan_in + 1) * (10 - 4)


def test_with_classes_moves_the_words_after_it_and_keeps_the_lines_comment():
    spec = vggspec.parse("input: 32x32 RGB\nconv3-8, maxpool\nFC-16, FC-1000, soft-max  # ImageNet's\n")
    two = spec.with_classes(2, note="for two")
    assert two.text.splitlines()[2] == "FC-16, FC-2, soft-max  # for two  # ImageNet's"
    again = vggspec.parse(two.text)
    assert [(a.line, a.column) for a in two.layers] == [(b.line, b.column) for b in again.layers]
    assert two.comments == again.comments
    # Without a note the comment stays as it was.
    assert spec.with_classes(2).text.splitlines()[2] == "FC-16, FC-2, soft-max  # ImageNet's"


def test_with_classes_of_a_repeated_word_gives_up_the_text_not_the_network():
    """``FC-10 ×2`` is one word for two layers: the second alone changes, the text is formatted anew."""
    spec = vggspec.parse("input: 16x16 RGB\nconv3-8\nmaxpool\nFC-10 ×2\nsoft-max\n")
    three = spec.with_classes(3, note="never shown on the other layer")
    assert [layer.word() for layer in three.layers if layer.kind == "fc"] == ["FC-10", "FC-3"]
    assert three.text is None and "never shown" not in format_spec(three)
    assert vggspec.parse(format_spec(three)) == three


@pytest.mark.parametrize("count", [0, -3, True, 2.0, "4"])
def test_with_classes_takes_a_whole_number_of_at_least_one(count):
    with pytest.raises(vggspec.SpecError, match="classifies into 1 class or more"):
        vggspec.load(NARROW_A).with_classes(count)


def test_with_classes_of_a_spec_without_a_classifier_says_so():
    spec = vggspec.parse("input: 16x16 RGB\nconv3-8\nmaxpool\n", check=False)
    with pytest.raises(vggspec.SpecError, match="has no fully-connected layer") as info:
        spec.with_classes(5)
    assert "FC-5" in info.value.hint
    with pytest.raises(vggspec.SpecError, match="cannot classify into 2,000,000 classes: .* larger than vggspec"):
        vggspec.load(NARROW_A).with_classes(2_000_000)


# -- the settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, said",
    [
        (0, "the number of classes must be at least 1, got 0"),
        ("-2", "the number of classes must be at least 1, got -2"),
        ("many", "the number of classes is a whole number or auto, not 'many'"),
        (2.5, "the number of classes is a whole number or auto, not 2.5"),
    ],
)
def test_a_bad_class_count_is_one_line(value, said):
    with pytest.raises(vggspec.SpecError) as info:
        validated(TrainConfig, {"data": "d", "num_classes": value}, "training")
    assert str(info.value) == f"error: invalid training settings: num_classes: {said}"
    assert validated(TrainConfig, {"data": "d", "num_classes": "7"}, "training").num_classes == 7
    assert validated(TrainConfig, {"data": "d", "num_classes": "auto"}, "training").num_classes == "auto"


@pytest.mark.parametrize("command", ["compile", "analyze", "predict", "evaluate"])
def test_auto_is_refused_where_there_is_no_training_set_to_count(command, capsys):
    args = {
        "compile": ["compile", str(NARROW_A)],
        "analyze": ["analyze", str(NARROW_A)],
        "predict": ["predict", str(NARROW_A), "--weights", "w.pt", "cat.jpg"],
        "evaluate": ["evaluate", str(NARROW_A), "--weights", "w.pt", "--data", "images"],
    }[command]
    assert main([*args, "--num-classes", "auto"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--num-classes auto counts the class folders of a training set" in err[0], err
    assert f"and {command} reads none" in err[0]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_checkpoints_classes_are_its_own(command, capsys):
    args = ["predict", "RUN", "cat.jpg"] if command == "predict" else ["evaluate", "RUN", "--data", "images"]
    assert main([*args, "--num-classes", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--num-classes builds SPEC for --weights" in err[0], err


# -- analyze and compile --------------------------------------------------------------------------


def test_analyze_num_classes_changes_the_parameters_as_table_2_counts_them(capsys):
    assert main(["analyze", "D", "--num-classes", "7", "--format", "json"]) == 0
    seven = json.loads(capsys.readouterr().out)[0]["total"]
    assert main(["analyze", "D", "--format", "json"]) == 0
    thousand = json.loads(capsys.readouterr().out)[0]["total"]
    assert thousand["params"] == 138_357_544  # Table 2: 138 million
    assert seven["params"] == thousand["params"] - (4096 + 1) * (1000 - 7)  # fc8: 4096 weights and a bias a class
    assert main(["analyze", "--params", "--num-classes", "7"]) == 0  # Table 1's six, each for 7 classes
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("params  "))
    assert f"{seven['params']:,}" in row.split()


def test_compile_num_classes_builds_that_many_outputs(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["compile", str(NARROW_A), "--num-classes", "7", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "FC-7" in out and "output 7" in out and "OK: every layer's output shape" in out
    path = tmp_path / "seven.pt"
    assert main(["compile", str(NARROW_A), "--num-classes", "7", "-o", str(path)]) == 0
    model = vggspec.load_model(path)
    assert model.classifier[-1].fc.out_features == 7 and model.spec.classifier.features == 7
    assert main(["compile", str(path), "--num-classes", "3", "-o", str(tmp_path / "x.pt")]) == 2
    assert "--num-classes does not apply to it" in capsys.readouterr().err


# -- build ----------------------------------------------------------------------------------------


def test_build_num_classes_and_weights_of_another_count(tmp_path):
    torch = pytest.importorskip("torch")
    spec = vggspec.load(NARROW_A)
    seven = vggspec.build(spec, num_classes=7, seed=0)
    assert seven.spec.classifier.features == 7 and seven(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    ten = vggspec.build(spec, seed=1)
    path = tmp_path / "ten.pth"
    torch.save(ten.state_dict(), path)
    loaded = vggspec.build(spec, weights=path, num_classes=4)
    report = loaded.weights_report
    assert [name for name, _ in report.new] == ["fc8"] and "10×64" in report.new[0][1]
    assert "1 new (drawn by --init" in str(report) and loaded.classifier[-1].fc.out_features == 4
    assert torch.equal(loaded.features.conv1_1.conv.weight, ten.features.conv1_1.conv.weight)  # the rest copied
    with pytest.raises(vggspec.WeightsError, match="fc8") as info:
        vggspec.build(spec, weights=path, num_classes=4, strict_weights=True)
    assert "the weights classify into 10 classes, the network into 4" in info.value.hint
    assert "--num-classes 10" in info.value.hint
    with pytest.raises(vggspec.SpecError, match="classifies into 1 class or more"):
        vggspec.build(spec, num_classes=0)


# -- train ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory) -> Path:
    """2 classes of 8 training and 4 validation images, 36×36 (A-narrow-32 takes 32×32 crops at S = 37)."""
    pytest.importorskip("PIL")
    from vggspec.data.samples import image_folder

    return image_folder(tmp_path_factory.mktemp("two"), classes=2, train=8, val=4, size=36)


def narrow_config(folder: Path, data: Path, **overrides) -> TrainConfig:
    """A-narrow-32 (10 classes) as written, trained one epoch on ``data``."""
    values = dict(epochs=1, batch_size=8, stats_images=8, init="glorot", lr=0.01)
    return tiny_config(folder, data, NARROW_A.read_text(), name="A-narrow-32.vgg", **{**values, **overrides})


def test_num_classes_auto_trains_a_10_class_spec_on_2_classes_and_a_resume_keeps_them(tmp_path, two_classes, capfd):
    torch = pytest.importorskip("torch")
    from vggspec.run.train import train

    config = narrow_config(tmp_path, two_classes, num_classes="auto")
    run = train(config)
    assert "note: A narrow 32's FC-10 becomes FC-2 (--num-classes auto: 2 classes)" in capfd.readouterr().err
    for name in ("best.pt", "last.pt"):
        model = vggspec.load_model(run / name)
        assert model.classifier[-1].fc.out_features == 2 and model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
    trained_as = (run / "spec.vgg").read_text()
    written = NARROW_A.read_text().splitlines()
    line = vggspec.load(NARROW_A).classifier.line
    assert trained_as.splitlines() == [
        *written[: line - 1],
        "FC-2  # trained with --num-classes auto: 2 classes (the spec says FC-10)",
        *written[line:],
    ]  # the header comments and the layers as written; the classifier as trained, saying why
    assert vggspec.load(run / "spec.vgg") == vggspec.load_model(run / "last.pt").spec
    assert json.loads((run / "config.json").read_text())["num_classes"] == "auto"  # as given
    assert torch.load(run / "last.pt", weights_only=True)["config"]["num_classes"] == "auto"
    # Resumed without SPEC (the run's own spec.vgg) and with it (the 10-class file): 2 classes, the same network.
    train(TrainConfig(out=str(run), data=str(two_classes), resume=True, epochs=2, progress=False))
    train(TrainConfig(spec=config.spec, data=str(two_classes), out=str(run), resume=True, epochs=3, progress=False))
    assert vggspec.load_model(run / "last.pt").classifier[-1].fc.out_features == 2
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 3
    assert (run / "spec.vgg").read_text() == trained_as
    # A resumed run keeps its count: another is refused, as any change of its recipe.
    with pytest.raises(vggspec.SpecError, match="started with --num-classes auto: a resumed run keeps its recipe"):
        train(TrainConfig(out=str(run), data=str(two_classes), resume=True, epochs=4, num_classes=3, progress=False))
    # evaluate and predict read the network from the checkpoint, and --weights with --num-classes into the spec.
    from vggspec.run.evaluate import load_network, predict

    assert load_network(run).num_classes == 2
    image = next((two_classes / "val").glob("*/*.png"))
    [(_, top)] = predict(str(NARROW_A), [image], weights=run / "best.pt", num_classes=2)
    assert sorted(name for name, _ in top) == sorted(p.name for p in (two_classes / "train").iterdir())
    with pytest.raises(vggspec.WeightsError, match="fc8") as info:
        predict(str(NARROW_A), [image], weights=run / "best.pt")
    assert "--num-classes 2" in info.value.hint


def test_num_classes_from_a_config_file_and_the_mismatch_names_the_flag(tmp_path, two_classes, capsys):
    pytest.importorskip("torch")
    from vggspec.run.train import train

    with pytest.raises(vggspec.SpecError, match="ends in FC-10 \\(10 classes\\) but .* has 2 class folders") as info:
        train(narrow_config(tmp_path, two_classes))
    assert info.value.hint.startswith("change the last FC layer to FC-2 or give --num-classes 2 (or auto)")
    with pytest.raises(vggspec.SpecError, match="--num-classes 3 makes the network end in FC-3 \\(3 classes") as info:
        train(narrow_config(tmp_path, two_classes, num_classes=3))
    assert info.value.hint.startswith("give --num-classes 2 (or auto)") and info.value.line is not None
    # A --config key like every setting; the flag's spelling checked as the flag is read.
    settings = tmp_path / "recipe.toml"
    settings.write_text('num-classes = "auto"\n')
    with pytest.raises(SystemExit) as exit:
        main(["train", str(NARROW_A), "--config", str(settings), "--data", "x", "--num-classes", "0"])
    assert exit.value.code == 2
    assert "argument --num-classes: the number of classes must be at least 1, got 0" in capsys.readouterr().err
    config = narrow_config(tmp_path / "from-file", two_classes)
    args = ["train", config.spec, "--config", str(settings), "--data", str(two_classes), "--out", str(tmp_path / "r")]
    args += ["--epochs", "1", "--batch-size", "8", "--stats-images", "8", "--workers", "0", "--no-progress"]
    assert main(args) == 0
    assert "FC-2  # trained with --num-classes auto" in (tmp_path / "r" / "spec.vgg").read_text()
