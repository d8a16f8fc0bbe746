"""Static analysis of the layer graph: shapes, parameters, MACs, activations, receptive fields.

Pure arithmetic over the graph, no tensors and no torch: a full VGG analyses in well under a
millisecond. Conventions are those of :mod:`vggspec.layers` (MACs as fvcore counts them:
multiply-accumulates of conv and FC layers, biases excluded; FLOPs = 2 × MACs). Receptive
fields follow Araujo et al. (Distill 2019): for each layer with kernel k, stride s, padding p,

    r ← r + (k − 1)·j,   P ← P + p·j,   j ← j·s        (r = 1, j = 1, P = 0 at the input)

where r is the receptive field size, j the effective stride and P the effective padding.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import networkx as nx

from ..errors import ShapeError, SpecError
from ..units import human_count
from .graph import INPUT, layer_nodes, to_graph
from .initialisation import DRAWN, init_std, parse_init
from .layers import FC, Conv, LayerSpec, Shape, SoftMax
from .spec import Spec

BYTES_PER_ACTIVATION = 4  # float32


class LayerAnalysis(NamedTuple):
    """One layer's numbers (a named tuple: cheap to make, immutable)."""

    index: int
    name: str
    kind: str
    spelling: str
    line: int
    column: int
    input_shape: Shape
    output_shape: Shape
    params: int
    macs: int
    backward_macs: int  # of a training step's backward pass (see analyze_graph)
    activations: int
    receptive_field: int
    effective_stride: int
    effective_padding: int

    def to_dict(self) -> dict:
        out = self._asdict()
        out["input_shape"] = list(self.input_shape)
        out["output_shape"] = list(self.output_shape)
        return out


@dataclass(frozen=True)
class Analysis:
    """Per-layer and total numbers for one spec at one input size."""

    spec: Spec
    input_shape: Shape
    layers: tuple[LayerAnalysis, ...]
    min_input_size: int

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        """2 × MACs: one multiply and one add each."""
        return 2 * self.macs

    @property
    def backward_macs(self) -> int:
        """The multiply-adds of a training step's backward pass, per image: about twice the forward's."""
        return sum(layer.backward_macs for layer in self.layers)

    @property
    def activations(self) -> int:
        """Output elements of every layer, per image (the input image not included)."""
        return sum(layer.activations for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES_PER_ACTIVATION

    @property
    def weight_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.params)

    def layer(self, name: str) -> LayerAnalysis:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def __repr__(self) -> str:
        """``<Analysis of D at 224×224: 138,357,544 params, 15.5 GMACs>``: the dataclass's own ran to 8,000
        characters (the spec and every layer); ``print()`` shows the per-layer table (plan/notebook.py)."""
        _, height, width = self.input_shape
        dense = " (dense)" if self.spec.is_dense else ""
        return (
            f"<Analysis of {self.spec.display_name}{dense} at {height}×{width}: {self.params:,} params, "
            f"{human_count(self.macs)}MACs>"
        )

    def to_dict(self) -> dict:
        """The object ``vggspec analyze --format json`` prints for this spec."""
        return {
            "name": self.spec.display_name,
            "source": self.spec.source,
            "input": list(self.input_shape),
            "dense": self.spec.is_dense,
            "min_input_size": self.min_input_size,
            "layers": [layer.to_dict() for layer in self.layers],
            "total": {
                "params": self.params,
                "macs": self.macs,
                "flops": self.flops,
                "backward_macs": self.backward_macs,
                "activations": self.activations,
                "activation_bytes": self.activation_bytes,
                "weight_layers": self.weight_layers,
            },
        }


def analyze(spec: Spec, input_size: int | None = None, *, dense: bool = False) -> Analysis:
    """Analyse ``spec`` at its declared input size, or at ``input_size`` × ``input_size``.

    At another input size the network is taken as if declared for it: the first FC layer
    flattens whatever map reaches it. With ``dense``, the FC layers are applied as
    convolutions (:func:`dense_spec`, Section 3.2): weights stay those of the declared size
    and a larger input gives a class score map (D at 384: 1000×6×6).
    """
    key = (id(spec), input_size, dense)
    if (cached := _ANALYSES.get(key)) is not None and cached[0] is spec:
        _ANALYSES.move_to_end(key)
        return cached[1]
    asked = spec
    if dense:
        spec = dense_spec(spec)
    if input_size is not None and input_size != spec.input.size:
        spec = spec.with_input_size(input_size)
    try:
        analysis = analyze_graph(to_graph(spec))
    except SpecError as err:  # name the file and show the line, whoever asked (compile, draw, train)
        raise err.located(spec.source, spec.text) from None
    _ANALYSES[key] = (asked, analysis)  # the spec held: its id names no other spec while it is here
    if len(_ANALYSES) > _CACHED_ANALYSES:
        _ANALYSES.popitem(last=False)
    return analysis


# A Spec is frozen, so its analysis is computed once: a run asks for it from the trainer, the budget, the
# checkpoint's checks and the run log. Keyed by the spec object itself (not by equality: two equal specs
# from different files name different files in their errors and reports); the least recently used go.
_CACHED_ANALYSES = 128
_ANALYSES: OrderedDict[tuple[int, int | None, bool], tuple[Spec, Analysis]] = OrderedDict()


def dense_spec(spec: Spec) -> Spec:
    """The fully-convolutional network of Section 3.2: every FC layer applied as a convolution.

    The first FC layer's kernel is the map size that reaches it at the declared input (7 for
    the paper's networks), the others' 1; weights keep their number, only their shape
    changes. At the declared input the result is the same network; on larger images it
    yields a class score map. :func:`classifier_spec` is the inverse.
    """
    if spec.is_dense:
        return spec
    layers = tuple(
        layer.model_copy(update={"kernel": stats.input_shape[1]}) if isinstance(layer, FC) else layer
        for layer, stats in zip(spec.layers, analyze(spec).layers)
    )
    return spec.model_copy(update={"layers": layers})


def unused_pixels(spec: Spec, size: int) -> int:
    """How many rows (and columns) at the far edge of a ``size``-pixel side fall outside every pooling
    window: each max pooling of stride 2 floors an odd row away, and the feature map that reaches the
    classifier covers ``map × stride`` pixels (convolutions' zero padding lets the dropped rows touch
    the border outputs, nothing more). At Q = 37 a network of stride 8 leaves 5; Q = 32 or 40 none."""
    features = [stats for stats in analyze(spec, input_size=size).layers if spec.layers[stats.index].SPATIAL]
    return size - features[-1].output_shape[1] * features[-1].effective_stride if features else 0


def scales_using_every_pixel(spec: Spec, size: int) -> tuple[int | None, int | None]:
    """The nearest sides below and above ``size`` that :func:`unused_pixels` finds fully used."""
    stride = analyze(spec, dense=True).layers[-1].effective_stride
    smallest = min_input_size(spec)
    below = next((q for q in range(size - 1, max(smallest, size - stride) - 1, -1) if not unused_pixels(spec, q)), None)
    above = next((q for q in range(size + 1, size + stride + 1) if not unused_pixels(spec, q)), None)
    return below, above


def classifier_spec(spec: Spec) -> Spec:
    """The network a dense spec was made from: its FC layers as fully-connected layers again."""
    if not spec.is_dense:
        return spec
    layers = tuple(
        layer.model_copy(update={"kernel": None}) if isinstance(layer, FC) else layer for layer in spec.layers
    )
    return spec.model_copy(update={"layers": layers})


def analyze_graph(graph: nx.DiGraph) -> Analysis:
    spec: Spec = graph.graph["spec"]
    nodes = layer_nodes(graph)
    _check_structure(spec, graph, nodes)
    shape: Shape = graph.nodes[INPUT]["shape"]
    rf, jump, pad = 1, 1, 0
    gradient_in = False  # whether a layer's input needs a gradient: only after the first layer with weights
    results: list[LayerAnalysis] = []
    trail: list[tuple[str, int]] = [("input", shape[1])]
    for name in nodes:
        layer: LayerSpec = graph.nodes[name]["layer"]
        out = layer.output_shape(shape)
        if out[1] < 1 or out[2] < 1:
            raise _too_small(spec, name, layer, shape, trail)
        kernel, stride, padding = layer.window(shape)
        macs, params = layer.macs(shape, out), layer.params(shape)
        # Backward: the weights' gradient costs the forward's multiply-adds, the input's as many again;
        # nothing asks for the image's gradient, so the first layer with weights computes only its own.
        backward = macs * (2 if gradient_in else 1)
        gradient_in = gradient_in or params > 0
        rf += (kernel - 1) * jump
        pad += padding * jump
        jump *= stride
        results.append(
            LayerAnalysis(
                index=graph.nodes[name]["index"],
                name=name,
                kind=layer.kind,
                spelling=layer.word(),
                line=layer.line,
                column=layer.column,
                input_shape=shape,
                output_shape=out,
                params=params,
                macs=macs,
                backward_macs=backward,
                activations=out[0] * out[1] * out[2],
                receptive_field=rf,
                effective_stride=jump,
                effective_padding=pad,
            )
        )
        if out[1] != shape[1]:
            trail.append((name, out[1]))
        shape = out
    return Analysis(spec, graph.nodes[INPUT]["shape"], tuple(results), min_input_size(spec))


PIXEL_RMS = 58.0  # mean-subtracted ImageNet pixels on the 0-255 scale: std ≈ 0.226 · 255
STANDARDISED_RMS = 1.0  # the same, each channel divided by its std (--normalise std): what Glorot's scale assumes
# Class scores at initialisation (RMS) outside these bounds train badly, a guide drawn from a few
# cases: above, the first losses are about that large (A-narrow-32 from std 0.1, the paper's
# "10⁻² variance" read literally, at 24, diverges; kaiming's 6 for A is torchvision's scheme);
# below, the signal fades before the classifier and learning stalls or starts slowly: D-narrow-32-bn
# from the paper's std 0.01, at 2e-4, sat at a loss of ln 4 for 4 epochs on 4 classes (Glorot's, at
# 0.6, was at 3% error after 3); small/vgg11-gray-10 from it, at 1.1e-3 on a folder of gray shapes,
# was at chance in 9 of 10 epochs; A from it, at 1.5e-3, fell from 6.91 to 6.84 in 8 steps, where
# Glorot's on inputs divided by their std (0.035) fell to 6.47, and D's (5.7e-3) to 6.79
# (tools/bench_init.py). The paper trained A from std 0.01, over 74 epochs of ImageNet: a start a
# small folder cannot wait for. So the lower bound sits between 1.5e-3 and 5.7e-3.
EXPLODING_SCALE, FADING_SCALE = 10.0, 2e-3


def initial_rms(spec: Spec, init: str, pixel_rms: float = PIXEL_RMS) -> tuple[float, ...]:
    """The RMS of every layer's output in a freshly initialised network in training mode, for
    input pixels of RMS ``pixel_rms`` (the paper's input: the mean subtracted, no division by a
    std). Each layer kind's rule is :meth:`LayerSpec.initial_rms`; within about a factor of 2 of
    a real forward pass, over twenty orders of magnitude (tested).
    """
    init = resolve_init(spec, init, pixel_rms)
    graph = to_graph(spec)
    rms, out = pixel_rms, []

    def weight_std(fan_in: int, fan_out: int, conv: bool) -> float:
        return init_std(init, fan_in, fan_out, conv=conv)

    for name, layer in zip(layer_nodes(graph), analyze(spec).layers):
        rms = graph.nodes[name]["layer"].initial_rms(layer.input_shape, rms, weight_std, graph.nodes[name])
        out.append(rms)
    return tuple(out)


def initial_scale(spec: Spec, init: str, pixel_rms: float = PIXEL_RMS) -> float:
    """The RMS of a fresh network's class scores (:func:`initial_rms` of the last layer).

    Far above 1 (``EXPLODING_SCALE``) the first losses are that large and training diverges;
    far below (``FADING_SCALE``) the signal fades before the classifier and learning stalls
    (Section 3.1's "instability of gradient in deep nets").
    """
    return initial_rms(spec, init, pixel_rms)[-1]


def initial_scales(spec: Spec, pixel_rms: float = PIXEL_RMS) -> dict[str, float]:
    """:func:`initial_scale` under every initialisation that draws weights, by name."""
    return {init: initial_scale(spec, init, pixel_rms) for init in DRAWN}


def resolve_init(spec: Spec, init: str, pixel_rms: float = PIXEL_RMS) -> str:
    """``init`` in its canonical spelling, with ``auto`` decided for ``spec`` (:func:`auto_init`)."""
    init = parse_init(init)
    return auto_init(spec, pixel_rms)[0] if init == "auto" else init


# From Glorot's start on the paper's 0-255 inputs, A and D (512 channels wide) diverged within 8 steps at the
# paper's lr 1e-2; on inputs divided by their std both losses fell (tools/bench_init.py). The narrow specs (64
# wide) trained from it on the paper's inputs, and more slowly on standardised ones (A-narrow-32: a loss of
# 1.31 against chance's 1.39 after 16 epochs of 12 steps, where it had learned): the first layer's steps shrink
# with its inputs.
# The largest stable rate falls with the width (standard parametrisation); widths in between: not measured.
WIDE = 512
UNIT_VARIANCE_INITS = ("glorot", "kaiming")  # derived for inputs of unit variance


def widest(spec: Spec) -> int:
    """The most channels of any conv layer: the width the rules on Glorot's start go by."""
    return max((layer.channels for layer in spec.layers if isinstance(layer, Conv)), default=0)


def standardises(spec: Spec, init: str) -> bool:
    """``--normalise auto``: whether a network starting from ``init`` (resolved) takes its inputs divided by
    their std: Glorot's or Kaiming's start on a network ``WIDE`` channels wide or wider."""
    return parse_init(init) in UNIT_VARIANCE_INITS and widest(spec) >= WIDE


def auto_input_rms(spec: Spec, init: str, pixel_rms: float = PIXEL_RMS) -> float:
    """The RMS of the inputs ``--normalise auto`` feeds a network starting from ``init``: 1 where it divides them
    by their std (:func:`standardises`), else the paper's pixels (``pixel_rms``)."""
    return STANDARDISED_RMS if standardises(spec, resolve_init(spec, init, pixel_rms)) else pixel_rms


def auto_init(spec: Spec, pixel_rms: float = PIXEL_RMS) -> tuple[str, str]:
    """What ``--init auto`` means for ``spec``, and why: the paper's N(0, 0.01²) on the paper's inputs
    (``pixel_rms``) where its class scores start within the bounds that train, else Glorot's (the paper's
    footnote: Glorot's initialisation trains without pre-training), on a wide network with the inputs
    divided by their std (:func:`standardises`)."""
    paper = initial_scale(spec, "paper", pixel_rms)
    if not (trouble := scale_trouble(paper)):
        return "paper", f"the paper's N(0, 0.01²) starts its class scores at {paper:.0e} (RMS), which trains"
    standardised = standardises(spec, "glorot")
    glorot = initial_scale(spec, "glorot", auto_input_rms(spec, "glorot", pixel_rms))
    return "glorot", (
        f"the paper's N(0, 0.01²) would start its class scores at {paper:.0e} (RMS): {trouble}; "
        f"Glorot's starts them at {glorot:.1g}" + (" on inputs divided by their std" if standardised else "")
    )


def scale_trouble(scale: float) -> str | None:
    """What class scores starting at RMS ``scale`` do to training; None between the bounds."""
    if scale > EXPLODING_SCALE:
        return "the first losses are about that large, and training is likely to diverge"
    if scale < FADING_SCALE:
        return "the signal fades before the classifier, and learning is likely to stall or start slowly"
    return None


def min_input_size(spec: Spec) -> int:
    """The smallest input side for which no spatial size reaches zero."""
    need = 1
    for layer in reversed(spec.layers):
        need = layer.min_input(need)
    return need


def _check_structure(spec: Spec, graph: nx.DiGraph, nodes: list[str]) -> None:
    """A VGG is feature layers, then fully-connected layers, then at most a soft-max."""
    if not nodes:
        raise ShapeError(
            "the spec has no layers",
            line=max(1, (spec.text or "").count("\n")),
            hint="write the layers one per line: conv3-64, maxpool, ..., FC-1000, soft-max",
        )
    first_fc: LayerSpec | None = None
    for position, name in enumerate(nodes):
        layer: LayerSpec = graph.nodes[name]["layer"]
        if isinstance(layer, SoftMax) and position != len(nodes) - 1:
            raise ShapeError(
                "soft-max must be the last layer",
                line=layer.line,
                column=layer.column,
                width=len(layer.word()),
                hint="the network ends: ..., FC-1000, soft-max",
            )
        if isinstance(layer, FC) and first_fc is None:
            first_fc = layer
        if layer.SPATIAL and first_fc is not None:
            raise ShapeError(
                f"{layer.word()} comes after the fully-connected layer {first_fc.word()} "
                f"(line {first_fc.line}); feature layers must come before the classifier",
                line=layer.line,
                column=layer.column,
                width=len(layer.word()),
            )
    if first_fc is None:
        last: LayerSpec = graph.nodes[nodes[-1]]["layer"]
        raise ShapeError(
            "the network has no classifier: it must end with a fully-connected layer",
            line=last.line,
            column=last.column,
            width=len(last.word()),
            hint="end with the classifier, e.g. FC-4096, FC-4096, FC-1000, soft-max",
        )


def _too_small(spec: Spec, name: str, layer: LayerSpec, shape: Shape, trail: list[tuple[str, int]]) -> ShapeError:
    kernel = layer.window(shape)[0]
    sizes = " → ".join(f"{n} {s}" for n, s in trail)
    smallest = min_input_size(spec)
    return ShapeError(
        f"{name} ({layer.word()}) needs at least a {kernel}×{kernel} map but gets {shape[1]}×{shape[2]}: "
        f"the spatial size reaches zero (sizes: {sizes} → {name} 0)",
        line=layer.line,
        column=layer.column,
        width=len(layer.word()),
        hint=f"this network needs inputs of at least {smallest}×{smallest} "
        f"(the input is {spec.input.size}×{spec.input.size}): raise the input size or remove a maxpool",
    )
