"""The random initialisations, by name and by the standard deviation each draws weights with.

Torch-free, so that the analysis can estimate a fresh network's scale (:func:`vggspec.initial_rms`)
and the command line can offer the names without importing torch; :data:`vggspec.compiler.INITS`
draws the weights from :func:`init_std`. To add an initialisation: a name in :data:`InitName`
and its rule in :func:`init_std` (and, if it is not a normal distribution, its draw in the compiler).
"""

from __future__ import annotations

import math
from typing import Literal

InitName = Literal["paper", "caffe", "glorot", "kaiming"]
"""The random initialisations by name."""


def init_std(init: InitName, fan_in: int, fan_out: int, *, conv: bool) -> float:
    """The standard deviation of a weight layer's random weights under ``init``: what
    :data:`vggspec.compiler.INITS` draws from (glorot: uniform with this std)."""
    if init == "paper":
        return 0.1  # "a normal distribution with the zero mean and 10^-2 variance" (Section 3.1)
    if init == "caffe":
        return 0.01  # what Caffe-era code drew: std 0.01
    if init == "glorot":
        return math.sqrt(2.0 / (fan_in + fan_out))  # Glorot & Bengio (2010), as torch's xavier_uniform_
    if init == "kaiming":  # He et al. (2015), fan-out, for convs; N(0, 0.01) for FC: torchvision's
        return math.sqrt(2.0) / math.sqrt(fan_out) if conv else 0.01
    raise ValueError(f"unknown initialisation '{init}'")
