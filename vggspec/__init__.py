"""vggspec: VGG networks written the way Table 1 of the paper writes them, checked and compiled.

The pipeline, one module per stage: text → :mod:`~vggspec.parser` → :class:`~vggspec.spec.Spec`
→ :mod:`~vggspec.graph` (networkx) → :mod:`~vggspec.analysis`. Importing vggspec never imports
torch.
"""

from . import notebook  # noqa: F401  (gives Spec and Analysis their Jupyter view: an HTML table)
from .analysis import Analysis, LayerAnalysis, analyze, initial_scale
from .diff import SpecDiff, diff
from .drawing import to_dot
from .errors import (
    CheckpointError,
    InputSizeError,
    ShapeError,
    SpecError,
    SpecSyntaxError,
    SpecValueError,
    UnknownLayerError,
    WeightsError,
)
from .formatter import format_spec
from .graph import to_graph
from .layers import LAYER_KINDS
from .parser import load, parse
from .preprocessing import Preprocessing
from .spec import InputShape, Spec

__version__ = "0.1.0"

# Compiling needs torch; importing vggspec must not (``vggspec analyze`` runs without it).
_TORCH_API = {
    "VGG": "compiler",
    "build": "compiler",
    "INITS": "compiler",
    "to_dense": "dense",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "transfer_from": "transfer",
    "export_model": "export",
    "optimize_for_inference": "inference",
    "bf16_supported": "inference",
}


def __getattr__(name: str):
    if name in _TORCH_API:
        import importlib

        return getattr(importlib.import_module(f".{_TORCH_API[name]}", __name__), name)
    raise AttributeError(f"module 'vggspec' has no attribute '{name}'")


__all__ = [
    "INITS",
    "LAYER_KINDS",
    "VGG",
    "CheckpointError",
    "InputSizeError",
    "WeightsError",
    "bf16_supported",
    "build",
    "export_model",
    "optimize_for_inference",
    "load_model",
    "save_checkpoint",
    "to_dense",
    "transfer_from",
    "Analysis",
    "InputShape",
    "LayerAnalysis",
    "Preprocessing",
    "ShapeError",
    "Spec",
    "SpecError",
    "SpecSyntaxError",
    "SpecDiff",
    "SpecValueError",
    "UnknownLayerError",
    "analyze",
    "diff",
    "format_spec",
    "initial_scale",
    "load",
    "parse",
    "to_dot",
    "to_graph",
]
