"""The layer kinds of the language: one class per kind, and the registry that finds them.

Everything vggspec knows about a kind lives in its class: the word that spells it in a
``.vgg`` file (``conv3-64``), the attributes it accepts (``[bn]``), its output shape,
parameters, multiply-accumulates and receptive-field step. To add a kind, write one class
here and decorate it with :func:`register`; the parser, formatter, analyzer and CLI find it
through :data:`LAYER_KINDS`.

Conventions (shapes are ``(channels, height, width)``; after a fully-connected layer ``(F, 1, 1)``):

* Every weight layer but the classifier is followed by ReLU, as in the paper (no own entry).
* ``params`` counts learnable parameters: weights plus biases (plus batch norm's scale and
  shift); batch norm's running statistics are buffers, not parameters.
* ``macs`` counts the multiply-accumulates of convolutions and fully-connected layers,
  biases not counted: fvcore's convention ("one fused multiply-add is one flop").
  Pooling, LRN, batch norm, ReLU and soft-max count zero. FLOPs = 2 × MACs.
* ``initial_rms`` carries the scale of the signal through the freshly initialised network
  (biases zero, weights of a given std, zero-mean inputs), for
  :func:`vggspec.spec.analysis.initial_scale`: one rule per kind, each within a small factor of a
  real forward pass (tested).
* ``record_training`` replays the layer's forward pass of a training step on a
  :class:`vggspec.spec.tape.Tape`: the operations its torch module runs, in order, each recording what
  it allocates and keeps for the backward pass (``parameter_numels`` and ``buffer_numels`` give the
  module's tensors, in its order). The training-step memory of :mod:`vggspec.budget` is built on it.
* The receptive-field step of a layer is ``(kernel, stride, padding)`` along one axis, for
  the recurrences of Araujo et al. (Distill 2019). A fully-connected layer behaves like a
  convolution whose kernel covers its whole input map (that is what it becomes in dense
  evaluation).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from torch import nn

    from .tape import Param, Tape, Tensor

Shape = tuple[int, int, int]
"""A tensor shape without the batch: (channels, height, width)."""

WeightStd = Callable[[int, int, bool], float]
"""(fan_in, fan_out, is_conv) → the std of a layer's initial weights (:func:`vggspec.spec.initialisation.init_std`)."""

RELU_RMS = 1 / math.sqrt(2)  # a ReLU keeps half of a zero-mean signal's energy
MAXPOOL_RMS = 1.2  # a 2×2 max of ReLU outputs at init (fitted to A and D); 1.76 were they independent

MAX_WIDTH = 1 << 20  # channels or features: generous, but keeps numbers printable
MAX_KERNEL = 255


class LayerSpec(BaseModel):
    """One layer of a spec, with the source position it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    line: int = Field(default=0, description="1-based source line (0 when built in code)")
    column: int = Field(default=0, description="1-based source column")

    # -- the language ------------------------------------------------------------------
    WORD: ClassVar[re.Pattern[str]]
    """Full match of the layer word; named groups become fields."""
    EXAMPLES: ClassVar[tuple[str, ...]]
    """Spellings shown in docs and offered by 'did you mean'."""
    ATTRIBUTES: ClassVar[tuple[str, ...]] = ()
    """Field names settable as ``[name=value]`` after the word."""
    LOOSE: ClassVar[re.Pattern[str] | None] = None
    """A near-miss spelling (``conv3_64``, ``FC4096``) whose groups rebuild the right word."""
    SPATIAL: ClassVar[bool] = True
    """Works on feature maps, so it must come before the classifier."""
    NAME: ClassVar[str]
    """Caffe-style layer name pattern: {stage}, {nth} are filled in (conv1_1, pool1, fc6)."""
    ENDS_STAGE: ClassVar[bool] = False
    """The next layer starts a new stage (pooling, and each fully-connected layer)."""

    @classmethod
    def fields_from_word(cls, match: re.Match[str]) -> dict[str, object]:
        return {k: int(v) for k, v in match.groupdict().items()}

    @classmethod
    def suggest(cls, word: str) -> str | None:
        """The correct spelling of a near miss, or None."""
        if cls.LOOSE is None:
            return None
        m = cls.LOOSE.fullmatch(word)
        return cls.EXAMPLES[0].format(**m.groupdict()) if m else None

    def word(self) -> str:
        """The canonical spelling in a spec (what the formatter prints)."""
        raise NotImplementedError

    def attributes(self) -> dict[str, object]:
        """Attributes that differ from their defaults (what the formatter prints)."""
        out = {}
        for name in self.ATTRIBUTES:
            value = getattr(self, name)
            if value != type(self).model_fields[name].default:
                out[name] = value
        return out

    def same_as(self, other: object) -> bool:
        """Equal as layers, wherever they were written."""
        return isinstance(other, LayerSpec) and _semantic(self) == _semantic(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerSpec):
            return NotImplemented
        return self.same_as(other)

    def __hash__(self) -> int:
        return hash(tuple(_semantic(self).items()))

    # -- analysis ----------------------------------------------------------------------
    def output_shape(self, x: Shape) -> Shape:
        return x

    def params(self, x: Shape) -> int:
        return 0

    def macs(self, x: Shape, y: Shape) -> int:
        return 0

    def window(self, x: Shape) -> tuple[int, int, int]:
        """(kernel, stride, padding) along one spatial axis, for receptive fields."""
        return (1, 1, 0)

    def min_input(self, out: int) -> int:
        """Smallest input side that still gives an output side of ``out``."""
        return out

    def initial_rms(self, x: Shape, rms: float, weight_std: WeightStd, node: Mapping[str, Any]) -> float:
        """The RMS of the output at initialisation in training mode, the input's being ``rms``.

        ``node`` is the layer's node in the layer graph, as for :meth:`to_torch`.
        """
        return rms

    # -- a training step, replayed without torch (vggspec.tape) ---------------------------
    def parameter_numels(self, x: Shape) -> tuple[int, ...]:
        """The sizes of the module's parameter tensors, in its order (they sum to :meth:`params`)."""
        return ()

    def buffer_numels(self, x: Shape) -> tuple[tuple[int, str], ...]:
        """The module's buffers (not learnt: batch norm's running statistics): (elements, dtype) each."""
        return ()

    def record_training(
        self, tape: Tape, x: Tensor, shape: Shape, params: Sequence[Param], node: Mapping[str, Any]
    ) -> Tensor:
        """Replay the module's forward pass in training mode on ``tape``: input ``x`` of ``shape``
        (per image), ``params`` as :meth:`parameter_numels` lists them. Returns the output, held once;
        ``x`` stays held by the caller, as ``nn.Sequential`` holds a module's input until it returns."""
        raise NotImplementedError(f"{self.kind}: no training-step rule")

    # -- PyTorch (imported here only, when a network is compiled) ------------------------
    def to_torch(self, x: Shape, node: Mapping[str, Any]) -> nn.Module | None:
        """The module computing this layer on inputs of shape ``x``; None when there is none.

        ``node`` is the layer's node in the layer graph (``dropout``, ``classifier`` for FC).
        """
        return None

    def __str__(self) -> str:
        return self.word()


def _taps_inside(side: int, kernel: int) -> float:
    """How many of a zero-padded kernel's taps along one axis fall inside the map, on average."""
    pad = kernel // 2
    return sum(min(i + pad, side - 1) - max(i - pad, 0) + 1 for i in range(side)) / side


def _semantic(layer: LayerSpec) -> dict[str, object]:
    return layer.model_dump(exclude={"line", "column"})


LAYER_KINDS: dict[str, type[LayerSpec]] = {}
"""Every layer kind of the language, by its ``kind`` name."""


def register(cls: type[LayerSpec]) -> type[LayerSpec]:
    LAYER_KINDS[cls.model_fields["kind"].default] = cls
    return cls


def _in_range(what: str, value: int, high: int = MAX_WIDTH) -> int:
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    if value > high:
        raise ValueError(f"{what} of {value:,} is larger than vggspec supports ({high:,})")
    return value


@register
class Conv(LayerSpec):
    """``conv<k>-<C>``: a k×k convolution to C channels, stride 1, padding k//2 (size kept), ReLU.

    ``[bn]`` puts batch normalisation between the convolution and the ReLU (torchvision's
    ``vgg*_bn``).
    """

    kind: Literal["conv"] = "conv"
    kernel: int
    channels: int
    bn: bool = False

    WORD = re.compile(r"conv(?P<kernel>[0-9]+)-(?P<channels>[0-9]+)")
    EXAMPLES = ("conv{kernel}-{channels}", "conv3-64", "conv1-256", "conv7-512")
    ATTRIBUTES = ("bn",)
    LOOSE = re.compile(
        r"(?i:conv(?:olution)?)\s*[_-]?(?P<kernel>[0-9]+)(?:x[0-9]+)?\s*[_\-x×:/]?\s*(?P<channels>[0-9]+)"
    )
    NAME = "conv{stage}_{nth}"

    @field_validator("kernel")
    @classmethod
    def _odd_kernel(cls, k: int) -> int:
        if k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel size must be odd (1, 3, 5, ...) so that padding {k}//2 keeps the "
                f"spatial size; got {k}"
            )
        if k > MAX_KERNEL:
            raise ValueError(f"kernel size {k} is larger than vggspec supports ({MAX_KERNEL})")
        return k

    @field_validator("channels")
    @classmethod
    def _channels(cls, c: int) -> int:
        return _in_range("the channel count", c)

    def word(self) -> str:
        return f"conv{self.kernel}-{self.channels}"

    def output_shape(self, x: Shape) -> Shape:
        return (self.channels, x[1], x[2])

    def params(self, x: Shape) -> int:
        weights = self.kernel * self.kernel * x[0] * self.channels
        return weights + self.channels + (2 * self.channels if self.bn else 0)

    def macs(self, x: Shape, y: Shape) -> int:
        return self.kernel * self.kernel * x[0] * y[0] * y[1] * y[2]

    def window(self, x: Shape) -> tuple[int, int, int]:
        return (self.kernel, 1, self.kernel // 2)

    def initial_rms(self, x: Shape, rms: float, weight_std: WeightStd, node: Mapping[str, Any]) -> float:
        fan_in, fan_out = x[0] * self.kernel**2, self.channels * self.kernel**2
        # Zero padding: on a small map many taps fall outside (a 3×3 kernel on 2×2 sees 4 of 9).
        inside = x[0] * _taps_inside(x[1], self.kernel) * _taps_inside(x[2], self.kernel)
        rms *= math.sqrt(inside) * weight_std(fan_in, fan_out, True)
        if self.bn:
            rms = 1.0  # batch norm standardises each channel (γ = 1, β = 0 at the start)
        return rms * RELU_RMS

    def parameter_numels(self, x: Shape) -> tuple[int, ...]:
        conv = (self.kernel * self.kernel * x[0] * self.channels, self.channels)
        return conv + ((self.channels, self.channels) if self.bn else ())

    def buffer_numels(self, x: Shape) -> tuple[tuple[int, str], ...]:
        # running mean and variance, and the int64 count of batches seen
        return ((self.channels, "float32"), (self.channels, "float32"), (1, "int64")) if self.bn else ()

    def record_training(
        self, tape: Tape, x: Tensor, shape: Shape, params: Sequence[Param], node: Mapping[str, Any]
    ) -> Tensor:
        y = tape.conv(x, params[0], params[1], math.prod(self.output_shape(shape)))
        if self.bn:  # keeps the convolution's output; its own output goes on to the ReLU
            normalised = tape.batch_norm(y, params[2], params[3], self.channels)
            tape.drop(y)
            y = normalised
        return tape.relu_(y)

    def to_torch(self, x: Shape, node: Mapping[str, Any]) -> nn.Module:
        from torch import nn

        parts: list[tuple[str, nn.Module]] = [
            ("conv", nn.Conv2d(x[0], self.channels, self.kernel, padding=self.kernel // 2))
        ]
        if self.bn:
            parts.append(("bn", nn.BatchNorm2d(self.channels)))
        parts.append(("relu", nn.ReLU(inplace=True)))
        return nn.Sequential(OrderedDict(parts))


@register
class MaxPool(LayerSpec):
    """``maxpool``: max pooling, 2×2 window, stride 2 (``[size=3, stride=2]`` to change)."""

    kind: Literal["maxpool"] = "maxpool"
    size: int = 2
    stride: int = 2

    WORD = re.compile(r"maxpool")
    EXAMPLES = ("maxpool",)
    ATTRIBUTES = ("size", "stride")
    NAME = "pool{stage}"
    ENDS_STAGE = True

    @field_validator("size", "stride")
    @classmethod
    def _window(cls, v: int) -> int:
        return _in_range("the pooling window and stride", v, MAX_KERNEL)

    def word(self) -> str:
        return "maxpool"

    def output_shape(self, x: Shape) -> Shape:
        return (x[0], self._side(x[1]), self._side(x[2]))

    def _side(self, n: int) -> int:
        return (n - self.size) // self.stride + 1 if n >= self.size else 0

    def window(self, x: Shape) -> tuple[int, int, int]:
        return (self.size, self.stride, 0)

    def min_input(self, out: int) -> int:
        return (out - 1) * self.stride + self.size

    def initial_rms(self, x: Shape, rms: float, weight_std: WeightStd, node: Mapping[str, Any]) -> float:
        return rms * MAXPOOL_RMS

    def record_training(
        self, tape: Tape, x: Tensor, shape: Shape, params: Sequence[Param], node: Mapping[str, Any]
    ) -> Tensor:
        return tape.max_pool(x, math.prod(self.output_shape(shape)))

    def to_torch(self, x: Shape, node: Mapping[str, Any]) -> nn.Module:
        from torch import nn

        return nn.MaxPool2d(self.size, self.stride)


@register
class LRN(LayerSpec):
    """``LRN``: local response normalisation across channels (A-LRN).

    b_c = a_c · (k + α/n · Σ a_j²)^(−β) over the n channels around c. The spec's ``alpha`` is
    the paper's α = 1e-4, and vggspec, like Caffe and PyTorch's ``LocalResponseNorm``,
    divides it by n. Defaults are Krizhevsky et al.'s: n=5, α=1e-4, β=0.75, k=2.
    """

    kind: Literal["lrn"] = "lrn"
    n: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    WORD = re.compile(r"LRN")
    EXAMPLES = ("LRN",)
    ATTRIBUTES = ("n", "alpha", "beta", "k")
    NAME = "norm{stage}"

    @field_validator("n")
    @classmethod
    def _size(cls, n: int) -> int:
        return _in_range("the LRN size n", n, MAX_KERNEL)

    @field_validator("alpha", "beta", "k")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"LRN parameters must be finite numbers, got {v}")
        return v

    def word(self) -> str:
        return "LRN"

    def initial_rms(self, x: Shape, rms: float, weight_std: WeightStd, node: Mapping[str, Any]) -> float:
        return rms / (self.k + self.alpha * rms**2) ** self.beta  # n channels of about rms² each

    def record_training(
        self, tape: Tape, x: Tensor, shape: Shape, params: Sequence[Param], node: Mapping[str, Any]
    ) -> Tensor:
        """``F.local_response_norm``, statement by statement: x², zero-padded by n − 1 channels, averaged
        over n channels (avg_pool3d), scaled, shifted, raised to β; then x divided by that."""
        c, h, w = shape
        squares = tape.square(x)
        padded = tape.pad(squares, (c + self.n - 1) * h * w)
        tape.drop(squares)
        mean = tape.avg_pool(padded, c * h * w)
        tape.drop(padded)
        scaled = tape.scale(mean)
        shifted = tape.shift(scaled)
        tape.drop(scaled)
        divisor = tape.power(shifted)
        tape.drop(shifted)
        tape.drop(mean)
        y = tape.divide(x, divisor)
        tape.drop(divisor)
        return y

    def to_torch(self, x: Shape, node: Mapping[str, Any]) -> nn.Module:
        from torch import nn

        return nn.LocalResponseNorm(self.n, alpha=self.alpha, beta=self.beta, k=self.k)


@register
class FC(LayerSpec):
    """``FC-<F>``: a fully-connected layer with F outputs, then ReLU and dropout.

    The last FC layer is the classifier: no ReLU, no dropout, F = the number of classes.
    Dropout defaults to the paper's 0.5 on every other FC layer; ``[dropout=0]`` turns it off.

    For dense evaluation (Section 3.2) :meth:`Spec.dense` sets ``kernel``: the layer is then
    applied as a ``kernel`` × ``kernel`` convolution without padding (the first FC layer's kernel
    is the map size that reaches it at the training input, the others' 1), so it slides over
    larger maps and yields a class score map. Not written in specs.
    """

    kind: Literal["fc"] = "fc"
    features: int
    dropout: float | None = Field(default=None, description="as written; None: the paper's default")
    kernel: int | None = Field(default=None, description="dense evaluation: applied as a k×k convolution")

    WORD = re.compile(r"FC-(?P<features>[0-9]+)")
    EXAMPLES = ("FC-{features}", "FC-4096", "FC-1000")
    ATTRIBUTES = ("dropout",)
    LOOSE = re.compile(r"(?i:fc|fully[-_]?connected|linear|dense)\s*[_\-:]?\s*(?P<features>[0-9]+)")
    SPATIAL = False
    NAME = "fc{stage}"
    ENDS_STAGE = True

    @field_validator("features")
    @classmethod
    def _features(cls, f: int) -> int:
        return _in_range("the output count", f)

    @field_validator("dropout")
    @classmethod
    def _probability(cls, p: float | None) -> float | None:
        if p is not None and not 0.0 <= p < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {p}")
        return p

    @staticmethod
    def default_dropout(is_classifier: bool) -> float:
        return 0.0 if is_classifier else 0.5

    def word(self) -> str:
        return f"FC-{self.features}"

    def _kernel(self, x: Shape) -> tuple[int, int]:
        return (self.kernel, self.kernel) if self.kernel else (x[1], x[2])

    def output_shape(self, x: Shape) -> Shape:
        kh, kw = self._kernel(x)
        return (self.features, x[1] - kh + 1, x[2] - kw + 1)

    def params(self, x: Shape) -> int:
        kh, kw = self._kernel(x)
        return x[0] * kh * kw * self.features + self.features

    def macs(self, x: Shape, y: Shape) -> int:
        kh, kw = self._kernel(x)
        return x[0] * kh * kw * self.features * y[1] * y[2]

    def window(self, x: Shape) -> tuple[int, int, int]:
        return (self._kernel(x)[0], 1, 0)

    def min_input(self, out: int) -> int:
        # Fully connected, it takes any map; applied densely, its kernel must fit.
        return out + self.kernel - 1 if self.kernel else 1

    def initial_rms(self, x: Shape, rms: float, weight_std: WeightStd, node: Mapping[str, Any]) -> float:
        kh, kw = self._kernel(x)
        fan_in = x[0] * kh * kw
        fan_out = self.features * (kh * kw if self.kernel else 1)  # a Linear layer, or applied densely a conv
        rms *= math.sqrt(fan_in) * weight_std(fan_in, fan_out, bool(self.kernel))
        if not node["classifier"]:
            rms *= RELU_RMS
        return rms / math.sqrt(1 - node["dropout"])  # inverted dropout scales the kept units up

    def parameter_numels(self, x: Shape) -> tuple[int, ...]:
        kh, kw = self._kernel(x)
        return (x[0] * kh * kw * self.features, self.features)

    def record_training(
        self, tape: Tape, x: Tensor, shape: Shape, params: Sequence[Param], node: Mapping[str, Any]
    ) -> Tensor:
        y = tape.conv(x, params[0], params[1], math.prod(self.output_shape(shape)), name="addmm")
        if not node["classifier"]:
            y = tape.relu_(y)
        if node["dropout"] > 0:
            dropped = tape.dropout(y)
            tape.drop(y)
            y = dropped
        return y

    def to_torch(self, x: Shape, node: Mapping[str, Any]) -> nn.Module:
        from torch import nn

        if self.kernel:
            layer: nn.Module = nn.Conv2d(x[0], self.features, self.kernel)
        else:
            layer = nn.Linear(x[0] * x[1] * x[2], self.features)
        parts: list[tuple[str, nn.Module]] = [("fc", layer)]
        if not node["classifier"]:
            parts.append(("relu", nn.ReLU(inplace=True)))
        if node["dropout"] > 0:
            parts.append(("dropout", nn.Dropout(node["dropout"])))
        return nn.Sequential(OrderedDict(parts))


@register
class SoftMax(LayerSpec):
    """``soft-max``: turns the classifier's scores into class posteriors (applied by the loss)."""

    kind: Literal["softmax"] = "softmax"

    WORD = re.compile(r"soft-max")
    EXAMPLES = ("soft-max",)
    SPATIAL = False
    NAME = "prob"

    def word(self) -> str:
        return "soft-max"

    def record_training(
        self, tape: Tape, x: Tensor, shape: Shape, params: Sequence[Param], node: Mapping[str, Any]
    ) -> Tensor:
        return tape.hold(x)  # no module: the loss applies the soft-max (Tape.cross_entropy)


def kind_for_word(word: str) -> tuple[type[LayerSpec], re.Match[str]] | None:
    for cls in LAYER_KINDS.values():
        m = cls.WORD.fullmatch(word)
        if m:
            return cls, m
    return None


def suggest_word(word: str) -> str | None:
    """A correct layer word close to ``word``: 'maxpol' → 'maxpool', 'FC4096' → 'FC-4096'."""
    from ..errors import did_you_mean

    for cls in LAYER_KINDS.values():
        fixed = cls.suggest(word)
        if fixed:
            return fixed
    # A repetition glued to the word: conv3-64x2
    glued = re.fullmatch(r"(.+?)[x×]([0-9]+)", word)
    if glued and kind_for_word(glued.group(1)):
        return f"{glued.group(1)} ×{glued.group(2)}"
    fixed_words = [cls.EXAMPLES[0] for cls in LAYER_KINDS.values() if "{" not in cls.EXAMPLES[0]]
    return did_you_mean(word, fixed_words)


def spelling_examples() -> list[str]:
    return [ex for cls in LAYER_KINDS.values() for ex in cls.EXAMPLES if "{" not in ex]
