"""The parsed spec: a network as typed, frozen data (pydantic), each layer with its source position.

A spec records what the file says, no more: ``FC-4096`` without ``[dropout=…]`` keeps
``dropout=None`` ("the paper's default"), which :meth:`Spec.dropout` resolves. Two specs are
equal when they describe the same network, wherever and however it was written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import SpecError
from .layers import FC, LAYER_KINDS, Shape

MAX_INPUT = 1 << 16

Layer = Annotated[Union[tuple(LAYER_KINDS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]
"""Any registered layer kind (a pydantic discriminated union on ``kind``)."""

COLOUR_MODELS = {"rgb": 3, "gray": 1, "grey": 1, "grayscale": 1, "greyscale": 1}

_LAYER_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-.]*")  # grammar.lark's LAYER_WORD: a layer as written


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
        """The same network declared for ``size`` × ``size`` inputs."""
        return self.model_copy(update={"input": self.input.model_copy(update={"size": size})})

    def with_classes(self, classes: int, *, note: str | None = None) -> Spec:
        """The same network classifying into ``classes`` classes: its classifier (the last FC layer) with that many
        outputs, where it was written (errors still point at it), and the source text saying so, comments kept.
        ``note``: a comment for the classifier's line, saying why (``trained with --num-classes 4``). A spec that
        classifies into ``classes`` already is returned as it is."""
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise SpecError(f"a network classifies into 1 class or more, not {classes!r}")
        index = self.classifier_index
        if index is None:
            raise SpecError(
                f"{self.display_name} has no fully-connected layer: no classifier whose outputs would be its classes",
                hint=f"end the network with one: ..., FC-4096, FC-{classes}, soft-max",
            )
        old: FC = self.layers[index]
        if old.features == classes:
            return self
        try:
            new = FC.model_validate({**old.model_dump(), "features": classes})
        except ValidationError as err:
            reason = err.errors()[0]["msg"].removeprefix("Value error, ")
            raise SpecError(f"{self.display_name} cannot classify into {classes:,} classes: {reason}") from None
        layers = list(self.layers)
        layers[index] = new
        # FC-10 ×2: one word for two layers; the text cannot say the second is another, so it is left out
        repeated = any(i != index and (o.line, o.column) == (old.line, old.column) for i, o in enumerate(self.layers))
        comments, comment = list(self.comments), None
        if note and not repeated:
            said = next((c for c in comments if c.line == old.line), None)  # what the line said already follows
            comment = "# " + " ".join(note.split()) + (f"  {said.text}" if said else "")
            comments = [c for c in comments if c is not said] + [Comment(line=old.line, text=comment, trailing=True)]
            comments.sort(key=lambda c: c.line)
        text, shift = (None, 0) if repeated else _rewritten(self.text, old, new.word(), comment)
        if shift:  # the words after the classifier's on its line moved with its new length
            layers = [
                layer.model_copy(update={"column": layer.column + shift})
                if layer.line == old.line and layer.column > old.column
                else layer
                for layer in layers
            ]
        return self.model_copy(update={"layers": tuple(layers), "comments": tuple(comments), "text": text})

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


def _rewritten(text: str | None, layer: FC, word: str, comment: str | None) -> tuple[str | None, int]:
    """``text`` with ``layer``'s word replaced by ``word`` (and the comment of its line by ``comment``), and how far
    the words after it on its line moved; None where the text does not hold ``layer`` where it says."""
    lines = text.split("\n") if text is not None else []
    if not 1 <= layer.line <= len(lines):
        return None, 0
    line = lines[layer.line - 1]
    ending = "\r" if line.endswith("\r") else ""
    line = line.removesuffix("\r")
    start = layer.column - 1
    written = _LAYER_WORD.match(line, start)
    found = FC.WORD.fullmatch(written.group()) if written else None
    if written is None or found is None or int(found["features"]) != layer.features:
        return None, 0
    line = line[:start] + word + line[written.end() :]
    if comment is not None:
        line = f"{line.partition('#')[0].rstrip()}  {comment}"
    lines[layer.line - 1] = line + ending
    return "\n".join(lines), len(word) - len(written.group())
