"""What a device has free, and whether a network fits in it: asked before anything is allocated.

One home for both, so that building a network, loading a checkpoint, compile's verification pass,
evaluation, prediction and training refuse a network that cannot fit with the same numbers, in one
line, instead of meeting the allocator's ``can't allocate memory`` or the kernel's OOM killer. What a
pass needs comes from the analysis alone (:func:`vggspec.plan.budget.inference_budget`).
"""

from __future__ import annotations

import os

import torch

from ..errors import SpecError
from ..plan.budget import inference_budget
from ..spec.analysis import analyze
from ..spec.spec import Spec
from ..units import human_bytes


def free_memory(device: str | torch.device) -> int | None:
    """Bytes ``device`` can still allocate, as far as can be known (None: unknown). The CPU: Linux's
    MemAvailable and free swap (else the physical memory); a GPU: what CUDA says is free."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows), or no such name
        return None


def check_memory(
    spec: Spec,
    device: str | torch.device = "cpu",
    *,
    batch: int = 0,
    input_size: int | None = None,
    weights_there: bool = False,
) -> None:
    """A SpecError in one line, with the numbers, when what ``spec`` needs on ``device`` is more than the
    memory the device has free: its weights (``batch`` 0: building a network), or a forward pass of
    ``batch`` images of ``input_size`` (default: the declared size) — the weights too unless they are
    there already (``weights_there``: the network is on the device, only the pass must fit)."""
    device = torch.device(device)
    if device.type == "meta" or (batch == 0 and weights_there):
        return  # nothing to allocate
    budget = inference_budget(spec, batch, input_size)
    need = budget.pass_bytes if weights_there else budget.peak_bytes
    available = free_memory(device)
    if available is None or need <= available:
        return
    more = f"more than the {human_bytes(available)} {device} has available"
    if batch == 0:
        raise SpecError(f"{weights_need(spec, device)}, {more}")
    images = f"{batch} image{'s' if batch != 1 else ''} of {'×'.join(map(str, budget.input_shape))}"
    parts = [] if weights_there else [f"weights {human_bytes(budget.weights_bytes)}"]
    parts += [
        f"the images {human_bytes(budget.images_bytes)}",
        f"{budget.largest_at}'s input and output {human_bytes(budget.activations_bytes)}",
    ]
    raise SpecError(
        f"{spec.display_name}: a forward pass of {images} needs at least {human_bytes(need)} on {device} "
        f"({', '.join(parts)}), {more}",
        hint="a smaller input or batch, or a device with more memory",
    )


def weights_need(spec: Spec, device: str | torch.device) -> str:
    """``"D has 138,357,544 parameters: its weights need 528 MiB on cuda"``: what building ``spec`` allocates."""
    need = human_bytes(inference_budget(spec, 0).weights_bytes)
    return f"{spec.display_name} has {analyze(spec).params:,} parameters: its weights need {need} on {device}"
