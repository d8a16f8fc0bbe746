"""Layer graph → a graphviz drawing: one box per layer with its output shape and parameters.

Writing DOT source needs only the ``graphviz`` Python package; rendering SVG or PNG needs
Graphviz's ``dot`` program (Debian/Ubuntu: ``apt-get install graphviz``; macOS: ``brew
install graphviz``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SpecError
from ..files import write_bytes, write_text
from ..spec.analysis import Analysis
from ..spec.formatter import format_layer
from ..spec.graph import INPUT, to_graph
from .report import shape_text

FORMATS = ("svg", "png", "pdf", "dot")

_FILL = {"conv": "#dbe9f6", "maxpool": "#f6e3c7", "lrn": "#e8e0f3", "fc": "#d9f0d3", "softmax": "#eeeeee"}


def to_dot(analysis: Analysis):
    """A ``graphviz.Digraph`` of the analysed network (edges follow the layer graph).

    Jupyter shows it inline as SVG (graphviz's ``_repr_mimebundle_``; rendering needs ``dot``,
    importing and building do not): ``vggspec.to_dot(vggspec.analyze(spec))`` as a cell's last line.
    """
    import graphviz

    graph = to_graph(analysis.spec)
    stats = {layer.name: layer for layer in analysis.layers}
    dot = graphviz.Digraph(analysis.spec.display_name, graph_attr={"rankdir": "TB", "fontname": "Helvetica"})
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10")
    c, h, w = analysis.input_shape
    dot.node(INPUT, f"input\n{c}×{h}×{w}", fillcolor="white")
    for name, data in graph.nodes(data=True):
        if name == INPUT:
            continue
        s = stats[name]
        label = f"{name}: {format_layer(data['layer'])}\n{shape_text(s.output_shape)}"
        if s.params:
            label += f"\n{s.params:,} params"
        dot.node(name, label, fillcolor=_FILL.get(s.kind, "white"))
    for a, b in graph.edges:
        dot.edge(a, b)
    return dot


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
