"""Pretrained weights by name (``torchvision:vgg16``) and partial loading for fine-tuning.

Nothing is downloaded: each test points TORCH_HOME at a temporary folder, places a state dict at the
exact path torchvision's weights API caches its download at, and makes any download fail."""

import json
import os
import urllib.error

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import vggspec  # noqa: E402
from vggspec.cli import main  # noqa: E402
from vggspec.nn.checkpoint import read_checkpoint  # noqa: E402
from vggspec.nn.compiler import adapt_first_conv  # noqa: E402
from vggspec.nn.pretrained import VGG_NAMES  # noqa: E402

from .conftest import SPECS  # noqa: E402

NARROW_A = SPECS / "small" / "A-narrow-32.vgg"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # torchvision's normalisation


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network; returns a function placing a state dict as NAME's download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir elsewhere would win over TORCH_HOME

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)

    def place(name: str, state_dict, member: str = "DEFAULT"):
        enum = torchvision.models.get_model_weights(name)
        weights = enum.DEFAULT if member == "DEFAULT" else enum[member]
        path = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(weights.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state_dict, path)
        return path

    return place


def random_torchvision(name: str) -> torch.nn.Module:
    """torchvision's network with cheap random weights (its own init takes seconds)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)()
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_(0, 0.01, generator=generator)
    return model


def equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.values(), b.values())) and len(a) == len(b)


def test_vgg11_by_name_from_the_cache_and_fine_tuned_for_gray_images_and_10_classes(hub, paper_specs):
    reference = random_torchvision("vgg11").eval()
    hub("vgg11", reference.state_dict())
    for name in ("torchvision:vgg11", "torchvision:vgg11:IMAGENET1K_V1", "torchvision:VGG11:DEFAULT"):
        model = vggspec.build(paper_specs["A"], weights=name)
        assert equal(model.state_dict(), reference.state_dict())
        assert model.weights_report.complete and len(model.weights_report.copied) == 11

    gray = vggspec.load(SPECS / "small" / "vgg11-gray-10.vgg")
    model = vggspec.build(gray, weights="torchvision:vgg11", init="glorot", seed=1).eval()
    report = model.weights_report
    assert [name for name, *_ in report.adapted] == ["conv1_1"]
    assert [name for name, _ in report.new] == ["fc8"]
    assert len(report.copied) == 9 and "1 adapted, 1 new (drawn by --init glorot)" in str(report)
    ours, theirs = list(model.state_dict().values()), list(reference.state_dict().values())
    assert all(torch.equal(x, y) for x, y in zip(ours[2:-2], theirs[2:-2]))  # conv1_2 … fc7
    assert torch.equal(ours[1], theirs[1])  # conv1_1's bias
    fc8 = model.classifier.fc8.fc
    assert fc8.weight.shape == (10, 4096) and not fc8.bias.any() and 0.01 < fc8.weight.std() < 0.05  # glorot
    x = torch.rand(2, 1, 224, 224)
    with torch.no_grad():
        got = model.features.conv1_1.conv(x)
        expected = reference.features[0](x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)

    with pytest.raises(vggspec.WeightsError, match="conv1_1"):
        vggspec.build(gray, weights="torchvision:vgg11", strict_weights=True)


@pytest.mark.parametrize("channels", [1, 2, 4, 6])
def test_a_first_conv_adapted_to_n_channels(channels):
    """Summed for gray; else repeated cyclically and scaled by 3/N, the same outputs for an image of equal
    channels when N is a multiple of 3."""
    rgb = torch.nn.Conv2d(3, 8, 3, padding=1)
    adapted = torch.nn.Conv2d(channels, 8, 3, padding=1)
    with torch.no_grad():
        adapted.weight.copy_(adapt_first_conv(rgb.weight, channels))
        adapted.bias.copy_(rgb.bias)
        plane = torch.rand(1, 1, 9, 9)
        if channels % 3 == 0 or channels == 1:
            torch.testing.assert_close(adapted(plane.repeat(1, channels, 1, 1)), rgb(plane.repeat(1, 3, 1, 1)))
    if channels == 1:
        torch.testing.assert_close(adapted.weight, rgb.weight.sum(1, keepdim=True))
    else:
        for i in range(channels):
            torch.testing.assert_close(adapted.weight[:, i], rgb.weight[:, i % 3] * 3 / channels)


def test_bn_names_and_small_layouts(hub):
    """The _bn names resolve to their own file; any state dict that lines up with the spec loads."""
    spec = vggspec.load(SPECS / "small" / "D-narrow-32-bn.vgg")
    source = vggspec.build(spec, init="glorot", seed=3)
    hub("vgg16_bn", source.state_dict())
    assert equal(vggspec.build(spec, weights="torchvision:vgg16_bn").state_dict(), source.state_dict())
    with pytest.raises(vggspec.WeightsError, match="not in the torch hub cache"):
        vggspec.build(spec, weights="torchvision:vgg16")


def test_names_that_are_not_there(hub, tmp_path):
    spec = vggspec.load(NARROW_A)
    for name in ("torchvision:vgg17", "torchvision:resnet50"):
        with pytest.raises(vggspec.WeightsError) as info:
            vggspec.build(spec, weights=name)
        assert all(f"torchvision:{n}" in str(info.value) for n in VGG_NAMES) and "\n" not in str(info.value)
    with pytest.raises(vggspec.WeightsError, match="no vgg16 weights 'IMAGENET22K'.*torchvision:vgg16:IMAGENET1K_V1"):
        vggspec.build(spec, weights="torchvision:vgg16:IMAGENET22K")
    with pytest.raises(vggspec.WeightsError) as info:
        vggspec.build(spec, weights="torchvision:vgg19")
    message = info.value.message
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert message.startswith(f"torchvision:vgg19 is not in the torch hub cache ({expected}) and could not be")
    assert "no network in tests" in message and "\n" not in message


def test_partial_loading_keeps_what_fits_and_draws_the_rest(hub):
    spec = vggspec.load(NARROW_A)
    source = vggspec.build(spec, init="glorot", seed=4)
    five = vggspec.parse(spec.text.replace("FC-10", "FC-5"))
    a = vggspec.build(five, weights=source.state_dict(), init="glorot", seed=7)
    b = vggspec.build(five, weights=source.state_dict(), init="glorot", seed=7)
    assert equal(a.state_dict(), b.state_dict())  # the new layers are seeded
    assert [name for name, _ in a.weights_report.new] == ["fc8"] and not a.weights_report.adapted
    for (key, x), y in zip(list(a.state_dict().items())[:-2], list(source.state_dict().values())[:-2]):
        assert torch.equal(x, y), key
    # weights never trained (torchvision's vgg16:IMAGENET1K_FEATURES has a classifier of NaNs) are drawn anew
    features_only = {k: v.clone() for k, v in source.state_dict().items()}
    for key in features_only:
        if key.startswith("classifier."):
            features_only[key].fill_(float("nan"))
    model = vggspec.build(spec, weights=features_only, init="glorot", seed=7)
    assert [name for name, _ in model.weights_report.new] == ["fc6", "fc7", "fc8"]
    assert all(p.isfinite().all() for p in model.parameters()) and len(model.weights_report.copied) == 8
    # layers that do not line up are still refused: another network, not a fine-tuning
    deeper = vggspec.parse(spec.text.replace("conv3-8\n", "conv3-8 ×2\n"))
    with pytest.raises(vggspec.WeightsError, match="belong to another network"):
        vggspec.build(deeper, weights=source.state_dict())


def test_compile_prints_the_loading_and_strict_weights_refuses(hub, tmp_path, capsys):
    spec = vggspec.load(NARROW_A)
    hub("vgg11", vggspec.build(spec, init="glorot", seed=4).state_dict())
    five = tmp_path / "five.vgg"
    five.write_text(spec.text.replace("FC-10", "FC-5"))
    assert main(["compile", str(five), "--weights", "torchvision:vgg11"]) == 0
    err = capsys.readouterr().err
    assert "Loaded torchvision:vgg11 into A narrow 32: 10 layers copied, 0 adapted, 1 new" in err
    assert "new      fc8" in err
    assert main(["compile", str(five), "--weights", "torchvision:vgg11", "--strict-weights"]) == 2
    assert "fc8" in capsys.readouterr().err
    assert main(["compile", str(five), "--weights", "torchvision:vgg17"]) == 2


def test_train_takes_the_names_and_strict_weights(hub, tmp_path):
    from vggspec.run.config import TrainConfig
    from vggspec.run.startup import _check_start_files

    config = TrainConfig(spec=str(NARROW_A), data=str(tmp_path), weights="torchvision:vgg11", strict_weights=True)
    _check_start_files(config)  # a name, not a file: downloaded or read from the cache when built
    with pytest.raises(vggspec.WeightsError, match="vgg11, "):
        _check_start_files(config.model_copy(update={"weights": "torchvision:vgg12"}))


def test_a_run_fine_tunes_from_a_name_and_says_what_it_loaded(hub, tmp_path, shapes, capsys):
    """Another number of classes: the run starts from the copied layers, its classifier drawn anew."""
    from vggspec.run.train import train

    from .conftest import TINY_SPEC, tiny_config

    source = vggspec.build(vggspec.parse(TINY_SPEC.replace("FC-3\n", "FC-5\n")), init="glorot", seed=1)
    hub("vgg11", source.state_dict())
    run = train(tiny_config(tmp_path, shapes, epochs=1, weights="torchvision:vgg11"))
    err = capsys.readouterr().err
    assert "Loaded torchvision:vgg11 into net: 5 layers copied, 0 adapted, 1 new (drawn by --init kaiming)" in err
    assert "new      fc4         shape 3×32; the weights' classifier.fc4.fc is 5×32" in err
    assert "inputs as the weights were trained on: RGB pixels, (pixel / 255 - mean) / std with mean (0.485" in err
    assert (run / "best.pt").is_file()
    record = vggspec.load_model(run / "best.pt").preprocessing  # fine-tuning keeps the weights' normalisation
    assert record.scale == 1 and record.std == pytest.approx(IMAGENET_STD)
    assert record.mean == pytest.approx(IMAGENET_MEAN)
    assert record.classes == read_checkpoint(run / "best.pt")["classes"] and len(record.classes) == 3
    with pytest.raises(vggspec.WeightsError, match="fc"):
        train(tiny_config(tmp_path / "strict", shapes, epochs=1, weights="torchvision:vgg11", strict_weights=True))


# -- the weights' preprocessing -----------------------------------------------------------------


def test_torchvision_weights_bring_their_normalisation_and_class_names(hub, tmp_path):
    """build() records torchvision's 0-1 scale, mean/std and ImageNet's categories; they travel through a
    checkpoint and to_dense; a gray network takes the channels' average; other class counts drop the names."""
    spec = vggspec.parse(NARROW_A.read_text().replace("FC-10", "FC-1000"))
    hub("vgg11", vggspec.build(spec, init="glorot", seed=4).state_dict())
    model = vggspec.build(spec, weights="torchvision:vgg11")
    record = model.preprocessing
    assert (record.scale, record.channel_order) == (1, "RGB")
    torch.testing.assert_close(record.mean, IMAGENET_MEAN) and torch.testing.assert_close(record.std, IMAGENET_STD)
    categories = torchvision.models.VGG11_Weights.DEFAULT.meta["categories"]
    assert record.classes == categories and record.classes[0] == "tench"
    assert vggspec.to_dense(model).preprocessing == record
    vggspec.save_checkpoint(model, tmp_path / "tv.pt")
    assert vggspec.load_model(tmp_path / "tv.pt").preprocessing == record
    assert vggspec.build(spec, weights=tmp_path / "tv.pt").preprocessing == record  # a checkpoint's weights, too

    ten = vggspec.build(vggspec.load(NARROW_A), weights="torchvision:vgg11", init="glorot")
    assert ten.preprocessing.classes == [] and ten.preprocessing.mean == record.mean
    gray = vggspec.parse(NARROW_A.read_text().replace("32x32 RGB", "32x32 gray"))
    gray_record = vggspec.build(gray, weights="torchvision:vgg11", init="glorot").preprocessing
    assert gray_record.channel_order == "L" and gray_record.mean == [sum(record.mean) / 3]
    assert vggspec.build(spec, init="glorot").preprocessing is None  # a fresh network's inputs are not known yet


def test_predict_normalises_as_torchvision_and_prints_imagenet_names(hub, tmp_path, capsys):
    from PIL import Image

    from vggspec.nn.dense import posteriors

    spec = vggspec.parse(NARROW_A.read_text().replace("FC-10", "FC-1000"))
    hub("vgg11", vggspec.build(spec, init="glorot", seed=4).state_dict())
    spec_file = tmp_path / "a1000.vgg"
    spec_file.write_text(spec.text)
    assert main(["compile", str(spec_file), "--weights", "torchvision:vgg11", "-o", str(tmp_path / "tv.py")]) == 0
    assert "it takes raw pixels 0-255 and normalises them: RGB pixels, (pixel / 255" in capsys.readouterr().err
    assert "tench" in (tmp_path / "tv.py").read_text()
    assert main(["compile", str(spec_file), "--weights", "torchvision:vgg11", "-o", str(tmp_path / "tv.pt")]) == 0
    pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(pixels.numpy()).save(tmp_path / "x.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "tv.pt"), str(tmp_path / "x.png"), "--scale", "32", "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = vggspec.load_model(tmp_path / "tv.pt")
    x = (pixels.permute(2, 0, 1)[None].float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = posteriors(vggspec.to_dense(model), x)[0]
    categories = torchvision.models.VGG11_Weights.DEFAULT.meta["categories"]
    expected = [categories[i] for i in probs.topk(3).indices]
    assert [line.split(maxsplit=1)[1] for line in lines[1:]] == expected


def kaiming_torchvision(name: str, sharpen: float) -> torch.nn.Module:
    """torchvision's network with He-scaled random weights, its last layer ``sharpen``× as confident: its
    probabilities depend on the pixels the way a trained network's do (and a pixel off moves them)."""
    model = random_torchvision(name)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2 / fan_in) ** 0.5, generator=generator)
                module.bias.zero_()
        model.classifier[-1].weight.mul_(sharpen)
    return model.eval()


def test_predict_center_is_torchvisions_evaluation_transform(hub, tmp_path, capsys):
    """`predict A --weights torchvision:vgg11 --crop center` gives the probabilities of torchvision's own
    recipe (weights.transforms() on the PIL image, then the model) within 1e-4 as asked, in fact within
    float rounding: the same pixels (torch's resampling kernel, a grey level off, moves these by 1-2·10⁻⁴).
    For a photo-sized JPEG and PNG; --format json says how they were made."""
    import json

    from PIL import Image

    from .images import picture

    reference = kaiming_torchvision("vgg11", sharpen=2)
    hub("vgg11", reference.state_dict())
    transform = torchvision.models.VGG11_Weights.DEFAULT.transforms()
    categories = torchvision.models.VGG11_Weights.DEFAULT.meta["categories"]
    for name, size in (("photo.jpg", (500, 375)), ("scan.png", (300, 420))):
        picture(*size, seed=5).save(tmp_path / name)
        capsys.readouterr()
        args = ["predict", "A", "--weights", "torchvision:vgg11", "--crop", "center", "--format", "json"]
        assert main([*args, "--top", "1000", str(tmp_path / name)]) == 0
        document = json.loads(capsys.readouterr().out)
        assert (document["method"], document["scale"], document["flip"]) == ("center", 256, False)
        assert "(pixel / 255 - mean) / std" in document["preprocessing"]
        (image,) = document["images"]
        ours = {entry["class"]: entry["probability"] for entry in image["top"]}
        with torch.no_grad():
            expected = reference(transform(Image.open(tmp_path / name).convert("RGB"))[None]).softmax(1)[0]
        assert 0.5 < max(expected) < 0.99  # confident, not saturated: a pixel's difference shows
        assert len(ours) == 1000 and image["top"][0]["class"] == categories[int(expected.argmax())]
        worst = max(abs(ours[categories[i]] - float(p)) for i, p in enumerate(expected))
        assert worst < 1e-5, (name, worst)


def test_predict_and_evaluate_load_weights_into_a_spec(hub, tmp_path, capsys):
    """A spec with --weights evaluates as the compiled checkpoint does; weights that do not fit, or that do
    not say how their inputs are prepared, are refused in one line (exit 2)."""
    from vggspec.run.config import EvaluateConfig
    from vggspec.run.evaluate import evaluate

    from .images import make_split

    spec = vggspec.parse(NARROW_A.read_text().replace("FC-10", "FC-1000"))
    source = vggspec.build(spec, init="glorot", seed=4)
    hub("vgg11", source.state_dict())
    spec_file = tmp_path / "a1000.vgg"
    spec_file.write_text(spec.text)
    assert main(["compile", str(spec_file), "--weights", "torchvision:vgg11", "-o", str(tmp_path / "tv.pt")]) == 0
    data = make_split(tmp_path / "data", "val", {"tench": [(40, 36), (50, 32)], "goldfish": [(36, 60)]})
    image = next((data / "val" / "tench").iterdir())
    capsys.readouterr()
    assert main(["predict", str(spec_file), "--weights", "torchvision:vgg11", str(image)]) == 0
    by_spec = capsys.readouterr().out
    assert main(["predict", str(tmp_path / "tv.pt"), str(image)]) == 0
    assert capsys.readouterr().out == by_spec and by_spec.count("\n") == 6

    table = {}
    for name, config in {
        "spec": EvaluateConfig(checkpoints=[str(spec_file)], weights="torchvision:vgg11", data=str(tmp_path / "data")),
        "checkpoint": EvaluateConfig(checkpoints=[str(tmp_path / "tv.pt")], data=str(tmp_path / "data")),
    }.items():
        results = evaluate(config.model_copy(update={"progress": False}))
        (row,) = results.rows
        table[name] = (row.top1_err, row.top5_err, len(results.paths))
    assert table["spec"] == table["checkpoint"] and table["spec"][2] == 3

    assert main(["predict", str(NARROW_A), "--weights", "torchvision:vgg11", str(image)]) == 2
    assert "fc8" in capsys.readouterr().err  # FC-10 against the weights' 1000 classes: strict
    torch.save(source.state_dict(), tmp_path / "plain.pth")
    assert main(["predict", str(spec_file), "--weights", str(tmp_path / "plain.pth"), str(image)]) == 2
    err = capsys.readouterr().err
    assert "does not say how its inputs are prepared" in err and "Traceback" not in err
    assert main(["evaluate", str(spec_file), str(spec_file), "--weights", "torchvision:vgg11", "--data", "x"]) == 2
    assert "--weights loads into one SPEC" in capsys.readouterr().err


def test_auto_draws_new_layers_for_the_input_the_weights_expect(hub):
    """Under torchvision's normalisation the input's RMS is about 1, not the paper's 58: auto decides the
    layers left new by that. Here the paper's N(0, 0.01²) starts at 3e-2 on 0-255 inputs (it trains),
    at 5e-4 on normalised ones (it fades): glorot then. A vggspec checkpoint of the paper's
    preprocessing keeps the paper's."""
    spec = vggspec.parse("input: 16x16 RGB\nconv3-8\nmaxpool\nFC-32\nFC-3\nsoft-max\n")
    five = vggspec.parse(spec.text.replace("FC-3\n", "FC-5\n"))
    source = vggspec.build(five, init="glorot", seed=1)
    hub("vgg11", source.state_dict())
    assert vggspec.build(spec, seed=2).weights_report is None  # nothing loaded: auto on 0-255 inputs
    from vggspec.spec.analysis import resolve_init

    assert resolve_init(spec, "auto") == "paper"
    model = vggspec.build(spec, weights="torchvision:vgg11", seed=2)
    assert model.weights_report.init == "glorot" and "drawn by --init glorot" in str(model.weights_report)
    fc = model.classifier[-1].fc.weight.detach()  # drawn by glorot: std sqrt(2 / (32 + 3))
    assert float(fc.std()) == pytest.approx((2 / 35) ** 0.5, rel=0.35)

    source.preprocessing = vggspec.Preprocessing.paper([120.0, 110.0, 100.0])
    paper = vggspec.build(spec, weights=_saved(source, hub), seed=2)
    assert paper.weights_report.init == "paper" and paper.preprocessing.is_paper


def _saved(model, hub) -> str:
    """``model`` as a vggspec checkpoint next to the hub cache."""
    from pathlib import Path

    path = Path(os.environ["TORCH_HOME"]) / "paper.pt"
    vggspec.save_checkpoint(model, path)
    return str(path)


def test_torchvisions_own_files_are_taken_to_expect_its_normalisation(tmp_path):
    """A torchvision-layout .pth without a record (torchvision's downloads, kept by hand) loads with
    torchvision's normalisation, and the report says it was assumed; vggspec's layout assumes nothing."""
    spec = vggspec.parse(NARROW_A.read_text().replace("FC-10", "FC-1000"))
    ours = vggspec.build(spec, init="glorot", seed=1).state_dict()
    torch.save(ours, tmp_path / "ours.pth")
    assert vggspec.build(spec, weights=tmp_path / "ours.pth").preprocessing is None
    modules = list(dict.fromkeys(key.rsplit(".", 1)[0] for key in ours))  # in order: features…, classifier…
    renamed = {}
    for key, value in ours.items():
        module, leaf = key.rsplit(".", 1)
        part = "features" if module.startswith("features") else "classifier"
        index = [m for m in modules if m.startswith(part)].index(module)
        renamed[f"{part}.{3 * index}.{leaf}"] = value  # torchvision's indices skip ReLUs and pools
    torch.save(renamed, tmp_path / "vgg11-8a719046.pth")
    model = vggspec.build(spec, weights=tmp_path / "vgg11-8a719046.pth")
    assert model.weights_report.complete and equal(model.state_dict(), ours)
    assert model.preprocessing.scale == 1 and model.preprocessing.mean == pytest.approx(IMAGENET_MEAN)
    assert model.preprocessing.classes[0] == "tench"
    assert "torchvision's normalisation assumed" in str(model.weights_report)


def test_a_download_speaks_on_standard_error_and_leaves_standard_output_to_the_result(hub, monkeypatch, capsys):
    """torch.hub writes "Downloading: ..." to standard output, where ``compile --format json`` and
    ``predict --format json > out.json`` write their result: the first run with a name would be unreadable."""
    source = vggspec.build(vggspec.load(NARROW_A), init="glorot", seed=5).state_dict()

    def download(url, path, *args, **kwargs):  # as torch's: a file in the cache, and words on standard output
        print(f"fetched {url}")
        torch.save(source, path)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    for run in ("downloads", "reads the cache"):
        assert main(["compile", str(NARROW_A), "--weights", "torchvision:vgg11", "--format", "json"]) == 0, run
        out, err = capsys.readouterr()
        assert json.loads(out), run
        said = 'Downloading: "https://download.pytorch.org/models/vgg11-' in err and "fetched https://" in err
        assert said == (run == "downloads"), err


def test_a_corrupt_cached_file_and_another_architecture_each_get_one_line(hub, tmp_path, capsys):
    path = hub("vgg11", {})
    path.write_bytes(b"PK\x03\x04 half a download")
    assert main(["compile", "A", "--weights", "torchvision:vgg11"]) == 2
    err = capsys.readouterr().err
    assert f"{path} (torchvision:vgg11 in the torch hub cache) is not a loadable state dict" in err
    assert "delete it to download it again" in err and "Traceback" not in err

    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64), "fc.weight": torch.zeros(9, 8)}
    hub("vgg11", resnet)
    assert main(["compile", str(NARROW_A), "--weights", "torchvision:vgg11"]) == 2
    err = capsys.readouterr().err
    assert "belong to another network" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_fine_tuning_to_another_number_of_classes_learns(tmp_path, capsys):
    """A network trained in the test on 4 classes of shapes stands in for pretrained weights: a 2-class
    network from them on other images, its classifier drawn anew and everything else copied, learns in a
    few epochs what the same network from random weights does not (chance: 50% error); it keeps its
    weights' preprocessing and predicts with its own class names."""
    import json

    from vggspec.data.samples import image_folder
    from vggspec.run.evaluate import predict
    from vggspec.run.train import train

    from .conftest import tiny_config

    four = image_folder(tmp_path / "four", classes=4, train=48, val=8, size=32)
    spec = "input: 24x24 RGB\nconv3-16 [bn]\nmaxpool\nconv3-32 [bn]\nmaxpool\nconv3-32 [bn]\nmaxpool\nFC-64\nFC-4\n"
    pretrained = train(tiny_config(tmp_path / "pre", four, spec, epochs=8, scale="24:32", lr=0.02)) / "best.pt"
    data = image_folder(tmp_path / "two", classes=2, train=24, val=16, size=32, seed=1)
    recipe = dict(epochs=5, batch_size=12, lr=0.01, scale="24:32", stats_images=30, init="auto")
    two = spec.replace("FC-4\n", "FC-2\n")
    capsys.readouterr()
    run = train(tiny_config(tmp_path / "fine", data, two, weights=str(pretrained), **recipe))
    assert "7 layers copied, 0 adapted, 1 new" in capsys.readouterr().err
    scratch = train(tiny_config(tmp_path / "scratch", data, two, **recipe))

    def best(run):
        return min(json.loads(line)["val_top1_err"] for line in (run / "metrics.jsonl").read_text().splitlines())

    assert best(run) <= 0.2 and best(scratch) >= 0.3, (best(run), best(scratch))
    assert vggspec.load_model(run / "best.pt").preprocessing.mean == vggspec.load_model(pretrained).preprocessing.mean
    names = sorted(path.name for path in (data / "val").iterdir())
    found = predict(run, [next((data / "val" / names[1]).iterdir())], top=4)
    assert sorted(name for name, _ in found[0][1]) == names == ["ellipse", "rectangle"]
