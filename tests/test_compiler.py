"""Compiled modules against the analysis, torchvision and fvcore; initialisation; weights; transfer."""

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")
torchvision = pytest.importorskip("torchvision")
fvcore_nn = pytest.importorskip("fvcore.nn")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import vggspec  # noqa: E402
from vggspec.nn.compiler import initialise, load_weights  # noqa: E402
from vggspec.nn.verify import verify  # noqa: E402

from . import images  # noqa: E402
from .conftest import PAPER_CONFIGS, SPECS  # noqa: E402

TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
SMALL = "input: 32x32 RGB\nconv3-8\nLRN\nmaxpool\nconv3-16 [bn]\nmaxpool\nconv1-16\nmaxpool\nFC-32\nFC-10\nsoft-max"


def with_bn(name: str) -> vggspec.Spec:
    text = (SPECS / f"{name}.vgg").read_text()
    return vggspec.parse("\n".join(line + " [bn]" if line.startswith("conv") else line for line in text.splitlines()))


def materialised(spec: vggspec.Spec) -> torch.nn.Module:
    """Real (uninitialised) CPU tensors without paying for a full initialisation."""
    return vggspec.build(spec, device="meta").to_empty(device="cpu").eval()


# -- structure against the analysis -----------------------------------------------------


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_every_layer_of_a_to_e_matches_the_analysis(name, paper_specs):
    """Parameters and each layer's real output shape, on the meta device (nothing computed)."""
    model = vggspec.build(paper_specs[name], device="meta")
    assert all(p.is_meta for p in model.parameters())
    result = verify(model)
    assert result.ok, result.mismatches()
    assert sum(p.numel() for p in model.parameters()) == vggspec.analyze(paper_specs[name]).params
    assert result.output_shape == (1000,)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_fvcore_counts_the_analysed_macs(name, paper_specs):
    model = materialised(paper_specs[name])
    counter = fvcore_nn.FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    by_op = counter.by_operator()
    assert set(by_op) <= {"conv", "linear"}  # no adaptive pooling in a compiled spec
    assert counter.total() == vggspec.analyze(paper_specs[name]).macs


@st.composite
def small_specs(draw) -> vggspec.Spec:
    """Random narrow networks: odd kernels, pools with various windows, LRN, batch norm, 1-3 FC."""
    lines = [f"input: {draw(st.integers(8, 40))} {draw(st.sampled_from(['RGB', 'gray', '2 channels']))}"]
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "lrn"]))
        if kind == "conv":
            bn = " [bn]" if draw(st.booleans()) else ""
            lines.append(f"conv{draw(st.sampled_from([1, 3, 5]))}-{draw(st.integers(1, 12))}{bn}")
        elif kind == "pool":
            size = draw(st.integers(1, 3))
            lines.append(f"maxpool [size={size}, stride={draw(st.integers(1, 3))}]")
        else:
            lines.append("LRN [n=3]")
    lines += [f"FC-{draw(st.integers(1, 16))}" for _ in range(draw(st.integers(0, 2)))] + ["FC-5"]
    spec = vggspec.parse("\n".join(lines), check=False)
    try:
        vggspec.analyze(spec)
    except vggspec.ShapeError:
        return draw(st.nothing())
    return spec


@settings(max_examples=25, deadline=None)
@given(small_specs())
def test_generated_specs_compile_to_what_the_analysis_says(spec):
    model = materialised(spec)
    result = verify(model, batch=2)
    assert result.ok, result.mismatches()
    counter = fvcore_nn.FlopCountAnalysis(model, torch.zeros(1, *spec.input.shape))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    by_op = counter.by_operator()
    assert by_op.get("conv", 0) + by_op.get("linear", 0) == vggspec.analyze(spec).macs


# -- interchangeable with torchvision ----------------------------------------------------


@pytest.mark.parametrize(
    "name, bn",
    [("A", False), ("B", False), ("D", False), ("E", False), ("A", True)],
    ids=["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn"],
)
def test_torchvision_weights_give_torchvision_outputs_on_real_images(name, bn, paper_specs):
    with torch.device("meta"):
        reference = getattr(torchvision.models, TORCHVISION[name] + ("_bn" if bn else ""))()
    reference = reference.to_empty(device="cpu")
    initialise(reference, "kaiming", seed=0)  # torchvision's own scheme, seeded
    if bn:  # make batch norm do something: non-trivial running statistics
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    reference.eval()
    spec = with_bn(name) if bn else paper_specs[name]
    model = vggspec.build(spec, weights=reference.state_dict()).eval()
    x = images.batch(224, count=3)
    with torch.inference_mode():
        expected, got = reference(x), model(x)
    assert expected.std(dim=1).min() > 1e-3  # the scores really depend on the image
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.topk(5).indices, expected.topk(5).indices)


def test_weights_from_a_file_and_errors(tmp_path):
    narrow_a = vggspec.load(SPECS / "small" / "A-narrow-32.vgg")
    a = vggspec.build(narrow_a, init="caffe", seed=4)
    path = tmp_path / "a.pth"
    torch.save(a.state_dict(), path)
    assert all(
        torch.equal(x, y)
        for x, y in zip(vggspec.build(narrow_a, weights=path).state_dict().values(), a.state_dict().values())
    )

    narrow_d = vggspec.parse((SPECS / "small" / "D-narrow-32-bn.vgg").read_text().replace(" [bn]", ""))
    with pytest.raises(vggspec.WeightsError, match="belong to another network"):
        vggspec.build(narrow_d, weights=path)
    a_bn = vggspec.parse((SPECS / "small" / "A-narrow-32.vgg").read_text().replace("conv3-8", "conv3-8 [bn]"))
    with pytest.raises(vggspec.WeightsError) as info:
        vggspec.build(a_bn, weights=path)
    assert "batch norm" in info.value.hint
    five_classes = vggspec.parse(narrow_a.text.replace("FC-10", "FC-5"))
    with pytest.raises(vggspec.WeightsError, match="fc8"):
        vggspec.build(five_classes, weights=path, strict_weights=True)
    assert [name for name, _ in vggspec.build(five_classes, weights=path).weights_report.new] == ["fc8"]
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(vggspec.WeightsError, match="not a loadable state dict"):
        vggspec.build(narrow_a, weights=garbage)
    with pytest.raises(vggspec.WeightsError, match="no such weights file"):
        vggspec.build(narrow_a, weights=tmp_path / "missing.pth")


def test_torchvision_format_is_read_without_torchvision(paper_specs):
    """The key layout is matched by order; the weights' own module names do not matter."""
    source = materialised(paper_specs["A"])
    initialise(source, "caffe", seed=3)
    renamed = {}
    for index, (key, value) in enumerate(source.state_dict().items()):
        module, leaf = key.rsplit(".", 1)
        renamed[f"net.{len(module) * 7 + index // 2}.{leaf}"] = value
    model = materialised(paper_specs["A"])
    load_weights(model, renamed)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))


# -- inputs ----------------------------------------------------------------------------


def test_a_wrong_input_size_is_an_error_that_names_the_expected_size():
    model = vggspec.build(vggspec.parse(SMALL), seed=0)
    with pytest.raises(vggspec.InputSizeError, match=r"expects inputs of shape \(N, 3, 32, 32\)") as info:
        model(torch.zeros(1, 3, 64, 64))
    assert "to_dense" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, vggspec.SpecError)


def test_lrn_divides_alpha_by_n():
    model = vggspec.build(vggspec.parse("input: 8x8 7 channels\nLRN\nFC-2"), seed=0).eval()
    x = torch.randn(1, 7, 8, 8)
    n, alpha, beta, k = 5, 1e-4, 0.75, 2.0
    squares = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, n // 2, (n - 1) // 2))
    window = sum(squares[:, i : i + 7] for i in range(n))
    expected = x / (k + alpha / n * window).pow(beta)
    torch.testing.assert_close(model.features.norm1(x), expected)


# -- initialisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "init, std",
    [
        ("paper", 0.01),
        ("caffe", 0.01),
        ("normal:0.1", 0.1),
        ("glorot", (6 / (512 * 9 + 512 * 9)) ** 0.5 / 3**0.5),
        ("kaiming", (2 / (512 * 9)) ** 0.5),
    ],
)
def test_initialisations(init, std):
    spec = vggspec.parse("input: 8x8 512 channels\nconv3-512\nFC-10")
    model = vggspec.build(spec, init=init, seed=0)
    weight = model.features.conv1_1.conv.weight
    assert weight.mean().abs() < 0.05 * std
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    assert all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if hasattr(m, "bias") and m.bias is not None)


def test_glorot_and_kaiming_draw_what_torch_and_torchvision_draw():
    """INITS draw from config.init_std's std (which the analysis shares): the same numbers as
    torch's xavier_uniform_ and torchvision's VGG init (kaiming_normal_ fan-out for convs)."""
    from torch import nn

    from vggspec.nn.compiler import INITS

    def torchvision_vgg(m, g):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
        else:
            nn.init.normal_(m.weight, 0, 0.01, generator=g)

    references = {"glorot": lambda m, g: nn.init.xavier_uniform_(m.weight, generator=g), "kaiming": torchvision_vgg}
    for module in (nn.Conv2d(16, 32, 3), nn.Conv2d(3, 8, 1), nn.Linear(300, 40)):
        for init, reference in references.items():
            INITS[init](module, torch.Generator().manual_seed(3))
            ours = module.weight.detach().clone()
            reference(module, torch.Generator().manual_seed(3))
            assert torch.equal(ours, module.weight), (init, module)


A_LRN_NARROW = "input: 32x32 RGB\nconv3-8\nLRN\nmaxpool\nconv3-16\nmaxpool\nconv3-32 ×2\nmaxpool\nFC-64 ×2\nFC-10\n"


@pytest.mark.parametrize(
    "name", ["A", "small/A-narrow-32", "small/D-narrow-32-bn", "small/vgg11-gray-10-narrow", "lrn"]
)
def test_the_analysis_predicts_the_scale_of_a_fresh_networks_class_scores(name):
    """initial_scale (pure arithmetic, one rule per layer kind) against real forward passes in
    training mode, over every initialisation: from 1e-10 to 1e+8, within a factor of 3."""
    from vggspec.spec.analysis import initial_scale

    spec = vggspec.parse(A_LRN_NARROW) if name == "lrn" else vggspec.load(name)
    n, channels = spec.input.size, spec.input.channels
    generator = torch.Generator().manual_seed(0)
    # Smooth random images (like photos: neighbouring pixels alike) with the RMS the estimate assumes.
    noise = torch.randn(2 if name == "A" else 16, channels, n // 8, n // 8, generator=generator)
    images = torch.nn.functional.interpolate(noise, size=(n, n), mode="bilinear")
    images *= 58.0 / images.pow(2).mean().sqrt()
    for init in ("normal:0.1", "paper", "glorot", "kaiming"):
        torch.manual_seed(0)  # dropout's masks
        model = vggspec.build(spec, init=init, seed=0).train()
        with torch.no_grad():
            measured = model(images).pow(2).mean().sqrt().item()
        predicted = initial_scale(spec, init, pixel_rms=58.0)
        assert 1 / 3 < predicted / measured < 3, (init, predicted, measured)


def test_seeded_initialisation_is_reproducible_and_leaves_the_global_rng_alone():
    spec = vggspec.parse(SMALL)
    state = torch.random.get_rng_state()
    a, b = vggspec.build(spec, seed=7), vggspec.build(spec, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = vggspec.build(spec, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.features.conv1_1.conv.weight, c.features.conv1_1.conv.weight)
    bn = a.features.conv2_1.bn
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.running_var, torch.ones(16))
    assert int(bn.num_batches_tracked) == 0


def test_every_init_the_command_line_offers_is_implemented():
    from vggspec.cli import _parser as build_parser
    from vggspec.nn.compiler import INITS
    from vggspec.run.config import TrainConfig
    from vggspec.spec.initialisation import DRAWN, INIT_NAMES

    assert list(INITS) == list(DRAWN)
    for init in (*INIT_NAMES, "normal:0.05", "caffe"):
        assert TrainConfig(data="d", init=init).init == ("paper" if init == "caffe" else init)
    with pytest.raises(ValueError, match="unknown initialisation 'xavier'"):
        TrainConfig(data="d", init="xavier")
    for command in (["compile", "x.vgg"], ["analyze", "x.vgg"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--init", "xavier"])
        assert build_parser().parse_args([*command, "--init", "normal:1e-1"]).init == "normal:0.1"


def test_unknown_init_is_an_error():
    with pytest.raises(ValueError, match="choose auto, paper, glorot, kaiming or normal:STD"):
        vggspec.build(vggspec.parse(SMALL), init="xavier")
    with pytest.raises(ValueError, match="positive standard deviation"):
        vggspec.build(vggspec.parse(SMALL), init="normal:-1")


@pytest.mark.parametrize(
    "name, chosen",
    [("A", "glorot"), ("A-LRN", "glorot"), ("D", "glorot"), ("small/D-narrow-32-bn", "glorot"),
     ("small/A-narrow-32", "glorot"), ("small/vgg11-gray-10", "glorot"), ("shallow", "paper")],
)  # fmt: skip
def test_auto_is_the_papers_init_where_its_start_trains_else_glorot(name, chosen):
    """The default: the paper's N(0, 0.01²) where the class scores start within the bounds that train (a
    shallow net), else Glorot's: D: 4e-6, D-narrow-32-bn: 4e-4, A-narrow-32: 2e-10, vgg11-gray-10: 9e-4 (which
    stalled on a small folder), A: 1.5e-3 (the paper trained it, over 74 epochs of ImageNet; it starts
    slowly). build() draws exactly what the chosen init draws."""
    from vggspec.spec.analysis import auto_init

    shallow = "input: 32x32 RGB\nconv3-64\nmaxpool\nFC-256\nFC-10\n"
    spec = vggspec.parse(shallow) if name == "shallow" else vggspec.load(name)
    init, why = auto_init(spec)
    assert init == chosen and ("which trains" in why) == (chosen == "paper")
    if spec.input.size <= 32:
        default, explicit = vggspec.build(spec, seed=5), vggspec.build(spec, init=chosen, seed=5)
        assert all(torch.equal(x, y) for x, y in zip(default.state_dict().values(), explicit.state_dict().values()))


def test_e_on_meta_allocates_nothing(paper_specs):
    model = vggspec.build(paper_specs["E"], device="meta")
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert sum(p.numel() for p in model.parameters()) == 143_667_240


# -- the paper's transfer from A (Section 3.1) --------------------------------------------


def test_transfer_from_a_copies_exactly_the_papers_layers(paper_specs):
    a = materialised(paper_specs["A"])
    initialise(a, "caffe", seed=1)
    d = materialised(paper_specs["D"])
    initialise(d, "caffe", seed=2)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    report = vggspec.transfer_from(a, d)
    copied = {"conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8"}
    assert {target for target, _, _ in report.copied} == copied
    random = {"conv1_2", "conv2_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"}
    assert {name for name, _ in report.random} == random
    a_state = a.state_dict()
    for key, value in d.state_dict().items():
        layer = key.split(".")[1]
        if layer in copied:
            assert torch.equal(value, a_state[key]), key
        else:
            assert torch.equal(value, before[key]), key
    text = str(report)
    assert "7 layers copied, 9 left random" in text and "conv3_3" in text and "not one of A's first 4" in text


def test_transfer_refuses_mismatched_shapes(paper_specs):
    ten_classes = vggspec.parse((SPECS / "A.vgg").read_text().replace("FC-1000", "FC-10"))
    with pytest.raises(vggspec.WeightsError, match="fc8"):
        vggspec.transfer_from(materialised(ten_classes), materialised(paper_specs["D"]))
    narrow = vggspec.parse(
        "conv3-64\nmaxpool\nconv3-128\nmaxpool\nconv3-256\n" + "maxpool\n" * 3 + "FC-4096 ×2\nFC-1000"
    )
    with pytest.raises(vggspec.WeightsError, match="no conv layer conv3_2"):
        vggspec.transfer_from(materialised(paper_specs["A"]), materialised(narrow))
