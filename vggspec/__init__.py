"""vggspec: VGG networks written the way Table 1 of the paper writes them, checked and compiled.

The pipeline, a room per stage: ``spec/`` (text → :class:`~vggspec.spec.Spec` → layer graph → analysis),
``plan/`` (budgets, tables, drawings), ``data/`` (images), ``nn/`` (the torch network and its weights),
``run/`` (train, evaluate), and ``cli/`` over them. Importing vggspec imports none of them, nor torch: each
public name below is imported when first used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public API, imported when first asked for: ``import vggspec`` costs nothing (the command line's first
# second is its own: Ctrl-C there exits quietly), and never imports torch (``vggspec analyze`` runs without it).
_API = {
    **dict.fromkeys(("Analysis", "LayerAnalysis", "analyze", "initial_scale"), "spec.analysis"),
    **dict.fromkeys(("InputShape", "Spec"), "spec.spec"),
    **dict.fromkeys(("load", "parse"), "spec.parser"),
    "format_spec": "spec.formatter",
    "to_graph": "spec.graph",
    "LAYER_KINDS": "spec.layers",
    **dict.fromkeys(("SpecDiff", "diff"), "plan.diff"),
    "to_dot": "plan.drawing",
    "Preprocessing": "data.preprocessing",
    **dict.fromkeys(
        ("CheckpointError", "InputSizeError", "ShapeError", "SpecError", "SpecSyntaxError", "SpecValueError"),
        "errors",
    ),
    **dict.fromkeys(("UnknownLayerError", "WeightsError"), "errors"),
    # torch's, imported when first used
    **dict.fromkeys(("VGG", "build", "INITS"), "nn.compiler"),
    "to_dense": "nn.dense",
    **dict.fromkeys(("load_model", "save_checkpoint"), "nn.checkpoint"),
    "transfer_from": "nn.transfer",
    "export_model": "nn.export",
    **dict.fromkeys(("optimize_for_inference", "bf16_supported"), "nn.inference"),
}

if TYPE_CHECKING:  # what type checkers and editors see of the names above
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
    from .nn.checkpoint import load_model, save_checkpoint
    from .nn.compiler import INITS, VGG, build
    from .nn.dense import to_dense
    from .nn.export import export_model
    from .nn.inference import bf16_supported, optimize_for_inference
    from .nn.transfer import transfer_from
    from .plan.diff import SpecDiff, diff
    from .plan.drawing import to_dot
    from .spec.analysis import Analysis, LayerAnalysis, analyze, initial_scale
    from .spec.formatter import format_spec
    from .spec.graph import to_graph
    from .spec.layers import LAYER_KINDS
    from .spec.parser import load, parse
    from .spec.spec import InputShape, Spec

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
    if name in _API:
        importlib.import_module(".plan.notebook", __name__)  # Spec and Analysis get their Jupyter view
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    if name in _MOVED:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vggspec' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


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
