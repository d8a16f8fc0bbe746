"""Layer graph → ``torch.nn.Module``: the network a spec describes, initialised the paper's way.

Each layer kind makes its own module (:meth:`LayerSpec.to_torch`); this module assembles them
under their Caffe names (``model.features.conv1_1.conv``, ``model.classifier.fc6.fc``),
initialises the weights, and loads torchvision-format state dicts. Models are built on the
``meta`` device first and materialised once, so no time goes into a default initialisation that
is overwritten anyway.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data.preprocessing import Preprocessing
from ..errors import InputSizeError, SpecError, WeightsError, out_of_memory
from ..spec.analysis import PIXEL_RMS, analyze, resolve_init
from ..spec.graph import to_graph
from ..spec.initialisation import DRAWN, init_std, is_uniform, parse_init
from ..spec.spec import Spec
from . import devices
from .weights_file import read_weights

InitFn = Callable[[nn.Module, "torch.Generator | None"], None]


def initialiser(init: str) -> InitFn:
    """Draws a layer's weights with :func:`vggspec.spec.initialisation.init_std`'s std: normal, or for glorot
    uniform (the same numbers as torch's ``xavier_uniform_`` and ``kaiming_normal_``)."""
    uniform = is_uniform(init)

    def initialise(module: nn.Module, generator: torch.Generator | None) -> None:
        weight = module.weight
        receptive = math.prod(weight.shape[2:])  # k·k for a convolution, 1 for a linear layer
        fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
        std = init_std(init, fan_in, fan_out, conv=isinstance(module, nn.Conv2d))
        if uniform:
            bound = math.sqrt(3.0) * std
            nn.init.uniform_(weight, -bound, bound, generator=generator)
        else:
            nn.init.normal_(weight, 0.0, std, generator=generator)

    return initialise


INITS: dict[str, InitFn] = {init: initialiser(init) for init in DRAWN}
"""The named weight initialisations (paper, glorot, kaiming: see :mod:`vggspec.initialisation`; also
``normal:STD`` through :func:`initialiser`); biases are always zero, batch norm starts as the identity."""


class VGG(nn.Module):
    """A network compiled from a spec: ``features`` (conv/pool/LRN), then ``classifier`` (FC).

    ``forward`` returns class scores before the soft-max, like torchvision's models; the spec's
    ``soft-max`` is applied by the loss in training and by the evaluator. Inputs must have the
    spec's declared shape (no adaptive pooling hides a wrong size).

    A dense model (:func:`vggspec.to_dense`, ``spec.is_dense``) takes any image at least as large
    as the declared input and returns a class score map ``(N, classes, h, w)``.
    """

    def __init__(self, spec: Spec, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.spec = spec
        self.dense = spec.is_dense
        self.input_shape = spec.input.shape
        self.min_input_size = analyze(spec).min_input_size
        self.features = features
        self.classifier = classifier
        self.weights_report: WeightsReport | None = None  # what build(weights=...) copied, adapted, drew anew
        self.preprocessing: Preprocessing | None = None  # what its weights expect of pixels; None: not known

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.features(x)
        if not self.dense:
            x = torch.flatten(x, 1)
        return self.classifier(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return  # a traced check would be a constant of the example input, not a check
        if self.dense:
            if x.dim() != 4 or x.shape[1] != self.input_shape[0] or min(x.shape[2:]) < self.min_input_size:
                c, m = self.input_shape[0], self.min_input_size
                raise InputSizeError(
                    f"dense {self.spec.display_name} takes inputs of shape (N, {c}, H, W) with H, W ≥ {m}, "
                    f"got {tuple(x.shape)}"
                )
        elif x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            c, h, w = self.input_shape
            raise InputSizeError(
                f"{self.spec.display_name} expects inputs of shape (N, {c}, {h}, {w}), got {tuple(x.shape)}: "
                f"the spec declares 'input: {self.spec.input.describe()}'. To classify larger images, "
                "evaluate densely: vggspec.to_dense(model)"
            )

    def extra_repr(self) -> str:
        return f"spec={self.spec.display_name!r}, input_shape={self.input_shape}, dense={self.dense}"


def build(
    spec: Spec,
    *,
    init: str = "auto",
    weights: Mapping[str, torch.Tensor] | str | Path | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    strict_weights: bool = False,
    pixel_rms: float = PIXEL_RMS,
    num_classes: int | None = None,
) -> VGG:
    """Compile ``spec`` into a :class:`VGG` module.

    ``init``: ``auto`` (the paper's N(0, 0.01²) where the analysis predicts its start trains, else
    Glorot's), ``paper``, ``glorot``, ``kaiming`` or ``normal:STD`` (:mod:`vggspec.initialisation`);
    ``weights`` (a state dict, vggspec's or torchvision's, a path to one, or ``torchvision:vgg16[_bn][:ENUM]``)
    replaces the initialisation where its layers fit and ``init`` draws the others, the first conv adapted
    to other input channels (``model.weights_report`` says which; ``strict_weights``: every layer must fit,
    for exactly the network the weights are); ``seed`` makes it reproducible without touching the global RNG;
    ``device="meta"`` builds the structure without allocating weights. ``pixel_rms``: the RMS of the
    training pixels about their mean (0-255), what ``auto``'s choice depends on with the input scale of the
    weights' preprocessing (about 1 under torchvision's normalisation, for the layers they leave new).
    ``num_classes``: the classes, whatever the spec's last FC layer says: its outputs become ``num_classes``
    (:meth:`Spec.with_classes`) before anything is built; ``weights`` of another number of classes then leave the
    classifier to ``init`` (the report says so), or with ``strict_weights`` are refused.
    """
    init = parse_init(init)  # a ValueError for a spelling that is none
    if num_classes is not None:
        spec = spec.with_classes(num_classes)
    device = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):
        model = assemble(spec)
    if device.type == "meta":
        return model
    devices.check_memory(spec, device)  # the weights: building runs nothing
    try:
        model = model.to_empty(device=device)
    except RuntimeError as err:  # torch.OutOfMemoryError is one too
        if not out_of_memory(err):
            raise
        raise SpecError(f"{devices.weights_need(spec, device)}: {device} could not allocate them") from None
    if weights is not None:
        model.weights_report = load_weights(
            model, weights, strict=strict_weights, init=init, seed=seed, pixel_rms=pixel_rms
        )
    else:
        initialise(model, resolve_init(spec, init, pixel_rms), seed=seed)
    return model


def assemble(spec: Spec) -> VGG:
    """The module tree of ``spec``, parameters uninitialised (call it under ``torch.device('meta')``)."""
    graph = to_graph(spec)
    features: list[tuple[str, nn.Module]] = []
    classifier: list[tuple[str, nn.Module]] = []
    for layer in analyze(spec).layers:
        node = graph.nodes[layer.name]
        module = node["layer"].to_torch(layer.input_shape, node)
        if module is not None:
            (features if node["layer"].SPATIAL else classifier).append((layer.name, module))
    return VGG(spec, nn.Sequential(OrderedDict(features)), nn.Sequential(OrderedDict(classifier)))


def initialise(model: nn.Module, init: str = "auto", *, seed: int | None = None) -> None:
    """Weights by ``init``, zero biases, batch norm as the identity with fresh statistics. ``auto``
    needs a :class:`VGG` (its spec decides); any module takes the others."""
    init = parse_init(init)
    if init == "auto":
        if not isinstance(model, VGG):
            raise ValueError("--init auto is decided from a spec: give a VGG, or name the initialisation")
        init = resolve_init(model.spec, init)
    weight_init = initialiser(init)
    generator = None
    if seed is not None:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight_init(module, generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()


# -- weights ---------------------------------------------------------------------------

_WEIGHT_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


@dataclass
class WeightsReport:
    """What loading weights did, layer by layer: copied, adapted (a first conv for other input channels)
    or new (drawn by ``init``, the shape differs), so a fine-tuning run says what it starts from."""

    source: str
    target: str
    init: str
    copied: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (layer, their module, shape)
    adapted: list[tuple[str, str, str]] = field(default_factory=list)  # (layer, their module, how)
    new: list[tuple[str, str]] = field(default_factory=list)  # (layer, why)
    notes: list[str] = field(default_factory=list)  # what was assumed

    @property
    def complete(self) -> bool:
        """Every layer copied as it was: what ``strict_weights`` insists on."""
        return not self.adapted and not self.new

    def __str__(self) -> str:
        head = f"Loaded {self.source} into {self.target}: {len(self.copied)} layers copied"
        if not self.complete:
            head += f", {len(self.adapted)} adapted, {len(self.new)} new (drawn by --init {self.init})"
        lines = [head]
        width = max((len(name) for name, *_ in self.copied + self.adapted + self.new), default=0)
        for name, theirs, shape in self.copied:
            lines.append(f"  copied   {name:<{width}}  <- {theirs}  {'×'.join(map(str, shape))}")
        for name, theirs, how in self.adapted:
            lines.append(f"  adapted  {name:<{width}}  <- {theirs}  {how}")
        for name, why in self.new:
            lines.append(f"  new      {name:<{width}}  {why}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def load_weights(
    model: VGG,
    weights: Mapping[str, torch.Tensor] | str | Path,
    *,
    strict: bool = True,
    init: str = "auto",
    seed: int | None = None,
    pixel_rms: float = PIXEL_RMS,
) -> WeightsReport:
    """Load a state dict: vggspec's own keys, torchvision's ``features.0.weight`` layout, a file of either,
    or torchvision's pretrained weights by name (``torchvision:vgg16``, :mod:`vggspec.pretrained`).

    torchvision's keys are matched to this model's layers in order (conv, batch norm, linear). ``strict``:
    every shape must fit, else a :class:`WeightsError` naming the layer. Otherwise, for fine-tuning, the
    layers must still line up but a layer whose shape differs (the classifier of another number of
    classes, ...) is drawn by ``init`` and a first conv for other input channels is adapted from the
    weights' (:func:`adapt_first_conv`). ``auto`` is decided for the input the network gets under the
    weights' preprocessing (:meth:`~vggspec.data.preprocessing.Preprocessing.input_rms` of ``pixel_rms``).

    A state dict in torchvision's layout that records no preprocessing (torchvision's own ``.pth``
    files) is taken to expect torchvision's normalisation, as every torchvision VGG was trained on;
    the report says so.
    """
    from .pretrained import PREFIX, is_pretrained_name, load_pretrained, pretrained_preprocessing

    source = str(weights) if isinstance(weights, (str, Path)) else "the given state dict"
    preprocessing = None
    if is_pretrained_name(weights):
        preprocessing = pretrained_preprocessing(str(weights))
        weights = load_pretrained(str(weights))
    elif isinstance(weights, (str, Path)):
        weights, record = read_weights(weights)  # a vggspec checkpoint: every entry checked, its checksums verified
        preprocessing = _recorded_preprocessing(record)
    own = model.state_dict()
    mapping = {k: k for k in own} if set(weights) == set(own) else _map_by_order(model, weights)
    assumed = preprocessing is None and _torchvision_layout(weights)
    if assumed:
        preprocessing = pretrained_preprocessing(f"{PREFIX}vgg11")  # metadata only: nothing is read or fetched
    if preprocessing is not None:  # the weights' own: fine-tuning keeps what they were trained on
        model.preprocessing = preprocessing.fitted(model.spec.input.channels, _outputs(model))
    input_rms = model.preprocessing.input_rms(pixel_rms) if model.preprocessing is not None else pixel_rms
    report = WeightsReport(source, model.spec.display_name, resolve_init(model.spec, init, input_rms))
    if assumed:
        report.notes.append("torchvision's layout without a preprocessing record: torchvision's normalisation assumed")
    if strict:
        _check_shapes(own, weights, mapping, classifier=_classifier_name(model))
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    plan: dict[str, str] = {}  # module name → copy, adapt or new
    for name, module in model.named_modules():
        if not isinstance(module, _WEIGHT_MODULES):
            continue
        keys = [f"{name}.{leaf}" for leaf in module.state_dict()]
        theirs = mapping[keys[0]].rpartition(".")[0]
        layer = _layer_name(name)
        ours_w, their_w = own[f"{name}.weight"], weights[mapping[f"{name}.weight"]]
        if ours_w.dim() != their_w.dim():
            raise WeightsError(
                f"layer {layer} has a {ours_w.dim()}-d weight, the weights' {theirs} a {their_w.dim()}-d one: "
                "the layers do not line up (a dense spec takes a dense network's weights)"
            )
        if not strict and not all(weights[mapping[k]].isfinite().all() for k in keys if k.endswith(("weight", "bias"))):
            plan[name] = "new"  # torchvision's vgg16:IMAGENET1K_FEATURES: a classifier of NaNs, never trained
            report.new.append((layer, f"the weights' {theirs} holds NaN or infinite values"))
        elif all(own[k].shape == weights[mapping[k]].shape for k in keys):
            plan[name] = "copy"
            report.copied.append((layer, theirs, tuple(ours_w.shape)))
        elif name == convs[0] and _adaptable(ours_w, their_w) and _fits(own, weights, mapping, f"{name}.bias"):
            plan[name] = "adapt"
            report.adapted.append((layer, theirs, _adapt_how(their_w.shape[1], ours_w.shape[1])))
        else:
            plan[name] = "new"
            shape, their_shape = ("×".join(map(str, t.shape)) for t in (ours_w, their_w))
            report.new.append((layer, f"shape {shape}; the weights' {theirs} is {their_shape}"))
    if report.complete:
        model.load_state_dict({ours: weights[theirs] for ours, theirs in mapping.items()})
        return report
    initialise(model, report.init, seed=seed)
    with torch.no_grad():
        for ours, theirs in mapping.items():
            how = plan[ours.rpartition(".")[0]]
            if how == "copy" or (how == "adapt" and not ours.endswith(".weight")):
                own[ours].copy_(weights[theirs])
            elif how == "adapt":
                own[ours].copy_(adapt_first_conv(weights[theirs], own[ours].shape[1]))
    return report


def adapt_first_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB kernels ``(out, 3, k, k)`` for ``channels`` inputs: summed for 1 (a gray image then gives what the RGB
    network gives on it repeated 3 times), else the input channels repeated cyclically and scaled by 3/N, which
    keeps the outputs' scale (exactly, for an image of equal channels, when N is a multiple of 3)."""
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (weight.shape[1] / channels)


def _fits(
    own: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], mapping: dict[str, str], key: str
) -> bool:
    return key not in mapping or own[key].shape == weights[mapping[key]].shape


def _adaptable(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """The same conv but for its input channels."""
    return ours.dim() == 4 and ours.shape[0] == theirs.shape[0] and ours.shape[2:] == theirs.shape[2:]


def _adapt_how(theirs: int, ours: int) -> str:
    if ours == 1:
        return f"{theirs}-channel kernels summed over the input channels for 1 channel"
    return f"{theirs}-channel kernels repeated for {ours} channels, scaled by {theirs}/{ours}"


def _layer_name(module: str) -> str:
    """``features.conv1_1.conv`` → ``conv1_1``; its batch norm ``conv1_1 bn``."""
    parts = module.split(".")
    block, leaf = (parts[1] if len(parts) > 1 else parts[0]), parts[-1]
    return block if leaf in ("conv", "fc") or len(parts) < 3 else f"{block} {leaf}"


def layer_of(parameter: str) -> str:
    """The layer a parameter belongs to, as :class:`WeightsReport` names it: ``features.conv1_1.bn.weight`` →
    ``conv1_1 bn``; so that the trainer finds the parameters of the layers a load left new."""
    return _layer_name(parameter.rsplit(".", 1)[0])


def _outputs(model: VGG) -> int:
    last = [m for m in model.classifier.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def _classifier_name(model: VGG) -> str:
    """The module name of the classifier, the last FC layer: ``classifier.fc8.fc``."""
    names = [name for name, m in model.classifier.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return f"classifier.{names[-1]}"


def _recorded_preprocessing(record: Mapping[str, object] | None) -> Preprocessing | None:
    """The preprocessing a file's dictionary records: a vggspec checkpoint's (checked when it was read), or
    a record of the same form in another tool's checkpoint; None when there is none."""
    if record is None:
        return None
    try:
        return Preprocessing.from_checkpoint(record)
    except ValueError:  # not vggspec's record: the weights still load
        return None


def _map_by_order(model: VGG, weights: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Our key → their key, pairing weight-carrying modules in order of appearance."""
    ours = [(name, module) for name, module in model.named_modules() if isinstance(module, _WEIGHT_MODULES)]
    theirs = _group_by_module(weights)
    kinds = {nn.Conv2d: "conv", nn.BatchNorm2d: "batch norm", nn.Linear: "linear"}
    if len(ours) != len(theirs):
        ours_text = ", ".join(f"{sum(isinstance(m, t) for _, m in ours)} {k}" for t, k in kinds.items())
        our_bn = any(isinstance(m, nn.BatchNorm2d) for _, m in ours)
        their_bn = any("running_mean" in keys for _, keys in theirs)
        raise WeightsError(
            f"the weights have {len(theirs)} layers with parameters, {model.spec.display_name} has "
            f"{len(ours)} ({ours_text}): they belong to another network",
            hint="one has batch norm and the other not: torchvision's vgg*_bn needs 'conv3-64 [bn]' layers"
            if our_bn != their_bn
            else None,
        )
    mapping: dict[str, str] = {}
    for (name, module), (prefix, keys) in zip(ours, theirs):
        expected = set(module.state_dict())
        if set(keys) != expected:
            raise WeightsError(
                f"layer {name} ({kinds[type(module)]}) expects {sorted(expected)}, the weights have "
                f"{prefix}.{{{', '.join(sorted(keys))}}}: the layers do not line up"
            )
        for key in keys:
            mapping[f"{name}.{key}"] = f"{prefix}.{key}" if prefix else key
    return mapping


def _torchvision_layout(weights: Mapping[str, torch.Tensor]) -> bool:
    """Keys as torchvision's VGG names them: ``features.0.weight`` … ``classifier.6.bias``."""
    return "features.0.weight" in weights and any(key.startswith("classifier.") for key in weights)


def _group_by_module(weights: Mapping[str, torch.Tensor]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for key in weights:
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, []).append(leaf)
    return list(groups.items())


def _check_shapes(
    own: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], mapping: dict[str, str], *, classifier: str
) -> None:
    """Every tensor the shape of the weights'; ``classifier`` (its module's name) of another number of classes is
    said so, with the way to build for theirs."""
    for ours, theirs in mapping.items():
        have, given = own[ours].shape, weights[theirs].shape
        if have != given:
            layer = ours.rsplit(".", 2)[0].split(".")[-1]
            classes = ours.rpartition(".")[0] == classifier and have[1:] == given[1:]
            raise WeightsError(
                f"layer {layer}: {ours} has shape {tuple(have)} but the weights' {theirs} has {tuple(given)}",
                hint=f"the weights classify into {given[0]} classes, the network into {have[0]}: build it for "
                f"theirs (num_classes={given[0]}, --num-classes {given[0]})"
                if classes
                else None,
            )
