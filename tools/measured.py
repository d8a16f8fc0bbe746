"""PyTorch's own account of a training step's memory: what :mod:`vggspec.budget` is held to.

Two measurements of the trainer's step (SGD with momentum and weight decay; the loss
``cross_entropy(scores.float(), labels, reduction='sum') / share``; autocast and channels-last as the
trainer applies them), each of a steady-state step: one step is taken first, so that the momentum
buffers exist, and the next is measured.

* :func:`tracked_step`: ``torch.distributed._tools.mem_tracker.MemTracker`` under ``FakeTensorMode``
  on the CPU: every tensor by category, no memory touched and no arithmetic done, on any machine.
  (Fake CUDA tensors cannot run a backward pass without a GPU: pytorch/pytorch#92627.)
* :func:`tracked_forward`: the same over the forward pass alone, on fake CUDA tensors, which a
  machine without a GPU can run that far: CUDA's allocation rules up to the backward pass.
* :func:`cuda_step_peak`: ``torch.cuda.max_memory_allocated`` of a real step on a GPU.

Used by the tests, ``tools/bench_plan.py`` and ``tools/gpu_check.py``; the trainer does not need it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn

from vggspec.nn.compiler import assemble, build
from vggspec.spec.spec import Spec

Snapshots = dict[str, dict[str, int]]  # when → MemTracker category (Parameter, Activation, ..., Total) → bytes


def tracked_step(
    spec: Spec,
    share: int,
    *,
    micro: int | None = None,
    amp: str | None = None,
    channels_last: bool = False,
    foreach: bool | None = None,
) -> Snapshots:
    """MemTracker's snapshots of one steady-state training step of ``spec``'s module on the CPU, faked:
    at its start, at the end of the last forward pass, after the last backward pass, and at its peak."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    micro = micro or share
    snapshots: dict[str, dict] = {}
    with FakeTensorMode():
        with torch.device("cpu"):
            model = assemble(spec).train()
        if channels_last:
            _channels_last_parameters(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=foreach)
        images, labels = _batch(model, micro, channels_last, "cpu")
        step = _step(model, optimizer, images, labels, share, micro, lambda: _autocast("cpu", amp))
        step()  # the first step makes the momentum buffers
        tracker = MemTracker()
        tracker.track_external(model, optimizer, images, labels)
        snapshots["start"] = tracker.get_tracker_snapshot()

        def snap(when: str) -> None:
            snapshots[when] = tracker.get_tracker_snapshot()
            if when == "backward":
                tracker.reset_mod_stats()  # MemTracker follows one forward pass per module at a time

        with tracker:
            step(snap)
        snapshots["peak"] = tracker.get_tracker_snapshot("peak")
    return {
        when: {str(getattr(k, "value", k)): v for k, v in next(iter(s.values())).items()}
        for when, s in snapshots.items()
    }


def tracked_forward(spec: Spec, batch: int, *, device: str = "cuda", channels_last: bool = False) -> dict[str, int]:
    """MemTracker's snapshot at the end of a training forward pass and loss of ``spec``'s module, faked on
    ``device``: on a machine without a GPU, fake CUDA tensors run the forward pass (CUDA's kernels'
    choices: native_dropout, cuDNN's batch norm; allocations in 512-byte blocks), not the backward
    (pytorch/pytorch#92627), and not autocast, which CUDA's absence disables."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        with torch.device(device):
            model = assemble(spec).train()
        if channels_last:
            _channels_last_parameters(model)
        images, labels = _batch(model, batch, channels_last, device)
        tracker = MemTracker()
        tracker.track_external(model, images, labels)
        with tracker:
            scores = model(images)
            loss = nn.functional.cross_entropy(scores.float(), labels, reduction="sum") / batch
            snapshot = tracker.get_tracker_snapshot()
        del scores, loss
    return {str(getattr(k, "value", k)): v for k, v in next(iter(snapshot.values())).items()}


def _channels_last_parameters(model: nn.Module) -> None:
    """``model.to(memory_format=torch.channels_last)``, which cannot swap fake parameters: by hand."""
    for module in model.modules():
        for key, p in list(module._parameters.items()):
            if p is not None and p.dim() == 4:
                module._parameters[key] = nn.Parameter(p.detach().contiguous(memory_format=torch.channels_last))


def cuda_step_peak(spec: Spec, batch: int, *, amp: str | None = None, channels_last: bool = False) -> int:
    """``torch.cuda.max_memory_allocated`` over one steady-state training step of ``spec`` on the GPU."""
    device = torch.device("cuda")
    model = build(spec, device=device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    images, labels = _batch(model, batch, channels_last, device)
    step = _step(model, optimizer, images, labels, batch, batch, lambda: _autocast("cuda", amp))
    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del model, optimizer, images, labels
    torch.cuda.empty_cache()
    return peak


def _batch(model: nn.Module, size: int, channels_last: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.empty(size, *model.input_shape, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.zeros(size, dtype=torch.long, device=device)


def _autocast(device: str, amp: str | None) -> AbstractContextManager:
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device, dtype=dtype, enabled=amp is not None)


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    share: int,
    micro: int,
    autocast: Callable[[], AbstractContextManager],
) -> Callable[..., None]:
    """The trainer's step: ``share`` images in passes of ``micro``, gradients accumulated, then SGD."""

    def step(snap: Callable[[str], None] = lambda when: None) -> None:
        for _ in range(math.ceil(share / micro)):
            with autocast():
                scores = model(images)
                loss = nn.functional.cross_entropy(scores.float(), labels, reduction="sum") / share
            snap("forward")
            loss.backward()
            snap("backward")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step
