"""vggspec: VGG networks written the way Table 1 of the paper writes them, checked and compiled.

The pipeline, one module per stage: text → :mod:`~vggspec.parser` → :class:`~vggspec.spec.Spec`
→ :mod:`~vggspec.graph` (networkx) → :mod:`~vggspec.analysis`. Importing vggspec never imports
torch.
"""

from .analysis import Analysis, LayerAnalysis, analyze
from .errors import ShapeError, SpecError, SpecSyntaxError, SpecValueError, UnknownLayerError
from .formatter import format_spec
from .graph import to_graph
from .layers import LAYER_KINDS
from .parser import load, parse
from .spec import InputShape, Spec

__version__ = "0.1.0"

__all__ = [
    "LAYER_KINDS",
    "Analysis",
    "InputShape",
    "LayerAnalysis",
    "ShapeError",
    "Spec",
    "SpecError",
    "SpecSyntaxError",
    "SpecValueError",
    "UnknownLayerError",
    "analyze",
    "format_spec",
    "load",
    "parse",
    "to_graph",
]
