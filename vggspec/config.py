"""The training configuration: every value of Section 3.1's recipe, each overridable.

Kept apart from :mod:`vggspec.train` so that the command line can describe it (``vggspec train
--help`` is generated from these fields) without importing torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import CheckpointError, SpecError, did_you_mean

InitName = Literal["paper", "caffe", "glorot", "kaiming"]
"""The random initialisations by name (implemented by :data:`vggspec.compiler.INITS`): defined here,
without torch, so that the command line can offer them and the analysis can reason about them."""


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


# A run directory's files, as vggspec train writes them: its checkpoints, and the spec it was
# started with (comments kept), which --resume without SPEC trains on.
RUN_BEST, RUN_LAST, RUN_SPEC = "best.pt", "last.pt", "spec.vgg"


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or for a run directory its best checkpoint (its last before there is a best)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (RUN_BEST, RUN_LAST):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path} is a folder without a checkpoint in it ({RUN_BEST} or {RUN_LAST})",
        hint="give a checkpoint file, or the --out folder of a 'vggspec train' run that finished an epoch",
    )


def default_scale(input_size: int) -> int:
    """The paper's S = 256 for 224×224 crops, in proportion for other input sizes."""
    return round(input_size * 256 / 224)


class TrainConfig(BaseModel):
    """Everything a run depends on. Defaults are the paper's (Section 3.1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    spec: str | None = Field(
        default=None, description="the .vgg spec to train; with --resume, by default the run's own copy (RUN/spec.vgg)"
    )
    data: str = Field(description="image folder: DATA/train/<class>/*, DATA/val/<class>/*")
    out: str | None = Field(default=None, description="run directory; by default runs/<spec>-<date>-<time>")
    train_split: str = Field(default="train", description="the training split's folder under DATA")
    val_split: str = Field(default="val", description="the validation split's folder under DATA")

    epochs: int = Field(default=74, ge=1, description="at most this many epochs (the paper: 74)")
    batch_size: int = Field(default=256, ge=1, description="global batch, whatever the number of processes")
    micro_batch: int | None = Field(
        default=None,
        ge=1,
        description="images per forward pass, with gradient accumulation; by default a process's whole share",
    )
    lr: float = Field(default=1e-2, gt=0, description="SGD learning rate")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(default=5e-4, ge=0, description="weight decay (L2 penalty)")
    lr_factor: float = Field(default=0.1, gt=0, lt=1, description="lr multiplier when val accuracy plateaus")
    lr_patience: int = Field(default=2, ge=0, description="epochs without improvement before the lr drops")
    lr_drops: int = Field(default=3, ge=0, description="at most this many lr drops (the paper: 3)")

    scale: str | None = Field(
        default=None,
        description="training scale S (smallest image side): '256', or '256:512' for scale jittering; by default "
        "256 for 224 inputs, in proportion for others",
    )
    colour_std: float = Field(default=0.1, ge=0, description="std of the PCA colour shift's alpha")
    flip: bool = Field(default=True, description="random horizontal flips")
    stats_images: int = Field(default=1000, ge=1, description="training images sampled for mean RGB and PCA")

    init: InitName = Field(
        default="paper",
        description="random initialisation: paper N(0, 1e-2 variance), caffe std 0.01, glorot, kaiming; a note "
        "says when it would start the class scores far from 1 (diverging or stalling)",
    )
    init_from: str | None = Field(default=None, description="a trained A's run or checkpoint (Section 3.1)")
    weights: str | None = Field(
        default=None, description="a state dict to start from: vggspec's (a checkpoint or run folder) or torchvision's"
    )
    seed: int = Field(default=0, description="seed of the initialisation, the data order and the augmentation")

    gpus: int = Field(default=0, ge=0, description="data-parallel processes on GPUs (NCCL)")
    nproc: int = Field(default=1, ge=1, description="data-parallel processes on the CPU (gloo)")
    workers: int = Field(default=2, ge=0, description="data loader workers per process")
    amp: Literal["bf16", "fp16"] | None = Field(default=None, description="mixed precision; by default float32")
    channels_last: bool = Field(default=False, description="channels-last memory format (faster on many GPUs)")
    sync_bn: bool = Field(
        default=False,
        description="batch-norm statistics over all GPU processes' images (SyncBatchNorm, CUDA only); "
        "by default each process normalises with its own share of the batch",
    )
    deterministic: bool = Field(default=False, description="deterministic algorithms only (bit-exact resumes)")
    checkpoint_every: int | None = Field(default=None, ge=1, description="also checkpoint every N steps")
    resume: bool = Field(default=False, description="continue the run in --out from its last.pt, with its settings")
    progress: bool = Field(default=True, description="progress bars")

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: str | None) -> str | None:
        if value is not None:
            parse_scale(value)
        return value

    def spec_file(self) -> str:
        """The spec to train: ``spec``, or for a resumed run without one, the copy in its folder.
        Checks first that a run to resume exists: a missing run, not a missing spec, is the news."""
        if self.resume:
            if not self.out:
                raise SpecError("--resume needs the run directory: --out RUN")
            if not (Path(self.out) / RUN_LAST).exists():
                raise SpecError(f"nothing to resume: {Path(self.out) / RUN_LAST} does not exist")
        if self.spec is not None:
            return self.spec
        if not self.resume:
            raise SpecError("which spec? give SPEC: a .vgg file, or a bundled spec by name (D)")
        copy = Path(self.out) / RUN_SPEC
        if not copy.is_file():
            raise SpecError(
                f"{copy} does not exist: nothing tells which spec {self.out} was trained with",
                hint="give the spec too: vggspec train SPEC --out RUN --resume",
            )
        return str(copy)

    def scale_range(self, input_size: int) -> tuple[int, int]:
        """(S_min, S_max); by default S = 256 for 224 inputs, scaled with other input sizes."""
        if self.scale is None:
            s = default_scale(input_size)
            return (s, s)
        return parse_scale(self.scale)


def parse_scale(text: str) -> tuple[int, int]:
    """'256' → (256, 256); '256:512' → (256, 512)."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        raise ValueError(f"a scale is a number (256) or a range (256:512), not '{text}'") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[0] < 1 or parts[0] > parts[1]:
        raise ValueError(f"a scale is a number (256) or a range S_min:S_max with S_min ≤ S_max, not '{text}'")
    return parts[0], parts[1]



def load_config_file(path: str | Path) -> dict[str, Any]:
    """Recipe values from a .json or .toml file (flags given on the command line win)."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".toml"):
        raise SpecError(f"{path}: a config file is .json or .toml", hint="write the settings as JSON or TOML")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot read the config file {path}: {err.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
                import tomli as tomllib

            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except ValueError as err:  # tomllib's and json's decode errors are ValueErrors
        raise SpecError(f"{path} is not valid {path.suffix[1:].upper()}: {err}") from None
    if not isinstance(values, dict):
        raise SpecError(f"{path} must hold a table of settings")
    values = {str(key).replace("-", "_"): value for key, value in values.items()}  # batch-size, as the flag
    if unknown := sorted(set(values) - set(TrainConfig.model_fields)):
        suggestion = did_you_mean(unknown[0], TrainConfig.model_fields)
        raise SpecError(
            f"{path}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}",
            hint=f"did you mean '{suggestion}' for '{unknown[0]}'?"
            if suggestion
            else "the settings are vggspec train's flags without the dashes (vggspec train --help)",
        )
    return values
