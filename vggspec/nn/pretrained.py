"""Pretrained weights by name: ``torchvision:vgg16``, ``torchvision:vgg16_bn:IMAGENET1K_V1``.

One home for the spelling, so ``--weights`` on every command and ``build(weights=...)`` take it.
The name goes through torchvision's weights API, which downloads a file once into the torch hub
cache (``$TORCH_HOME/hub/checkpoints``) and reads it from there afterwards, offline. torchvision
is imported only when such a name is loaded: ``vggspec analyze`` never imports torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.preprocessing import Preprocessing
from ..errors import WeightsError

if TYPE_CHECKING:
    import torch

PREFIX = "torchvision:"
VGG_NAMES = tuple(f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn"))


def is_pretrained_name(weights: object) -> bool:
    """A ``torchvision:NAME[:ENUM]`` spelling, not a path."""
    return isinstance(weights, str) and weights.lower().startswith(PREFIX)


def parse_name(weights: str) -> tuple[str, str]:
    """``torchvision:vgg16[:ENUM]`` → (``vgg16``, ``ENUM`` or ``DEFAULT``), the name checked without torchvision."""
    name, _, member = weights[len(PREFIX) :].partition(":")
    name = name.strip().lower()
    if name not in VGG_NAMES:
        raise WeightsError(
            f"{weights}: unknown torchvision VGG '{name}'; the names are {', '.join(PREFIX + n for n in VGG_NAMES)}"
        )
    return name, member.strip() or "DEFAULT"


def cache_path(url: str) -> Path:
    """Where torchvision's download of ``url`` lives: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _weights_entry(weights: str) -> Any:
    """torchvision's ``Weights`` enum member that ``torchvision:NAME[:ENUM]`` names."""
    name, member = parse_name(weights)
    try:
        from torchvision.models import get_model_weights
    except ImportError:
        raise WeightsError(f"{weights} needs torchvision: pip install torchvision") from None
    enum = get_model_weights(name)
    try:
        return enum[member] if member != "DEFAULT" else enum.DEFAULT
    except KeyError:
        members = ", ".join(f"{PREFIX}{name}:{m}" for m in enum.__members__)
        raise WeightsError(f"{weights}: torchvision has no {name} weights '{member}'; it has {members}") from None


def pretrained_preprocessing(weights: str) -> Preprocessing:
    """What ``torchvision:NAME[:ENUM]`` was trained on: ``weights.transforms()``'s mean and std on the 0-1
    scale, RGB, and the weights' class names (ImageNet's)."""
    chosen = _weights_entry(weights)
    transform = chosen.transforms()
    return Preprocessing(
        scale=1,
        mean=[float(m) for m in transform.mean],
        std=[float(s) for s in transform.std],
        channel_order="RGB",
        classes=[str(c) for c in chosen.meta.get("categories") or []],
    )


def load_pretrained(weights: str, *, progress: bool = True) -> Mapping[str, torch.Tensor]:
    """The state dict that ``torchvision:NAME[:ENUM]`` names, from the hub cache or downloaded once.

    torch.hub writes "Downloading: URL to PATH" to standard output: it goes to standard error with the
    progress bar, where it does not end up in ``predict --format json > out.json`` or ``compile -o -``."""
    chosen = _weights_entry(weights)
    path = cache_path(chosen.url)
    cached = path.is_file()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return chosen.get_state_dict(progress=progress, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - urllib, http and torch.load raise many types
        if cached:
            raise WeightsError(
                f"{path} ({weights} in the torch hub cache) is not a loadable state dict ({type(err).__name__}: "
                f"{err}); delete it to download it again"
            ) from None
        why = f"{type(err).__name__}: {err}"
        raise WeightsError(
            f"{weights} is not in the torch hub cache ({path}) and could not be downloaded: {why}"
        ) from None
