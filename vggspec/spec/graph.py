"""Spec → layer graph (networkx): the one intermediate form analysis, drawing and compilation read.

Nodes are named the Caffe way (``conv1_1``, ``pool1``, ``fc6``, ``prob``) so that numbers,
drawings and module names agree. Each node carries its :class:`LayerSpec` (``layer``), its
position in the spec (``index``) and, for fully-connected layers, the resolved ``dropout`` and
whether it is the ``classifier`` (the last one: no ReLU).
The VGG family is a chain, but everything downstream walks the graph in topological order,
so a branch would only need a new layer kind.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx

from .layers import FC
from .spec import Spec

INPUT = "input"


def to_graph(spec: Spec) -> nx.DiGraph:
    """``spec`` as a networkx chain from an ``input`` node, a node per layer named the Caffe way, each with
    its ``layer``, ``index`` and ``kind`` (and an FC layer's resolved ``dropout`` and ``classifier``)."""
    graph = nx.DiGraph(name=spec.display_name, spec=spec)
    graph.add_node(INPUT, index=-1, layer=None, kind="input", shape=spec.input.shape)
    previous = INPUT
    stage = 1
    nth: Counter[tuple[str, int]] = Counter()
    for index, layer in enumerate(spec.layers):
        nth[layer.kind, stage] += 1
        name = layer.NAME.format(stage=stage, nth=nth[layer.kind, stage])
        if nth[layer.kind, stage] > 1 and "{nth}" not in layer.NAME:
            name += f"_{nth[layer.kind, stage]}"
        base, suffix = name, 2
        while name in graph:  # e.g. two soft-max layers (an error the analysis reports)
            name, suffix = f"{base}_{suffix}", suffix + 1
        attrs = {"index": index, "layer": layer, "kind": layer.kind}
        if isinstance(layer, FC):
            attrs["dropout"] = spec.dropout(index)
            attrs["classifier"] = index == spec.classifier_index
        graph.add_node(name, **attrs)
        graph.add_edge(previous, name)
        previous = name
        if layer.ENDS_STAGE:
            stage += 1
    return graph


def layer_nodes(graph: nx.DiGraph) -> list[str]:
    """The layer nodes in execution order (the input excluded)."""
    return [n for n in nx.topological_sort(graph) if n != INPUT]
