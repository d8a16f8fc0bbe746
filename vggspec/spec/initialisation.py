"""The random initialisations: their spellings, and the standard deviation each draws weights with.

    auto        the paper's where the analysis predicts that its start trains, else glorot (the default)
    paper       N(0, 0.01²) weights, zero biases (Section 3.1, read as the paper's pipeline must have meant it)
    glorot      Glorot & Bengio (2010), uniform, as torch's xavier_uniform_ (the paper's footnote)
    kaiming     He et al. (2015), fan-out, as torchvision initialises its VGGs
    normal:STD  N(0, STD²) weights, e.g. normal:0.1, the paper's "10⁻² variance" taken literally
    caffe       another name for paper: Caffe's Gaussian filler, std 0.01

Why "paper" is std 0.01: Section 3.1 says "zero mean and 10⁻² variance", which read literally is
std 0.1, and the paper trained A from random weights. Std 0.1 starts A's class scores at about
10⁸ (RMS; estimated by :func:`vggspec.spec.analysis.initial_scale` and measured by forward passes) and
the loss is NaN by the second SGD step; std 0.01, what Caffe drew and reimplementations use,
starts A at about 10⁻³, and A trains. So that is what the paper's pipeline must have done.

Torch-free, so that the analysis can estimate a fresh network's scale and the command line can
check a spelling without importing torch; :mod:`vggspec.compiler` draws the weights from
:func:`init_std`, and :func:`vggspec.spec.analysis.resolve_init` decides what ``auto`` means for a spec.
To add an initialisation: its name in :data:`INIT_NAMES` and its rule in :func:`init_std`.
"""

from __future__ import annotations

import math

INIT_NAMES = ("auto", "paper", "glorot", "kaiming")
"""The named initialisations (``normal:STD`` and the alias ``caffe`` aside)."""
DRAWN = INIT_NAMES[1:]
"""The initialisations that draw weights: what ``auto`` chooses among, and what analyses compare."""
ALIASES = {"caffe": "paper"}
INIT_HELP = (
    "auto (the default): the paper's where the analysis predicts its start trains, else glorot; "
    "paper: N(0, 0.01²) weights; glorot (Glorot & Bengio 2010); kaiming (He et al. 2015, as torchvision); "
    "normal:STD, e.g. normal:0.1 (the paper's '10⁻² variance' read literally, which diverges); biases zero"
)


def parse_init(text: str) -> str:
    """The canonical spelling of an initialisation (``'caffe'`` → ``'paper'``, ``'normal:1e-1'`` →
    ``'normal:0.1'``); a ValueError that lists the spellings for anything else."""
    name = str(text).strip().lower()
    name = ALIASES.get(name, name)
    if name in INIT_NAMES:
        return name
    if name.startswith("normal:"):
        try:
            std = float(name.removeprefix("normal:"))
        except ValueError:
            std = math.nan
        if math.isfinite(std) and std > 0:
            return f"normal:{std:g}"
        raise ValueError(f"normal:STD needs a positive standard deviation, e.g. normal:0.01, not '{text}'")
    raise ValueError(f"unknown initialisation '{text}': choose auto, paper, glorot, kaiming or normal:STD")


def init_std(init: str, fan_in: int, fan_out: int, *, conv: bool) -> float:
    """The standard deviation of a weight layer's random weights under ``init`` (glorot: uniform with
    this std). ``auto`` must be resolved for a spec first (:func:`vggspec.spec.analysis.resolve_init`)."""
    init = parse_init(init)
    if init == "paper":
        return 0.01
    if init == "glorot":
        return math.sqrt(2.0 / (fan_in + fan_out))  # Glorot & Bengio (2010), as torch's xavier_uniform_
    if init == "kaiming":  # He et al. (2015), fan-out, for convs; N(0, 0.01) for FC: torchvision's
        return math.sqrt(2.0) / math.sqrt(fan_out) if conv else 0.01
    if init.startswith("normal:"):
        return float(init.removeprefix("normal:"))
    raise ValueError("'auto' is decided per spec: resolve it first (vggspec.spec.analysis.resolve_init)")


def is_uniform(init: str) -> bool:
    """Whether ``init`` draws from a uniform distribution (glorot) rather than a normal one."""
    return parse_init(init) == "glorot"
