"""Run a compiled network once and hold it against the static analysis, layer by layer.

What ``vggspec compile SPEC`` prints: the real output shape and parameter count of every layer
next to the analysed ones, and a verdict. A disagreement would be a bug in vggspec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..plan.report import render_table, shape_text
from ..spec.analysis import Analysis, analyze
from ..spec.formatter import format_layer
from .compiler import VGG
from .devices import check_memory


@dataclass
class Verification:
    analysis: Analysis
    shapes: dict[str, tuple[int, ...]]  # layer name -> real output shape (C, H, W)
    params: dict[str, int]  # layer name -> real parameter count
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    seconds: float

    def mismatches(self) -> list[str]:
        out = []
        for layer in self.analysis.layers:
            if layer.name not in self.shapes:
                continue  # soft-max: applied by the loss, not a module
            if self.shapes[layer.name] != layer.output_shape:
                out.append(f"{layer.name}: output {self.shapes[layer.name]}, analysed {layer.output_shape}")
            if self.params[layer.name] != layer.params:
                out.append(f"{layer.name}: {self.params[layer.name]:,} parameters, analysed {layer.params:,}")
        return out

    @property
    def ok(self) -> bool:
        return not self.mismatches()

    def to_dict(self) -> dict:
        """What ``vggspec compile SPEC --format json`` prints: each layer's real output shape and parameters
        beside the analysis', and the verdict."""
        layers = [
            {
                "name": layer.name,
                "spelling": format_layer(self.analysis.spec.layers[layer.index]),
                "output_shape": list(self.shapes[layer.name]) if layer.name in self.shapes else None,
                "analysed_output_shape": list(layer.output_shape),
                "params": self.params.get(layer.name, 0),
                "analysed_params": layer.params,
                "macs": layer.macs,
            }
            for layer in self.analysis.layers
        ]
        return {
            "name": self.analysis.spec.display_name,
            "dense": self.analysis.spec.is_dense,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": layers,
            "ok": self.ok,
            "mismatches": self.mismatches(),
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        spec = self.analysis.spec
        rows = []
        for layer in self.analysis.layers:
            real = self.shapes.get(layer.name)
            agrees = real is None or (real == layer.output_shape and self.params[layer.name] == layer.params)
            rows.append(
                [
                    layer.name,
                    format_layer(spec.layers[layer.index]),
                    shape_text(real) if real else "(in the loss)",
                    f"{self.params.get(layer.name, 0):,}",
                    f"{layer.macs:,}",
                    "ok" if agrees else "MISMATCH",
                ]
            )
        rows.append(["total", "", "", f"{sum(self.params.values()):,}", f"{self.analysis.macs:,}", ""])
        table = render_table(["name", "layer", "output (C×H×W)", "params", "MACs", "vs analysis"], rows, "llrrrl")
        dense = " (dense)" if spec.is_dense else ""
        title = f"{spec.display_name}{dense}: one forward pass on {shape_text(self.input_shape)}"
        verdict = (
            f"OK: every layer's output shape and parameter count equal the analysis; output "
            f"{shape_text(self.output_shape)} in {self.seconds * 1000:.0f} ms"
            if self.ok
            else "MISMATCH between the compiled network and the analysis (a vggspec bug):\n  "
            + "\n  ".join(self.mismatches())
        )
        return f"{title}\n\n{table}\n\n{verdict}"


def verify(model: VGG, size: int | None = None, *, batch: int = 1, seed: int = 0) -> Verification:
    """One forward pass of ``batch`` random images (``size`` × ``size``; default: the declared size); a SpecError
    with the numbers, before the images are made, when the pass cannot fit in the device's free memory."""
    spec = model.spec
    c, h, w = spec.input.shape
    if size is not None:
        h = w = size
    analysis = analyze(spec, input_size=size)
    device = next(model.parameters()).device
    check_memory(spec, device, batch=batch, input_size=size, weights_there=True)  # before the images are made
    if device.type == "meta":  # shapes only, nothing computed
        images = torch.empty(batch, c, h, w, device=device)
    else:
        generator = torch.Generator(device=device).manual_seed(seed)
        images = torch.randn(batch, c, h, w, device=device, generator=generator)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for section in (model.features, model.classifier):
        for name, block in section.named_children():
            hooks.append(block.register_forward_hook(_recorder(shapes, name)))
    was_training = model.training
    model.eval()
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(images)
        seconds = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    params = {
        name: sum(p.numel() for p in block.parameters())
        for section in (model.features, model.classifier)
        for name, block in section.named_children()
    }
    return Verification(analysis, shapes, params, tuple(images.shape[1:]), tuple(out.shape[1:]), seconds)


def _recorder(shapes: dict[str, tuple[int, ...]], name: str):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        shape = tuple(output.shape[1:])
        shapes[name] = shape if len(shape) == 3 else (*shape, 1, 1)

    return hook
