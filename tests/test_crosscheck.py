"""The analyzer against independent references: torchvision's VGGs, fvcore, PyTorch's FlopCounterMode.

Models are built on the ``meta`` device (no weights allocated); fvcore needs real tensors for
its traced forward, so its models are materialised uninitialised with ``to_empty`` — counting
does not depend on the values.
"""

import pytest

torch = pytest.importorskip("torch", reason="cross-checks need the test extras: pip install -e '.[test]'")
torchvision = pytest.importorskip("torchvision")
fvcore_nn = pytest.importorskip("fvcore.nn")

import vggspec  # noqa: E402
from vggspec.plan.budget import TrainSettings, train_budget  # noqa: E402

from .conftest import SPECS  # noqa: E402

TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}


def _bn_spec(name: str) -> vggspec.Spec:
    """A paper config with batch norm after every conv: torchvision's vgg*_bn."""
    text = (SPECS / f"{name}.vgg").read_text()
    text = "\n".join(line + " [bn]" if line.startswith("conv") else line for line in text.splitlines())
    return vggspec.parse(text)


def _meta_model(name: str):
    with torch.device("meta"):
        return getattr(torchvision.models, name)().eval()


@pytest.mark.parametrize("config", TORCHVISION)
@pytest.mark.parametrize("bn", [False, True], ids=["plain", "bn"])
def test_parameters_equal_torchvision(config, bn, paper_specs):
    spec = _bn_spec(config) if bn else paper_specs[config]
    model = _meta_model(TORCHVISION[config] + ("_bn" if bn else ""))
    assert vggspec.analyze(spec).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", ["A", "D"])
def test_macs_equal_fvcore(config, paper_specs):
    model = _meta_model(TORCHVISION[config]).to_empty(device="cpu")
    counter = fvcore_nn.FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    by_op = counter.by_operator()
    # torchvision's AdaptiveAvgPool2d((7, 7)) is not part of the paper's network (a no-op at 224).
    assert set(by_op) <= {"conv", "linear", "adaptive_avg_pool2d"}
    assert vggspec.analyze(paper_specs[config]).macs == by_op["conv"] + by_op["linear"]


@pytest.mark.parametrize("config", TORCHVISION)
def test_flops_equal_pytorch_flop_counter(config, paper_specs):
    from torch.utils.flop_counter import FlopCounterMode

    model = _meta_model(TORCHVISION[config])
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 224, 224, device="meta"))
    assert vggspec.analyze(paper_specs[config]).flops == counter.get_total_flops()


@pytest.mark.parametrize("config", TORCHVISION)
def test_every_feature_shape_equals_torchvision(config, paper_specs):
    model = _meta_model(TORCHVISION[config])
    shapes = []
    for module in model.features:
        if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            module.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    for module in model.classifier:
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, i, o: shapes.append((o.shape[1], 1, 1)))
    model(torch.zeros(1, 3, 224, 224, device="meta"))
    analysed = [la.output_shape for la in vggspec.analyze(paper_specs[config]).layers if la.kind != "softmax"]
    assert analysed == shapes


@pytest.mark.parametrize("size", [32, 64, 100, 384])
def test_shapes_at_other_sizes_equal_pytorch(size, paper_specs):
    """Floor division in pooling at sizes that are not multiples of 32."""
    features = _meta_model("vgg16").features
    out = features(torch.zeros(1, 3, size, size, device="meta"))
    assert vggspec.analyze(paper_specs["D"], input_size=size).layer("pool5").output_shape == tuple(out.shape[1:])


def test_pool_with_other_window_equals_pytorch():
    spec = vggspec.parse("input: 57\nconv5-4\nmaxpool [size=3, stride=2]\nconv1-6\nmaxpool [size=2, stride=3]\nFC-3")
    x = torch.zeros(1, 3, 57, 57, device="meta")
    with torch.device("meta"):
        x = torch.nn.Conv2d(3, 4, 5, padding=2)(x)
        x = torch.nn.MaxPool2d(3, 2)(x)
        x = torch.nn.Conv2d(4, 6, 1)(x)
        x = torch.nn.MaxPool2d(2, 3)(x)
    assert vggspec.analyze(spec).layers[3].output_shape == tuple(x.shape[1:])


SMALL_SPECS = [f"small/{path.stem}" for path in sorted((SPECS / "small").glob("*.vgg"))]
TRAINING_SPECS = ["A", "A-LRN", "B", "C", "D", "E", *SMALL_SPECS]


@pytest.mark.parametrize("name", TRAINING_SPECS)
def test_a_training_steps_flops_equal_flopcountermodes(name):
    """Forward and backward of one training step, counted by PyTorch on the built module (meta device,
    batch 2) against the analysis: 2 × MACs forward, 2 × backward_macs backward (the weights' and the
    inputs' gradients; no input gradient for the first layer with weights), exactly; and the training
    budget's FLOPs, in total and layer by layer."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = vggspec.load(name)
    model = vggspec.build(spec, device="meta").train()
    x = torch.empty(2, *model.input_shape, device="meta")
    with FlopCounterMode(display=False) as forward:
        scores = model(x)
    with FlopCounterMode(display=False) as backward:
        scores.sum().backward()
    analysis = vggspec.analyze(spec)
    assert forward.get_total_flops() == 2 * 2 * analysis.macs
    assert backward.get_total_flops() == 2 * 2 * analysis.backward_macs
    weighted = [layer for layer in analysis.layers if layer.params]
    assert weighted[0].backward_macs == weighted[0].macs and all(la.backward_macs == 2 * la.macs for la in weighted[1:])
    # The training budget's FLOPs, module by module: counted in one pass, the backward's are its own ops'.
    budget = train_budget(spec, TrainSettings(batch=2))
    assert (budget.forward_flops, budget.backward_flops) == (forward.get_total_flops(), backward.get_total_flops())
    with FlopCounterMode(display=False) as both:
        model(x).sum().backward()
    counts = both.get_flop_counts()
    backward_ops = {torch.ops.aten.convolution_backward, torch.ops.aten.mm}
    for layer in budget.layers:
        ops = counts.get(f"VGG.{'classifier' if layer.kind == 'fc' else 'features'}.{layer.name}", {})
        assert sum(n for op, n in ops.items() if op not in backward_ops) == layer.forward_flops, layer.name
        assert sum(n for op, n in ops.items() if op in backward_ops) == layer.backward_flops, layer.name
