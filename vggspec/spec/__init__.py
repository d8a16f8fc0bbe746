"""The language: text → :class:`Spec` → layer graph → :class:`Analysis`. No torch.

    grammar.lark     the statements of a ``.vgg`` file
    parser.py        text → Spec, errors at their line and column (``parse``, ``load``)
    layers.py        one class per layer kind: its word, shape, parameters, MACs, window, torch module
    spec.py          the frozen ``Spec``: input, layers, comments, source text
    graph.py         Spec → the networkx chain with Caffe names (conv1_1, pool1, fc6, prob)
    analysis.py      shapes, parameters, FLOPs, memory, receptive fields (``analyze``)
    formatter.py     Spec → canonical text
    initialisation.py  what each ``--init`` draws
    tape.py          the operations a layer's training pass runs, as the budget (plan/) replays them
    bundled.py       the specs that ship with vggspec (A–E and small ones)
"""

from .analysis import Analysis, LayerAnalysis, analyze, initial_scale
from .formatter import format_spec
from .graph import to_graph
from .layers import LAYER_KINDS
from .parser import load, parse
from .spec import COLOUR_MODELS, MAX_INPUT, Comment, InputShape, Spec

__all__ = [
    "COLOUR_MODELS",
    "LAYER_KINDS",
    "MAX_INPUT",
    "Analysis",
    "Comment",
    "InputShape",
    "LayerAnalysis",
    "Spec",
    "analyze",
    "format_spec",
    "initial_scale",
    "load",
    "parse",
    "to_graph",
]
