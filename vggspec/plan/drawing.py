"""Layer graph → a graphviz drawing laid out as Table 1 reads: a column per stage, left to right.

Each stage (the conv layers up to and including a max pooling) is a box of its own; the FC layers
and the soft-max make the last, the classifier. A run of identical layers is drawn once with ×N,
as the paper writes ``conv3-512 ×3``; every node shows its output shape and parameters. So E is
a picture about 3.5 times as wide as it is high rather than a chain of 25 boxes.

Writing DOT source needs only the ``graphviz`` Python package; rendering SVG or PNG needs
Graphviz's ``dot`` program (Debian/Ubuntu: ``apt-get install graphviz``; macOS: ``brew
install graphviz``).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import NamedTuple

from ..errors import SpecError
from ..files import write_bytes, write_text
from ..spec.analysis import Analysis, LayerAnalysis
from ..spec.formatter import format_layer
from ..spec.graph import INPUT, to_graph
from ..units import human_count
from .report import shape_text

FORMATS = ("svg", "png", "pdf", "dot")

_FILL = {"conv": "#dbe9f6", "maxpool": "#f6e3c7", "lrn": "#e8e0f3", "fc": "#d9f0d3", "softmax": "#eeeeee"}
_FONT = "Helvetica"
_NAMES_COLOUR = "#555555"  # the Caffe names: there to look up, not to read first
CLASSIFIER = "classifier"


class Box(NamedTuple):
    """One node of the drawing: a layer, or a run of identical layers drawn once (``conv3-512 ×4``)."""

    layers: tuple[LayerAnalysis, ...]
    text: str  # the spec's spelling of each of them

    @property
    def name(self) -> str:
        """The node's id: its first layer's name."""
        return self.layers[0].name

    @property
    def names(self) -> str:
        return self.name if len(self.layers) == 1 else f"{self.name}–{self.layers[-1].name}"

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].output_shape


class Stage(NamedTuple):
    """A column of the drawing: ``stage 3``, or the ``classifier``."""

    title: str
    boxes: tuple[Box, ...]


def stages(analysis: Analysis) -> list[Stage]:
    """Table 1's stages: the layers up to and including each max pooling (any layer that ends a
    stage and keeps a map), then the FC layers and the soft-max; runs of consecutive layers spelt
    alike with one output shape are one :class:`Box`."""
    spec = analysis.spec
    columns: list[list[LayerAnalysis]] = [[]]
    for stats in analysis.layers:
        layer = spec.layers[stats.index]
        current = columns[-1]
        if not layer.SPATIAL and current and spec.layers[current[-1].index].SPATIAL:
            current = []  # the classifier starts, whether or not a pooling ended the maps
            columns.append(current)
        current.append(stats)
        if layer.ENDS_STAGE and layer.SPATIAL:
            columns.append([])
    out = []
    for number, column in enumerate((c for c in columns if c), start=1):
        boxes: list[Box] = []
        for stats in column:
            text = format_layer(spec.layers[stats.index])
            last = boxes[-1] if boxes else None
            if last is not None and last.text == text and last.output_shape == stats.output_shape:
                boxes[-1] = Box((*last.layers, stats), text)
            else:
                boxes.append(Box((stats,), text))
        classifier = not spec.layers[column[0].index].SPATIAL
        out.append(Stage(CLASSIFIER if classifier else f"stage {number}", tuple(boxes)))
    return out


def to_dot(analysis: Analysis):
    """A ``graphviz.Digraph`` of the analysed network: a cluster per stage, side by side; edges
    follow the layer graph, within a stage downwards, between stages from the pooling to the next.

    Jupyter shows it inline as SVG (graphviz's ``_repr_mimebundle_``; rendering needs ``dot``,
    importing and building do not): ``vggspec.to_dot(vggspec.analyze(spec))`` as a cell's last line.
    """
    import graphviz

    columns = stages(analysis)
    dot = graphviz.Digraph(
        analysis.spec.display_name,
        graph_attr={
            "rankdir": "TB",
            "newrank": "true",  # the tops of the clusters share a rank: the stages stand side by side
            "splines": "line",  # from a stage's foot to the next one's top: curves looped round shorter stages
            "nodesep": "0.25",
            "ranksep": "0.3",
            "fontname": _FONT,
            "fontsize": "14",
            "labelloc": "t",
            "label": f"<{_html(_title(analysis))}>",
        },
    )
    dot.attr("node", shape="box", style="rounded,filled", fontname=_FONT, fontsize="12")
    dot.attr("edge", arrowsize="0.7")
    dot.node(INPUT, _label("input", None, shape_text(analysis.input_shape), 0), fillcolor="white")
    column_of = {INPUT: -1}
    box_of = {INPUT: INPUT}
    for k, stage in enumerate(columns):
        with dot.subgraph(name=f"cluster_{k + 1}") as cluster:
            cluster.attr(label=stage.title, style="rounded", color="#999999", fontname=_FONT, fontsize="12")
            for box in stage.boxes:
                count = f" ×{len(box.layers)}" if len(box.layers) > 1 else ""
                label = _label(box.text + count, box.names, shape_text(box.output_shape), box.params)
                cluster.node(box.name, label, fillcolor=_FILL.get(box.layers[0].kind, "white"))
                for layer in box.layers:
                    column_of[layer.name], box_of[layer.name] = k, box.name
    with dot.subgraph(name="tops") as tops:  # the input and each stage's first node in one row
        tops.attr(rank="same")
        for name in [INPUT, *(stage.boxes[0].name for stage in columns)]:
            tops.node(name)
    for a, b in to_graph(analysis.spec).edges:
        if box_of[a] == box_of[b]:
            continue
        if column_of[a] == column_of[b]:
            dot.edge(box_of[a], box_of[b])
        else:  # across to the next column's top: the layout leaves the columns where they are
            dot.edge(box_of[a], box_of[b], constraint="false", tailport="e", headport="w")
    return dot


def _label(layer: str, names: str | None, shape: str, params: int) -> str:
    """A node's HTML-like label: the layer as the spec writes it in bold, shape, parameters, names."""
    lines = [f"<B>{_html(layer)}</B>", _html(shape)]
    if params:
        lines.append(f"{params:,} params")
    if names:  # last: the underscores of conv1_1 would strike through a line below at 96 dpi
        lines.append(f'<FONT POINT-SIZE="10" COLOR="{_NAMES_COLOUR}">{_html(names)}</FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def _html(text: str) -> str:
    """``text`` in an HTML-like label: escaped, backslashes doubled (dot reads ``\\N`` as the node's name)."""
    return html.escape(text).replace("\\", "\\\\")


def _title(analysis: Analysis) -> str:
    """``E: 19 weight layers, 143,667,240 params, 19.6 GMACs per 3×224×224 image``."""
    return (
        f"{analysis.spec.display_name}: {analysis.weight_layers} weight layers, {analysis.params:,} params, "
        f"{human_count(analysis.macs)}MACs per {shape_text(analysis.input_shape)} image"
    )


def draw(analysis: Analysis, output: str | Path, fmt: str | None = None) -> Path:
    """Write the drawing to ``output``; the format follows the suffix unless ``fmt`` is given."""
    output = Path(output)
    fmt = fmt or output.suffix.lstrip(".").lower() or "svg"
    if fmt not in FORMATS:
        raise SpecError(f"cannot draw to '{fmt}': choose one of {', '.join(FORMATS)}")
    dot = to_dot(analysis)
    if fmt == "dot":
        write_text(output, dot.source)
        return output
    import graphviz

    try:  # rendered in memory, then written whole: a failure leaves no empty or half file
        picture = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise SpecError(
            "Graphviz's 'dot' program is not installed, so SVG/PNG cannot be rendered. Install it "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; conda: conda "
            "install graphviz), or write DOT source with --format dot"
        ) from None
    write_bytes(output, picture)
    return output
