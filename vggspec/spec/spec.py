"""The parsed spec: a network as typed, frozen data (pydantic), each layer with its source position.

A spec records what the file says, no more: ``FC-4096`` without ``[dropout=…]`` keeps
``dropout=None`` ("the paper's default"), which :meth:`Spec.dropout` resolves. Two specs are
equal when they describe the same network, wherever and however it was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .layers import FC, LAYER_KINDS, Shape

MAX_INPUT = 1 << 16

Layer = Annotated[Union[tuple(LAYER_KINDS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]
"""Any registered layer kind (a pydantic discriminated union on ``kind``)."""

COLOUR_MODELS = {"rgb": 3, "gray": 1, "grey": 1, "grayscale": 1, "greyscale": 1}


class InputShape(BaseModel):
    """The input image: square, ``size`` pixels a side, ``channels`` channels (default 224×224 RGB)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: int = 3
    size: int = 224
    line: int = 0
    column: int = 0

    @field_validator("channels", "size")
    @classmethod
    def _positive(cls, v: int) -> int:
        if not 1 <= v <= MAX_INPUT:
            raise ValueError(f"input sizes and channel counts must be between 1 and {MAX_INPUT:,}, got {v:,}")
        return v

    @property
    def shape(self) -> Shape:
        return (self.channels, self.size, self.size)

    def describe(self) -> str:
        """As the formatter writes it: ``224x224 RGB``, ``28x28 gray``, ``64x64 5 channels``."""
        colour = {3: "RGB", 1: "gray"}.get(self.channels, f"{self.channels} channels")
        return f"{self.size}x{self.size} {colour}"

    def same_as(self, other: InputShape) -> bool:
        return (self.channels, self.size) == (other.channels, other.size)


class Comment(BaseModel):
    """A ``#`` comment, kept so the formatter can put it back (not part of the network)."""

    model_config = ConfigDict(frozen=True)

    line: int
    text: str
    trailing: bool = False  # on the same line as a statement
    leading: bool = False  # before the first statement: the file's header


class Spec(BaseModel):
    """One network, as a ``.vgg`` file describes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    input: InputShape = InputShape()
    layers: tuple[Layer, ...] = ()
    source: str | None = Field(default=None, description="the file it was loaded from")
    comments: tuple[Comment, ...] = ()
    text: str | None = Field(
        default=None, exclude=True, repr=False, description="the source text it was parsed from, for error reports"
    )

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.source:
            return Path(self.source).stem
        return "network"

    @property
    def classifier_index(self) -> int | None:
        """The index of the classifier, the last FC layer (FC-1000 in the paper), whose outputs are the classes."""
        return max((i for i, layer in enumerate(self.layers) if isinstance(layer, FC)), default=None)

    @property
    def classifier(self) -> FC | None:
        """The last FC layer, whose outputs are the classes (None while the spec has no FC layer)."""
        index = self.classifier_index
        return None if index is None else self.layers[index]

    @property
    def first_fc_index(self) -> int | None:
        """The index of the first FC layer, where the feature map is flattened (fc6 in the paper)."""
        return next((i for i, layer in enumerate(self.layers) if isinstance(layer, FC)), None)

    def dropout(self, index: int) -> float:
        """Dropout after layer ``index`` (an FC layer): as written, or the paper's default."""
        layer = self.layers[index]
        assert isinstance(layer, FC)
        if layer.dropout is not None:
            return layer.dropout
        return FC.default_dropout(index == self.classifier_index)

    @property
    def is_dense(self) -> bool:
        return any(isinstance(layer, FC) and layer.kernel for layer in self.layers)

    def with_input_size(self, size: int) -> Spec:
        """The same network declared for ``size``×``size`` inputs."""
        return self.model_copy(update={"input": self.input.model_copy(update={"size": size})})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        return (
            self.name == other.name
            and self.input.same_as(other.input)
            and len(self.layers) == len(other.layers)
            and all(a.same_as(b) for a, b in zip(self.layers, other.layers))
        )

    def __hash__(self) -> int:
        return hash((self.name, self.input.channels, self.input.size, tuple(layer.word() for layer in self.layers)))
