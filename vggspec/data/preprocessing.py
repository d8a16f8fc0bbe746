"""What a network's weights expect of their input pixels: one record that travels with the weights, and
the one formula that applies it.

Its own module (torch-free) because the same record is made by the trainer, torchvision's weights
(:mod:`vggspec.pretrained`) and checkpoints, and read by the data pipeline, evaluation and the exports:
the paper's networks take ``pixel - mean RGB`` on the 0-255 scale, torchvision's take
``(pixel / 255 - mean) / std``. Feeding one the other's inputs is off by a factor of about 58.

Every record comes down to ``(pixel - pixel_mean) · pixel_factor`` per channel on the 0-255 scale
(:attr:`Preprocessing.pixel_mean`, :attr:`Preprocessing.pixel_factor`), applied by :func:`normalised`:
the batches of training and evaluation (:func:`vggspec.data.datasets.normalise`), the exported graphs
(:class:`vggspec.nn.export.RawPixels`) and the exported Python source, which carries that function's text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    import torch

__all__ = ["Preprocessing", "normalised"]


class Preprocessing(BaseModel):
    """The network's input is ``(pixel · scale / 255 - mean) / std`` per channel, for uint8 pixels in
    ``channel_order``; ``mean`` and ``std`` are on the ``scale`` (255: the paper's, 1: torchvision's).
    ``classes`` names the outputs (empty when unknown)."""

    model_config = ConfigDict(frozen=True)

    scale: Literal[255, 1] = 255
    mean: list[float]
    std: list[float]
    channel_order: str = "RGB"
    classes: list[str] = []

    @model_validator(mode="after")
    def _shapes(self) -> Preprocessing:
        if not self.mean or len(self.std) != len(self.mean) or any(s <= 0 for s in self.std):
            raise ValueError("preprocessing needs one mean and one positive std per channel")
        return self

    @classmethod
    def paper(cls, mean: Sequence[float], classes: Sequence[str] = ()) -> Preprocessing:
        """The paper's only preprocessing: the training set's mean RGB subtracted, 0-255 scale, no division."""
        return cls(
            scale=255, mean=list(mean), std=[1.0] * len(mean), channel_order=_order(len(mean)), classes=list(classes)
        )

    @classmethod
    def standardised(cls, mean: Sequence[float], std: Sequence[float], classes: Sequence[str] = ()) -> Preprocessing:
        """The paper's mean subtraction, and each channel divided by its ``std`` (0-255 scale): unit-variance
        inputs, what Glorot's and Kaiming's initialisations assume (``--normalise std``)."""
        return cls(scale=255, mean=list(mean), std=list(std), channel_order=_order(len(mean)), classes=list(classes))

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any]) -> Preprocessing | None:
        """A checkpoint's record; one written before records existed is the paper's mean subtraction with
        its ``colour_stats`` mean; ``None`` for a checkpoint with neither (a compiled, untrained network)."""
        classes = [str(c) for c in data.get("classes") or []]
        if isinstance(data.get("preprocessing"), str):
            return cls.model_validate_json(data["preprocessing"])
        if isinstance(data.get("colour_stats"), str):
            return cls.paper(json.loads(data["colour_stats"])["mean"], classes)
        return None

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def is_paper(self) -> bool:
        """Mean subtraction on the 0-255 scale only, the paper's preprocessing (:attr:`pixel_factor` is 1)."""
        return self.scale == 255 and all(s == 1.0 for s in self.std)

    @property
    def pixel_mean(self) -> list[float]:
        """The mean on the 0-255 scale of uint8 pixels: the input is ``(pixel - pixel_mean) · pixel_factor``."""
        return [m * 255.0 / self.scale for m in self.mean]

    @property
    def pixel_factor(self) -> list[float]:
        """What a pixel less :attr:`pixel_mean` is multiplied by: ``scale / 255 / std`` (1 for the paper's)."""
        return [self.scale / 255.0 / s for s in self.std]

    def input_rms(self, pixel_rms: float) -> float:
        """The RMS of the network's input for pixels of RMS ``pixel_rms`` about the mean on the 0-255 scale:
        the signal the first layer sees, which the choice of a random initialisation depends on (58 for
        the paper's ImageNet inputs, about 1 under torchvision's normalisation)."""
        return pixel_rms * sum(self.pixel_factor) / len(self.pixel_factor)

    def fitted(self, channels: int, classes: int) -> Preprocessing:
        """For a network of ``channels`` inputs and ``classes`` outputs made from these weights: a gray one
        (whose first conv sums the RGB kernels) takes the channels' average mean and std; N channels take
        them cyclically. Class names that no longer fit the outputs are dropped."""
        mean, std = self.mean, self.std
        if channels == 1 and self.channels != 1:
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        elif channels != self.channels:
            mean, std = [mean[i % len(mean)] for i in range(channels)], [std[i % len(std)] for i in range(channels)]
        names = self.classes if len(self.classes) == classes else []
        order = self.channel_order if channels == self.channels else _order(channels)
        return self.model_copy(update={"mean": mean, "std": std, "classes": names, "channel_order": order})

    def describe(self) -> str:
        """One line for a file's documentation: what to feed the network."""
        mean = ", ".join(f"{m:.6g}" for m in self.mean)
        std = ", ".join(f"{s:.6g}" for s in self.std)
        pixels = "pixel" if self.scale == 255 else "pixel / 255"
        return f"{self.channel_order} pixels, ({pixels} - mean) / std with mean ({mean}) and std ({std})"

    def metadata(self) -> dict[str, str]:
        """String key/values (ONNX ``metadata_props``): the record, each field on its own."""
        return {
            "preprocessing": self.describe(),
            "preprocessing_scale": str(self.scale),
            "preprocessing_mean": json.dumps(self.mean),
            "preprocessing_std": json.dumps(self.std),
            "channel_order": self.channel_order,
            "classes": json.dumps(self.classes),
        }


# The one definition of the normalisation. Its text is copied into the Python source vggspec exports (which
# imports torch only): keep it torch-only, self-contained, and its lines within 79 columns.
# fmt: off
def normalised(
    pixels: torch.Tensor, mean: torch.Tensor, factor: torch.Tensor
) -> torch.Tensor:
    """The network's input from pixel values on the 0-255 scale (float):
    (pixels - mean) * factor, per channel (mean and factor broadcast)."""
    return (pixels - mean) * factor
# fmt: on


def _order(channels: int) -> str:
    return {1: "L", 3: "RGB"}.get(channels, f"{channels} channels")
