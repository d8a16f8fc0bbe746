"""A training budget from the spec alone: the memory of one training step of one process, its compute,
the largest micro-batch that fits a GPU, and a lower bound on the time; and the least memory a forward
pass for inference takes (:func:`inference_budget`), which is checked before a network runs.

The step is the trainer's (:mod:`vggspec.train`): SGD with momentum and weight decay, a steady-state
step (the momentum buffers exist; gradients were set to None by the last step), the loss
``cross_entropy(scores.float(), labels)``, optionally under autocast and in channels-last format,
the process's share of the global batch in micro-batches whose gradients accumulate. It is replayed
tensor by tensor on a :class:`vggspec.spec.tape.Tape` (each layer kind records its own operations), so
the peak falls where PyTorch's does; ``tests/test_budget.py`` holds it within 5 % of
``torch.distributed._tools.mem_tracker.MemTracker`` on the built module. No torch: milliseconds.

Not counted: the CUDA context, cuDNN's workspaces and the caching allocator's fragmentation (the
planner leaves :data:`PLANNING_MARGIN` of the memory for them), the data loader's pinned batches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ..errors import SpecError
from ..spec.analysis import BYTES_PER_ACTIVATION, analyze, classifier_spec
from ..spec.graph import layer_nodes, to_graph
from ..spec.layers import Shape
from ..spec.spec import Spec
from ..spec.tape import AMP_DTYPES, DEVICES, FLOAT32, Category, DeviceRules, Param, Tape
from ..units import human_bytes
from .batch import PAPER_BATCH, batch_shares

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012's training set: an epoch of the paper's runs
PLANNING_MARGIN_PERCENT = 10  # of a GPU's memory --micro-batch auto (and analyze --memory) leave free
PLANNING_MARGIN = PLANNING_MARGIN_PERCENT / 100  # of the memory left for the CUDA context, cuDNN, fragmentation


@dataclass(frozen=True)
class TrainSettings:
    """What a training step's memory depends on, besides the network."""

    batch: int = PAPER_BATCH  # the global batch
    processes: int = 1  # data-parallel processes (GPUs) the batch is split over
    micro_batch: int | None = None  # images per forward pass; None: a process's whole share
    amp: str | None = None  # 'bf16' or 'fp16': autocast
    channels_last: bool = False
    device: str = "cuda"  # whose allocation rules: 'cuda' or 'cpu'
    weight_decay: bool = True  # the trainer's default (5e-4)
    foreach: bool | None = None  # torch.optim's foreach kernels; None: the device's default

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise SpecError(f"the batch must be at least 1 image, got {self.batch}")
        if self.processes < 1:
            raise SpecError(f"the batch is split over at least one process, got {self.processes}")
        batch_shares(self.batch, self.processes)  # each process at least one image
        if self.micro_batch is not None and self.micro_batch < 1:
            raise SpecError(f"a micro-batch is at least 1 image, got {self.micro_batch}")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise SpecError(f"--amp is bf16 or fp16, not {self.amp!r}")
        if self.device not in DEVICES:
            raise SpecError(f"the device is one of {', '.join(DEVICES)}, not {self.device!r}")

    @property
    def share(self) -> int:
        """Images per process and step: the most any process takes (one more than others where the processes do
        not divide the batch), which bounds the memory and the time of a step."""
        return batch_shares(self.batch, self.processes)[1]

    @property
    def micro(self) -> int:
        return min(self.micro_batch or self.share, self.share)

    @property
    def accumulation(self) -> int:
        """Forward passes per step, their gradients accumulated."""
        return math.ceil(self.share / self.micro)

    @property
    def rules(self) -> DeviceRules:
        rules = DEVICES[self.device]
        return rules if self.foreach is None else replace(rules, foreach_optimizer=self.foreach)


class LayerBudget(NamedTuple):
    """One layer's share of a training step (of one process)."""

    index: int
    name: str
    kind: str
    output_shape: Shape
    weights_bytes: int  # its parameters (float32); as much again for gradients and momentum
    saved_bytes: int  # what its forward pass leaves for the backward (autocast's weight copies included)
    forward_flops: int
    backward_flops: int


@dataclass(frozen=True)
class TrainBudget:
    """The memory and compute of one training step of one process."""

    spec: Spec
    settings: TrainSettings
    layers: tuple[LayerBudget, ...]
    weights_bytes: int
    buffers_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # alive at the end of the forward pass: kept for the backward
    inputs_bytes: int  # the micro-batch of images and labels
    ddp_buckets_bytes: int  # DistributedDataParallel's gradient buckets (several processes)
    peak_bytes: int
    peak_at: str  # where the step reaches its peak: a layer's backward, the optimizer step
    peak_categories: Mapping[Category, int] = field(default_factory=dict)
    forward_flops: int = 0
    backward_flops: int = 0

    @property
    def flops(self) -> int:
        return self.forward_flops + self.backward_flops

    def to_dict(self) -> dict:
        """The ``train`` object of ``vggspec analyze --train --format json``."""
        s = self.settings
        return {
            "batch": s.batch,
            "processes": s.processes,
            "share": s.share,
            "micro_batch": s.micro,
            "accumulation_steps": s.accumulation,
            "amp": s.amp,
            "channels_last": s.channels_last,
            "device": s.device,
            "peak_bytes": self.peak_bytes,
            "peak_at": self.peak_at,
            "peak_by_category": {category.value: n for category, n in self.peak_categories.items()},
            "weights_bytes": self.weights_bytes,
            "buffers_bytes": self.buffers_bytes,
            "gradients_bytes": self.gradients_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "activations_bytes": self.activations_bytes,
            "inputs_bytes": self.inputs_bytes,
            "ddp_buckets_bytes": self.ddp_buckets_bytes,
            "forward_flops": self.forward_flops,
            "backward_flops": self.backward_flops,
        }


LOSS = "loss"  # the phase of the step that computes the loss (the spec's soft-max)


def train_budget(spec: Spec, settings: TrainSettings | None = None) -> TrainBudget:
    """The memory and compute of one steady-state training step of one process of ``spec``."""
    settings = settings or TrainSettings()
    spec = classifier_spec(spec)  # training runs the network with its classifier, not densely
    analysis = analyze(spec)
    graph = to_graph(spec)
    names = layer_nodes(graph)
    micro, rules = settings.micro, settings.rules
    tape = Tape(micro, amp=settings.amp, channels_last=settings.channels_last, rules=rules)

    params: dict[str, list[Param]] = {}
    for name, stats in zip(names, analysis.layers):
        layer = graph.nodes[name]["layer"]
        tape.where = name
        params[name] = [tape.param(n) for n in layer.parameter_numels(stats.input_shape)]
        for numel, dtype in layer.buffer_numels(stats.input_shape):
            tape.buffer(numel, dtype)
    weights = tape.now.bytes[Category.PARAMETER]
    tape.where = "optimizer"
    tape.momentum_buffers()
    ddp_buckets = 0
    if settings.processes > 1:  # DDP copies every gradient into its buckets (gradient_as_bucket_view=False)
        tape.where = "DDP buckets"
        total = sum(p.tensor.numel for p in tape.params)
        ddp_buckets = tape.new(total, FLOAT32, Category.GRADIENT).storage.nbytes
    tape.where = "input"
    images = tape.new(micro * math.prod(spec.input.shape), FLOAT32, Category.INPUT)
    tape.new(micro, "int64", Category.INPUT)  # the labels
    inputs = tape.now.bytes[Category.INPUT]

    first_fc = None if spec.first_fc_index is None else names[spec.first_fc_index]
    activations: int = 0
    saved: dict[str, int] = {}
    results: tuple = ()  # the trainer's `scores` and `loss`: held until the next forward pass replaces them
    for _ in range(settings.accumulation):
        x = tape.hold(images)
        for name, stats in zip(names, analysis.layers):
            node = graph.nodes[name]
            layer = node["layer"]
            tape.where = name
            if name == first_fc:  # VGG.forward: torch.flatten(x, 1) before the classifier
                flat = tape.flatten(x, stats.input_shape[0], stats.input_shape[1] * stats.input_shape[2])
                tape.drop(x)
                x = flat
            y = layer.record_training(tape, x, stats.input_shape, params[name], node)
            tape.drop(x)
            x = y
        tape.where = LOSS
        loss = tape.cross_entropy(x)
        for held in results:
            tape.drop(held)
        results = (x, loss)
        if tape.half:
            tape.end_autocast()
        activations = tape.now.bytes[Category.ACTIVATION]
        saved = tape.alive(Category.ACTIVATION)
        tape.backward(loss)
    tape.sgd_step(weight_decay=settings.weight_decay)
    tape.zero_grad()

    share = settings.share
    layers = tuple(
        LayerBudget(
            index=stats.index,
            name=stats.name,
            kind=stats.kind,
            output_shape=stats.output_shape,
            weights_bytes=sum(p.tensor.storage.nbytes for p in params[stats.name]),
            saved_bytes=saved.get(stats.name, 0),
            forward_flops=2 * stats.macs * share,
            backward_flops=2 * stats.backward_macs * share,
        )
        for stats in analysis.layers
    )
    return TrainBudget(
        spec=spec,
        settings=settings,
        layers=layers,
        weights_bytes=weights,
        buffers_bytes=tape.now.bytes[Category.BUFFER],
        gradients_bytes=weights,  # one float32 gradient per parameter
        optimizer_bytes=tape.now.bytes[Category.OPTIMIZER],
        activations_bytes=activations,
        inputs_bytes=inputs,
        ddp_buckets_bytes=ddp_buckets,
        peak_bytes=tape.peak.total,
        peak_at=tape.peak_at,
        peak_categories=dict(tape.peak.bytes),
        forward_flops=2 * analysis.macs * share,
        backward_flops=2 * analysis.backward_macs * share,
    )


# -- inference: the least a forward pass takes --------------------------------------------------


@dataclass(frozen=True)
class InferenceBudget:
    """The least memory one forward pass of ``batch`` images takes in inference mode (no gradients, nothing
    kept for a backward pass): the weights, the images (held by the caller for the whole pass), and the
    largest input and output of one layer alive together (a layer's input is let go once the next layer has
    it). A lower bound: the kernels' workspaces, batch norm's own output beside its convolution's, the
    allocator's rounding and batch norm's running statistics (a few floats a channel) are not counted; a
    pass that needs more than it cannot run."""

    spec: Spec
    batch: int
    input_shape: Shape
    weights_bytes: int  # the parameters, float32
    images_bytes: int
    activations_bytes: int  # the largest layer's input and output at once, beyond the images
    largest_at: str  # that layer's name

    @property
    def peak_bytes(self) -> int:
        return self.weights_bytes + self.images_bytes + self.activations_bytes

    @property
    def pass_bytes(self) -> int:
        """What the pass allocates besides the weights: what must fit once the network is on its device."""
        return self.images_bytes + self.activations_bytes


def inference_budget(spec: Spec, batch: int = 1, input_size: int | None = None) -> InferenceBudget:
    """The least memory a forward pass of ``batch`` images of ``input_size`` (default: the declared size)
    through ``spec`` takes, as :class:`InferenceBudget` counts it: float32 everywhere."""
    if batch < 0:
        raise SpecError(f"a forward pass takes 0 images or more, got {batch}")
    analysis = analyze(spec, input_size=input_size)
    element = BYTES_PER_ACTIVATION
    images = batch * math.prod(analysis.input_shape) * element
    largest, at = 0, analysis.layers[0].name if analysis.layers else ""
    for i, layer in enumerate(analysis.layers):
        if layer.kind == "softmax":  # applied by the loss or the evaluator, not in the pass
            continue
        alive = math.prod(layer.output_shape) + (math.prod(layer.input_shape) if i else 0)  # the first's: the images
        if alive * batch * element > largest:
            largest, at = alive * batch * element, layer.name
    return InferenceBudget(
        spec=spec,
        batch=batch,
        input_shape=analysis.input_shape,
        weights_bytes=analysis.params * element,
        images_bytes=images,
        activations_bytes=largest,
        largest_at=at,
    )


# -- the planner: the largest micro-batch that fits ------------------------------------------------


class Plan(NamedTuple):
    """How a process's share of the batch fits in ``memory`` bytes: in ``steps`` micro-batches of
    ``budget.settings.micro`` images; ``budget`` is None when even one image does not fit (then
    ``needed`` is the smallest memory one image would take, margin included)."""

    memory: int
    usable: int  # the memory less the margin
    budget: TrainBudget | None
    needed: int
    largest: int  # the largest micro-batch that fits (0: none)

    @property
    def fits(self) -> bool:
        return self.budget is not None


def plan(spec: Spec, memory: int, settings: TrainSettings | None = None, margin: float = PLANNING_MARGIN) -> Plan:
    """The largest micro-batch whose step's peak fits in ``memory`` less ``margin`` of it, with the
    accumulation steps that give the global batch. The fewest steps are chosen, then the smallest
    micro-batch that still needs no more (share 256 in 3 steps: 86, 86, 84 rather than 100, 100, 56)."""
    settings = settings or TrainSettings()
    usable = int(memory * (1 - margin))
    share = settings.share

    def at(steps: int) -> TrainBudget:
        micro = math.ceil(share / steps)
        return train_budget(spec, _with(settings, micro_batch=micro))

    whole = at(1)
    if whole.peak_bytes <= usable:
        return Plan(memory, usable, whole, whole.peak_bytes, share)
    one = train_budget(spec, _with(settings, micro_batch=1))
    if one.peak_bytes > usable:
        return Plan(memory, usable, None, math.ceil(one.peak_bytes / (1 - margin)), 0)
    # Below the whole share the gradients accumulate, and the peak grows with the micro-batch.
    low, high = 1, share - 1  # the largest micro-batch that fits: 1 does
    while low < high:
        middle = (low + high + 1) // 2
        if train_budget(spec, _with(settings, micro_batch=middle)).peak_bytes <= usable:
            low = middle
        else:
            high = middle - 1
    chosen = at(math.ceil(share / low))  # as many passes, as even as they go
    return Plan(memory, usable, chosen, chosen.peak_bytes, low)


def _with(settings: TrainSettings, **changes: object) -> TrainSettings:
    return replace(settings, **changes)


def auto_micro_batch(
    spec: Spec, settings: TrainSettings, free: Sequence[int], device: str = "the GPU"
) -> tuple[int, str]:
    """``vggspec train --micro-batch auto`` on GPUs: the micro-batch :func:`plan` finds for the least of
    the processes' ``free`` memory (every process must take as many passes), and a note that says so;
    a SpecError when even one image a pass does not fit."""
    least = min(free)
    found = plan(spec, least, settings)
    if found.budget is None:
        raise SpecError(
            f"--micro-batch auto: {spec.display_name} does not fit even one image a pass in the "
            f"{human_bytes(least)} free on {device}: it takes {human_bytes(found.needed)} "
            f"({PLANNING_MARGIN_PERCENT}% of it left for the CUDA context, cuDNN and fragmentation)",
            hint="free the GPU, train with --amp bf16, or on a GPU with more memory",
        )
    s = found.budget.settings
    passes = f"{s.accumulation} passes of {s.micro}" if s.accumulation > 1 else f"one pass of {s.micro}"
    where = f"on {device}" if len(free) == 1 else f"on the process with the least, of {len(free)}"
    note = (
        f"--micro-batch auto: {passes} images a step fit the {human_bytes(least)} free {where} "
        f"(peak {human_bytes(found.budget.peak_bytes)}; planned to {100 - PLANNING_MARGIN_PERCENT}% "
        "of the free memory)"
    )
    return s.micro, note


SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """``80GiB``, ``16GB``, ``512 MiB``, ``1.5TiB`` → bytes; a SpecError in one line for anything else."""
    units = "e.g. 80GiB, 16GB, 512MiB (KiB, MiB, GiB: powers of 1024; KB, MB, GB: of 1000)"
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        said = "needs a unit" if match and not match.group(2) else "is not a memory size: a number and a unit"
        raise SpecError(f"--memory '{text.strip()}' {said}: {units}")
    number, unit = match.groups()
    size = int(float(number) * SIZE_UNITS[unit.lower()])
    if size < 1:
        raise SpecError(f"--memory '{text.strip()}' is not more than zero: {units}")
    return size


# -- a lower bound on the time -------------------------------------------------------------------


class TimeBound(NamedTuple):
    """No step can take less than ``step_seconds``: its FLOPs at the device's peak rates, nothing else
    (memory traffic, launches, the data, communication between processes all add)."""

    device: str
    step_seconds: float
    images: int  # an epoch's
    steps_per_epoch: int

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.steps_per_epoch

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "step_seconds_at_least": self.step_seconds,
            "images_per_epoch": self.images,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_seconds_at_least": self.epoch_seconds,
        }


def time_bound(
    budget: TrainBudget,
    conv_rate: float,
    matmul_rate: float | None = None,
    *,
    device: str = "",
    images: int = IMAGENET_TRAIN_IMAGES,
) -> TimeBound:
    """The step's FLOPs (each process computes its share at once) at ``conv_rate`` FLOP/s for the
    convolutions and ``matmul_rate`` for the fully-connected layers; an epoch is ``images // batch``
    steps, as the trainer counts them."""
    matmul_rate = matmul_rate or conv_rate
    if conv_rate <= 0 or matmul_rate <= 0:
        raise SpecError("a device's FLOP/s must be more than zero")
    seconds = sum(
        (layer.forward_flops + layer.backward_flops) / (matmul_rate if layer.kind == "fc" else conv_rate)
        for layer in budget.layers
    )
    return TimeBound(device, seconds, images, images // budget.settings.batch)


def parse_flops(text: str) -> float:
    """``312e12``, ``312T``, ``1.2P`` → FLOP/s; a SpecError for anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([kMGTP]?)(?:FLOP/?S)?\s*", text, re.I)
    if not match or float(match.group(1)) <= 0:
        raise SpecError(f"'{text}' is not a rate of FLOP/s", hint="e.g. --device-flops 312e12 (A100's bf16 peak)")
    prefix = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}[match.group(2).lower()]
    return float(match.group(1)) * prefix
