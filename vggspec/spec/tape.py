"""A training step's memory, tensor by tensor, as PyTorch allocates it: without PyTorch.

A :class:`Tape` replays one step of training: each operation a layer runs (its kind says which, in
:meth:`vggspec.spec.layers.LayerSpec.record_training`) allocates its outputs, keeps what its backward
needs, and drops what nothing holds any more; the backward pass runs the nodes in the order
PyTorch's autograd engine does (the latest first), each allocating its input gradients and
temporaries, freeing the output gradient and what it kept, and passing the gradients on; the
optimizer step follows. Every allocation and release moves the running total of its category, so
the peak is found where PyTorch's is, with what is alive at that moment.

What each operation keeps and allocates is read off PyTorch's autograd formulas
(``tools/autograd/derivatives.yaml``) and checked against ``MemTracker`` on the built module
(``tests/test_budget.py``): a convolution or linear layer keeps its input and weight, ReLU (in place)
its output, max pooling its input and its int64 indices, batch norm its input and two per-channel
statistics, dropout its mask. Under autocast a convolution or linear layer runs on half copies of
its input and weights (the weight copies are kept for backward until then, the bias copies only
until the autocast region ends); weights, gradients and momentum stay float32.

Nothing here imports torch, nor anything of vggspec: the layer kinds describe themselves in it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2, "int64": 8, "bool": 1}
"""Bytes per element of the dtypes a training step holds."""

AMP_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16"}
"""``--amp``'s spellings and the dtype autocast computes in."""

FLOAT32 = "float32"


class Category(str, Enum):
    """What a piece of memory is for: MemTracker's categories (``_MemRefType``), in its words."""

    PARAMETER = "Parameter"
    BUFFER = "Buffer"
    GRADIENT = "Gradient"
    ACTIVATION = "Activation"  # allocated by the forward pass (what it keeps for the backward)
    TEMPORARY = "Temp"  # allocated by the backward pass: gradients of activations and scratch
    OPTIMIZER = "Optstate"  # momentum, and the optimizer step's scratch
    INPUT = "Other"  # the batch of images and labels


@dataclass(frozen=True)
class DeviceRules:
    """Where a CPU and a GPU differ in what a training step allocates."""

    name: str
    block: int  # every allocation is rounded up to a multiple of this many bytes
    fused_dropout: bool  # native_dropout: a bool mask; else a mask in the input's dtype
    foreach_optimizer: bool  # the optimizer updates all parameters at once (a scratch copy of them all)
    float32_norm_stats: bool  # batch norm keeps its batch statistics in float32, whatever the input's dtype
    autocast_float32: frozenset[str]  # operations that autocast runs in float32 (of those a VGG uses)


CUDA = DeviceRules(
    "cuda",
    block=512,  # the CUDA caching allocator's smallest block (c10/cuda/CUDACachingAllocator.cpp, kMinBlockSize)
    fused_dropout=True,  # at::dropout takes native_dropout on CUDA
    foreach_optimizer=True,  # torch.optim's default on CUDA
    float32_norm_stats=True,  # cuDNN's and the CUDA kernels' statistics are float32
    autocast_float32=frozenset({"pow"}),  # autocast's CUDA float32 list
)
CPU = DeviceRules(
    "cpu",
    block=1,
    fused_dropout=False,  # at::dropout on the CPU: input * (bernoulli mask / (1 - p))
    foreach_optimizer=False,  # torch.optim's default on the CPU: one parameter at a time
    float32_norm_stats=False,  # native_batch_norm on the CPU: in the input's dtype (measured)
    autocast_float32=frozenset({"avg_pool3d"}),  # autocast's CPU float32 list
)
DEVICES: dict[str, DeviceRules] = {rules.name: rules for rules in (CUDA, CPU)}


@dataclass(eq=False)
class Storage:
    """One allocation: its bytes (rounded as the device rounds them) and who still holds it."""

    nbytes: int
    category: Category
    owner: str  # the layer (or phase) that allocated it
    holds: int = 1


@dataclass(eq=False)
class Tensor:
    """A tensor of the step: a view of a storage, with its dtype and where its gradient goes."""

    storage: Storage
    numel: int
    dtype: str
    grad_fn: Node | None = None
    param: Param | None = None  # set on a parameter itself

    @property
    def requires_grad(self) -> bool:
        return self.grad_fn is not None or self.param is not None


@dataclass(eq=False)
class Param:
    """A learnable tensor and its gradient (None after ``zero_grad(set_to_none=True)``)."""

    tensor: Tensor
    grad: Tensor | None = None


Backward = Callable[["Tape", "Node", Tensor], Sequence["Tensor | None"]]


@dataclass(eq=False)
class Node:
    """One operation of the autograd graph: what it keeps, and where the gradients of its inputs go."""

    sequence: int
    name: str
    layer: str
    backward: Backward
    inputs: list[Tensor | None]  # None: no gradient wanted
    edges: list[Node | Param | None]  # where each input's gradient goes (fixed here: ReLU in place moves grad_fn)
    saved: list[Storage]
    pending: int = 0  # gradients still to arrive
    buffer: Tensor | None = None  # the gradient of its output, summed over its uses

    def __lt__(self, other: Node) -> bool:  # the ready queue runs the latest node first
        return self.sequence > other.sequence


@dataclass
class Snapshot:
    """Bytes alive per category at one moment."""

    bytes: dict[Category, int] = field(default_factory=lambda: dict.fromkeys(Category, 0))

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


class Tape:
    """One process's training step, replayed: ``batch`` images per forward pass, ``amp`` (None, 'bf16',
    'fp16') for autocast, ``channels_last`` for that memory format, on a device's ``rules``."""

    def __init__(self, batch: int, *, amp: str | None = None, channels_last: bool = False, rules: DeviceRules = CUDA):
        self.batch, self.channels_last, self.rules = batch, channels_last, rules
        self.half = AMP_DTYPES[amp] if amp else None
        self.now = Snapshot()
        self.peak = Snapshot()
        self.peak_at = ""
        self.where = "setup"
        self.params: list[Param] = []
        self._sequence = 0
        self._autocast_cache: dict[int, Tensor] = {}
        self._in_backward = False
        self._in_optimizer = False
        self._live: set[Storage] = set()
        self._total = self._peak_total = 0  # now.total and peak.total, kept as they change

    # -- allocation ----------------------------------------------------------------------
    def allocation(self, numel: int, dtype: str) -> int:
        """The bytes ``numel`` elements of ``dtype`` take on the device."""
        nbytes = numel * DTYPE_BYTES[dtype]
        return math.ceil(nbytes / self.rules.block) * self.rules.block

    def new(self, numel: int, dtype: str, category: Category | None = None) -> Tensor:
        """A freshly allocated tensor, held once (by whoever asked for it)."""
        if category is None:
            category = (
                Category.OPTIMIZER
                if self._in_optimizer
                else Category.TEMPORARY
                if self._in_backward
                else Category.ACTIVATION
            )
        storage = Storage(self.allocation(numel, dtype), category, self.where)
        self._live.add(storage)
        self.now.bytes[category] += storage.nbytes
        self._total += storage.nbytes
        if self._total > self._peak_total:
            self._peak_total = self._total
            self.peak = Snapshot(dict(self.now.bytes))
            phase = "" if self._in_optimizer else "backward of " if self._in_backward else "forward of "
            self.peak_at = phase + self.where
        return Tensor(storage, numel, dtype)

    def hold(self, tensor: Tensor) -> Tensor:
        tensor.storage.holds += 1
        return tensor

    def drop(self, tensor: Tensor | None) -> None:
        """One holder lets go of ``tensor``; its memory is freed when none is left."""
        if tensor is not None:
            self._release(tensor.storage)

    def _release(self, storage: Storage) -> None:
        storage.holds -= 1
        if storage.holds == 0:
            self.now.bytes[storage.category] -= storage.nbytes
            self._total -= storage.nbytes
            self._live.discard(storage)

    def alive(self, category: Category) -> dict[str, int]:
        """Bytes of ``category`` alive now, by the layer (or phase) that allocated them."""
        out: dict[str, int] = {}
        for storage in self._live:
            if storage.category == category:
                out[storage.owner] = out.get(storage.owner, 0) + storage.nbytes
        return out

    def _recategorise(self, tensor: Tensor, category: Category) -> None:
        self.now.bytes[tensor.storage.category] -= tensor.storage.nbytes
        tensor.storage.category = category
        self.now.bytes[category] += tensor.storage.nbytes

    def param(self, numel: int) -> Param:
        """A float32 parameter (its storage lives as long as the model)."""
        param = Param(self.new(numel, FLOAT32, Category.PARAMETER))
        param.tensor.param = param
        self.params.append(param)
        return param

    def buffer(self, numel: int, dtype: str = FLOAT32) -> Tensor:
        return self.new(numel, dtype, Category.BUFFER)

    def activation(self, per_image: int, dtype: str) -> Tensor:
        return self.new(self.batch * per_image, dtype)

    # -- the autograd graph --------------------------------------------------------------
    def node(self, name: str, inputs: Iterable[Tensor | None], saved: Iterable[Tensor], backward: Backward) -> Node:
        """Record an operation whose output gradient ``backward`` turns into its inputs' gradients."""
        self._sequence += 1
        inputs = [t if t is not None and t.requires_grad else None for t in inputs]
        edges = [None if t is None else t.param or t.grad_fn for t in inputs]
        held = [self.hold(t).storage for t in saved]
        node = Node(self._sequence, name, self.where, backward, inputs, edges, held)
        for edge in edges:
            if isinstance(edge, Node):
                edge.pending += 1
        return node

    def output(self, tensor: Tensor, node: Node) -> Tensor:
        tensor.grad_fn = node
        return tensor

    def compute_dtype(self, op: str, *tensors: Tensor) -> str:
        """The dtype ``op`` computes in: autocast's float32 list, else the widest of its inputs."""
        if self.half and op in self.rules.autocast_float32:
            return FLOAT32
        return FLOAT32 if any(t.dtype == FLOAT32 for t in tensors) else tensors[0].dtype

    def cast(self, tensor: Tensor, dtype: str) -> Tensor:
        """``tensor.to(dtype)``: itself when it is of that dtype; else a copy, held once by the caller."""
        if tensor.dtype == dtype:
            return self.hold(tensor)
        copy = self.new(tensor.numel, dtype)
        if tensor.requires_grad:
            node = self.node("to_copy", [tensor], [], _cast_back(tensor.dtype))
            self.output(copy, node)
        return copy

    def autocast_weight(self, param: Param) -> Tensor:
        """The half copy autocast makes of a parameter, cached until the autocast region ends."""
        assert self.half is not None
        key = id(param)
        if key not in self._autocast_cache:
            self._autocast_cache[key] = self.cast(param.tensor, self.half)
        return self.hold(self._autocast_cache[key])

    def end_autocast(self) -> None:
        """Leaving ``torch.autocast``: its cache lets go of the weight copies (those saved stay)."""
        for copy in self._autocast_cache.values():
            self.drop(copy)
        self._autocast_cache.clear()

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``: the nodes in the engine's order, parameters' gradients accumulated."""
        assert loss.grad_fn is not None
        seed = self.new(loss.numel, loss.dtype)  # torch.ones_like(loss), held by Python until the end
        self._in_backward = True
        loss.grad_fn.buffer = self.hold(seed)
        ready = [loss.grad_fn]
        while ready:
            node = heapq.heappop(ready)
            for target in self._run(node):
                heapq.heappush(ready, target)
        self._in_backward = False
        self.drop(seed)
        self.where = "after backward"

    def _run(self, node: Node) -> list[Node]:
        self.where = node.layer
        grad, node.buffer = node.buffer, None
        assert grad is not None
        grads = list(node.backward(self, node, grad))
        for i, (g, target) in enumerate(zip(grads, node.inputs)):
            if g is not None and target is not None and g.dtype != target.dtype:  # the engine's validate_outputs
                grads[i] = self.new(target.numel, target.dtype)
                self.drop(g)
        self.drop(grad)
        for storage in node.saved:
            self._release(storage)
        node.saved = []
        ready = []
        for g, edge in zip(grads, node.edges):
            if g is None or edge is None:
                continue
            if isinstance(edge, Param):  # AccumulateGrad: steals a first gradient, adds into one there is
                if edge.grad is None:
                    edge.grad = self.hold(g)
                    self._recategorise(g, Category.GRADIENT)
                continue
            previous = edge
            if previous.buffer is None:
                previous.buffer = self.hold(g)
            else:  # a second use of the same tensor: the gradients are summed (out of place)
                total = self.new(g.numel, g.dtype)
                self.drop(previous.buffer)
                previous.buffer = total
            previous.pending -= 1
            if previous.pending == 0:
                ready.append(previous)
        for g in grads:
            self.drop(g)
        return ready

    # -- the optimizer -------------------------------------------------------------------
    def momentum_buffers(self) -> list[Tensor]:
        """SGD's momentum: one float32 buffer per parameter, there from the second step on."""
        return [self.new(p.tensor.numel, FLOAT32, Category.OPTIMIZER) for p in self.params]

    def sgd_step(self, weight_decay: bool = True) -> None:
        """``optimizer.step()`` of SGD with momentum: weight decay adds into a new tensor per parameter
        (``grad.add(param, alpha=wd)``), all at once with foreach kernels, else one at a time."""
        self.where, self._in_optimizer = "optimizer step", True
        if weight_decay:
            if self.rules.foreach_optimizer:
                scratch = [self.new(p.tensor.numel, FLOAT32) for p in self.params if p.grad is not None]
                for tensor in scratch:
                    self.drop(tensor)
            else:
                for p in self.params:
                    if p.grad is not None:
                        self.drop(self.new(p.tensor.numel, FLOAT32))
        self._in_optimizer = False

    def zero_grad(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)``."""
        for p in self.params:
            self.drop(p.grad)
            p.grad = None

    # -- operations: what each keeps for backward, and what its backward allocates -------------
    def conv(self, x: Tensor, weight: Param, bias: Param, out_per_image: int, name: str = "convolution") -> Tensor:
        """A convolution or linear layer (``addmm``): keeps its input and weight. Under autocast it runs
        on half copies of its input (kept) and of its weight and bias (cached)."""
        w, b = weight.tensor, bias.tensor
        if self.half:
            b, w, x = self.autocast_weight(bias), self.autocast_weight(weight), self.cast(x, self.half)
        else:
            w, b, x = self.hold(w), self.hold(b), self.hold(x)
        y = self.activation(out_per_image, x.dtype)
        node = self.node(name, [x, w, b], [x, w], _conv_back)
        for t in (x, w, b):
            self.drop(t)
        return self.output(y, node)

    def relu_(self, x: Tensor) -> Tensor:
        """ReLU in place: nothing allocated; keeps its output for the backward."""
        node = self.node("relu", [x], [x], _same_size_back)
        return self.output(x, node)

    def batch_norm(self, x: Tensor, weight: Param, bias: Param, channels: int) -> Tensor:
        """Batch norm in training mode: keeps its input and the batch's mean and inverse std."""
        y = self.activation(x.numel // self.batch, x.dtype)
        stats = FLOAT32 if self.rules.float32_norm_stats else x.dtype
        mean, invstd = self.new(channels, stats), self.new(channels, stats)
        node = self.node("batch_norm", [x, weight.tensor, bias.tensor], [x, mean, invstd], _batch_norm_back)
        self.drop(mean)
        self.drop(invstd)
        return self.output(y, node)

    def max_pool(self, x: Tensor, out_per_image: int) -> Tensor:
        """Max pooling: keeps its input and the int64 index of each maximum."""
        y = self.activation(out_per_image, x.dtype)
        indices = self.activation(out_per_image, "int64")
        node = self.node("max_pool2d", [x], [x, indices], _same_size_back)
        self.drop(indices)
        return self.output(y, node)

    def dropout(self, x: Tensor) -> Tensor:
        """Dropout in training mode: keeps its mask (bool with the fused kernel, else the input's dtype)."""
        per_image = x.numel // self.batch
        if self.rules.fused_dropout:
            y, mask = self.activation(per_image, x.dtype), self.activation(per_image, "bool")
        else:
            mask = self.activation(per_image, x.dtype)
            y = self.activation(per_image, x.dtype)
        node = self.node("dropout", [x], [mask], _same_size_back)
        self.drop(mask)
        return self.output(y, node)

    def flatten(self, x: Tensor, channels: int, side: int) -> Tensor:
        """``torch.flatten(x, 1)``: a view, but a copy of a channels-last map (its order is not NCHW's)."""
        if not (self.channels_last and channels > 1 and side > 1):
            return self.hold(x)
        y = self.new(x.numel, x.dtype)
        node = self.node("clone", [x], [], _pass_back)
        return self.output(y, node)

    def square(self, x: Tensor) -> Tensor:
        """``x * x``: keeps x (once for each operand)."""
        y = self.new(x.numel, x.dtype)
        return self.output(y, self.node("mul", [x, x], [x, x], _square_back))

    def pad(self, x: Tensor, per_image: int) -> Tensor:
        """Zero padding to ``per_image`` elements an image: keeps nothing; its backward slices (a copy)."""
        y = self.activation(per_image, x.dtype)
        return self.output(y, self.node("constant_pad_nd", [x], [], _same_size_back))

    def avg_pool(self, x: Tensor, per_image: int) -> Tensor:
        """Average pooling to ``per_image`` elements an image: keeps its input (cast to float32 where
        autocast says)."""
        x = self.cast(x, self.compute_dtype("avg_pool3d", x))
        y = self.activation(per_image, x.dtype)
        node = self.node("avg_pool3d", [x], [x], _same_size_back)
        self.drop(x)
        return self.output(y, node)

    def scale(self, x: Tensor) -> Tensor:
        """``x * scalar``: keeps nothing; its backward allocates the scaled gradient."""
        y = self.new(x.numel, x.dtype)
        return self.output(y, self.node("mul", [x], [], _same_size_back))

    def shift(self, x: Tensor) -> Tensor:
        """``x + scalar``: keeps nothing; its backward passes the gradient on as it is."""
        y = self.new(x.numel, x.dtype)
        return self.output(y, self.node("add", [x], [], _pass_back))

    def power(self, x: Tensor) -> Tensor:
        """``x ** scalar``: keeps its base (cast to float32 where autocast says)."""
        x = self.cast(x, self.compute_dtype("pow", x))
        y = self.new(x.numel, x.dtype)
        node = self.node("pow", [x], [x], _power_back)
        self.drop(x)
        return self.output(y, node)

    def divide(self, x: Tensor, d: Tensor) -> Tensor:
        """``x / d``: keeps both."""
        y = self.new(x.numel, self.compute_dtype("div", x, d))
        return self.output(y, self.node("div", [x, d], [x, d], _divide_back))

    def cross_entropy(self, scores: Tensor) -> Tensor:
        """The trainer's loss, ``cross_entropy(scores.float(), labels, reduction='sum') / share``:
        log-softmax keeps its output, nll_loss its total weight."""
        scores = self.cast(scores, FLOAT32)
        log_p = self.new(scores.numel, FLOAT32)
        log_softmax = self.output(log_p, self.node("log_softmax", [scores], [log_p], _same_size_back))
        summed, weight = self.new(1, FLOAT32), self.new(1, FLOAT32)
        self.output(summed, self.node("nll_loss", [log_softmax], [weight], _nll_back(scores.numel)))
        self.drop(weight)
        self.drop(scores)
        self.drop(log_p)
        loss = self.new(1, FLOAT32)
        self.output(loss, self.node("div", [summed], [], _same_size_back))
        self.drop(summed)
        return loss


# -- backward formulas: each input's gradient, and the scratch the formula takes on the way ---------


def _like(tape: Tape, t: Tensor | None, dtype: str | None = None) -> Tensor | None:
    return tape.new(t.numel, dtype or t.dtype) if t is not None else None


def _conv_back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
    """convolution_backward and addmm's: the input's gradient (none for the image), the weight's, the bias'."""
    return [_like(tape, t) for t in node.inputs]


_batch_norm_back = _conv_back  # native_batch_norm_backward: the input's, the scale's and the shift's gradients


def _same_size_back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
    """One new gradient the size of the input (ReLU, pooling, dropout, padding, scaling, log-softmax)."""
    return [_like(tape, node.inputs[0], grad.dtype)]


def _pass_back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
    """The gradient passed on as it is (adding a constant; a copy to another memory format)."""
    return [tape.hold(grad)]


def _square_back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
    """``x * x``: ``grad * x`` for each operand, summed where they meet."""
    return [_like(tape, t, grad.dtype) for t in node.inputs]


def _power_back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
    """``grad * (e * x ** (e - 1))``: two scratch tensors on the way."""
    x = node.inputs[0]
    if x is None:
        return [None]
    scratch = [tape.new(x.numel, x.dtype), tape.new(x.numel, x.dtype)]
    result = tape.new(x.numel, grad.dtype)
    for t in scratch:
        tape.drop(t)
    return [result]


def _divide_back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
    """``x / d``: the divisor's ``-grad * ((x / d) / d)`` (three scratch tensors), then ``grad / d``."""
    x, d = node.inputs
    grad_d = None
    if d is not None:
        scratch = [tape.new(grad.numel, grad.dtype) for _ in range(3)]
        grad_d = tape.new(grad.numel, grad.dtype)
        for t in reversed(scratch):
            tape.drop(t)
    grad_x = tape.new(grad.numel, grad.dtype) if x is not None else None
    return [grad_x, grad_d]


def _cast_back(dtype: str) -> Backward:
    """``to(dtype)``'s backward: the gradient cast back to the source's dtype."""

    def back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
        return [tape.new(grad.numel, dtype)]

    return back


def _nll_back(numel: int) -> Backward:
    """nll_loss's backward: a gradient the size of the log-probabilities."""

    def back(tape: Tape, node: Node, grad: Tensor) -> list[Tensor | None]:
        return [tape.new(numel, FLOAT32)]

    return back
