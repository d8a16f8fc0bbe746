"""vggspec: VGG networks written the way Table 1 of the paper writes them, checked and compiled.

The pipeline, one module per stage: text → :mod:`~vggspec.parser` → :class:`~vggspec.spec.Spec`
→ :mod:`~vggspec.graph` (networkx) → :mod:`~vggspec.analysis`. Importing vggspec never imports
torch.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types

from .data.preprocessing import Preprocessing
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
from .plan import notebook  # noqa: F401  (gives Spec and Analysis their Jupyter view: an HTML table)
from .plan.diff import SpecDiff, diff
from .plan.drawing import to_dot
from .spec.analysis import Analysis, LayerAnalysis, analyze, initial_scale
from .spec.formatter import format_spec
from .spec.graph import to_graph
from .spec.layers import LAYER_KINDS
from .spec.parser import load, parse
from .spec.spec import InputShape, Spec

__version__ = "0.1.0"

# Compiling needs torch; importing vggspec must not (``vggspec analyze`` runs without it).
_TORCH_API = {
    "VGG": "nn.compiler",
    "build": "nn.compiler",
    "INITS": "nn.compiler",
    "to_dense": "nn.dense",
    "load_model": "nn.checkpoint",
    "save_checkpoint": "nn.checkpoint",
    "transfer_from": "nn.transfer",
    "export_model": "nn.export",
    "optimize_for_inference": "nn.inference",
    "bf16_supported": "nn.inference",
}

# Where each module lived before the package was split into rooms: a script's ``import vggspec.train`` or
# ``from vggspec.config import TrainConfig`` keeps working. (``vggspec.spec`` and ``vggspec.data`` are rooms
# now, and answer for the modules they replaced: ``vggspec.spec.Spec``, ``vggspec.data.TrainDataset``.)
_MOVED = {
    **{name: f"spec.{name}" for name in ("analysis", "bundled", "formatter", "graph", "initialisation", "layers")},
    **{name: f"spec.{name}" for name in ("parser", "tape")},
    **{name: f"plan.{name}" for name in ("budget", "diff", "drawing", "gpus", "notebook", "report")},
    **{name: f"data.{name}" for name in ("colour", "decoding", "folders", "preprocessing", "samples", "scales")},
    **{name: f"nn.{name}" for name in ("checkpoint", "compiler", "dense", "export", "inference", "integrity")},
    **{name: f"nn.{name}" for name in ("pretrained", "safetensors_file", "transfer", "verify")},
    **{name: f"run.{name}" for name in ("config", "distributed", "evaluate", "metrics", "runlog", "runs", "train")},
}


class _MovedModule(types.ModuleType):
    """A module's old name: its attributes are those of the module at the new place (imported when first used)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__dict__["_moved_to"]), name)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__dict__["_moved_to"]))


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``vggspec.train`` and the other old module names (:data:`_MOVED`) as :class:`_MovedModule`\\ s."""

    def find_spec(self, fullname: str, path: object, target: object = None):
        package, _, old = fullname.partition(".")
        if package != __name__ or old not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = _MovedModule(spec.name)
        module.__dict__["_moved_to"] = f"{__name__}.{_MOVED[spec.name.partition('.')[2]]}"
        return module

    def exec_module(self, module) -> None:
        pass


if not any(isinstance(finder, _OldNames) for finder in sys.meta_path):
    sys.meta_path.append(_OldNames())


def __getattr__(name: str):
    if name in _TORCH_API:
        return getattr(importlib.import_module(f".{_TORCH_API[name]}", __name__), name)
    if name in _MOVED:
        return importlib.import_module(f".{name}", __name__)
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
