"""The training and evaluation configurations: every value of Section 3.1's recipe and of
Sections 3.2 and 4's protocol, each overridable.

Kept apart from :mod:`vggspec.train` and :mod:`vggspec.evaluate` so that the command line can
describe them (``vggspec train --help`` and ``vggspec evaluate --help`` are generated from these
fields) without importing torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..data.scales import TrainingScale
from ..errors import SpecError, did_you_mean
from ..plan.batch import MIN_BATCH, MIN_STEPS_PER_EPOCH, PAPER_BATCH, PAPER_LR, BatchSplit, batch_split, default_lr
from ..plan.budget import PLANNING_MARGIN_PERCENT
from ..spec.initialisation import INIT_HELP, parse_init
from . import runs
from .flags import command_line
from .rendezvous import Endpoint, NodeCounts, machine_fields
from .rendezvous import Machines as Machines  # the command line finds these here too
from .rendezvous import Rendezvous as Rendezvous
from .rendezvous import machines as machines

DType = Literal["float32", "bfloat16", "float16", "auto"]
Method = Literal["dense", "multi-crop", "both", "all", "center"]
METHODS = ("dense", "multi-crop", "both")  # of evaluation, Section 3.2; --method all: a row for each
PREDICT_METHODS = ("dense", "center", "multi-crop", "both")  # what predict takes: one row per image

# Help of flags that several commands have: one text each, so that they read the same everywhere.
FLIP_HELP = (
    "horizontal flips: train flips images at random; evaluate and predict average each image's posteriors "
    "with its mirror image's, by default when the network was trained with --flip (train's default; a network "
    "trained on digits or text with --no-flip is not shown mirror images)"
)
DTYPE_HELP = (
    "what the network computes in; auto: bfloat16 where it is faster than float32 (measured once on a CPU with "
    "bf16 instructions, kept in ~/.cache/vggspec; a GPU from Ampere on; posteriors then carry bf16 rounding), "
    "else float32"
)

NUM_CLASSES_WITH_WEIGHTS_HELP = (
    "with --weights: the classes the weights classify into, where SPEC's last FC layer says another number (its "
    "outputs become N before the weights, all of which must fit, are loaded); a checkpoint's are its own"
)
NUM_CLASSES_WITHOUT_WEIGHTS = (
    "--num-classes builds SPEC for --weights; a checkpoint's network, its classes included, is its own"
)


def class_count(value: object) -> int | Literal["auto"]:
    """A ``--num-classes`` value, from a flag or a config file: a whole number of at least 1, or ``auto``
    (a ValueError otherwise, saying what it got)."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass  # said below
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"the number of classes is a whole number or auto, not {value!r}")
    if value < 1:
        raise ValueError(f"the number of classes must be at least 1, got {value}")
    return value


def _checked_class_count(value: object, *, auto: bool) -> object:
    """:func:`class_count` as pydantic says an error: its message alone."""
    if value is None:
        return None
    try:
        count = class_count(value)
    except ValueError as err:
        raise PydanticCustomError("num_classes", str(err)) from None
    if count == "auto" and not auto:
        raise PydanticCustomError(
            "num_classes",
            "--num-classes auto counts the class folders of a training set, and evaluate reads none: give the number "
            "of classes the weights classify into",
        )
    return count


class TrainConfig(BaseModel):
    """Everything a run depends on. Defaults are the paper's (Section 3.1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    spec: str | None = Field(
        default=None,
        description="the spec to train: a file, or a bundled spec by name (D); with --resume, by default the run's "
        "own copy (RUN/spec.vgg)",
        **command_line(nargs="?", metavar="SPEC"),
    )
    data: str = Field(
        description="image folder: DATA/train/<class>/*, DATA/val/<class>/*",
        **command_line(default_note="(required, but for --resume: the run's)"),
    )
    out: str | None = Field(default=None, description="run directory; by default runs/<spec>-<date>-<time>")
    train_split: str = Field(default="train", description="the training split's folder under DATA")
    val_split: str = Field(default="val", description="the validation split's folder under DATA")

    epochs: int = Field(default=74, ge=1, description="at most this many epochs (the paper: 74)")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="global batch, whatever the number of processes (they split it: --gpus)",
        **command_line(
            metavar="N",
            default_note=f"(default: the paper's {PAPER_BATCH}; for fewer than {PAPER_BATCH * MIN_STEPS_PER_EPOCH} "
            f"training images the power of two that gives at least {MIN_STEPS_PER_EPOCH} steps an epoch, at least "
            f"{MIN_BATCH}: one step an epoch learns nothing; rounded up to a multiple of the processes)",
        ),
    )
    micro_batch: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        default=None,
        description="images per forward pass, with gradient accumulation; by default a process's whole share. "
        "auto: on a GPU the largest that fits its free memory, as analyze --memory plans it "
        f"({PLANNING_MARGIN_PERCENT}% of the memory left for the CUDA context, cuDNN and fragmentation); on the CPU "
        "not needed: the whole share",
        **command_line(metavar="N|auto"),
    )
    lr: float | None = Field(
        default=None,
        gt=0,
        description="SGD learning rate",
        **command_line(
            default_note=f"(default: the paper's {PAPER_LR:g} for its batch of {PAPER_BATCH}, times √(batch / "
            f"{PAPER_BATCH}): {default_lr(16):g} at 16)",
        ),
    )
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(default=5e-4, ge=0, description="weight decay (L2 penalty)")
    decay_biases: bool = Field(
        default=True,
        description="apply the weight decay to biases and batch norm's scale and shift too (the paper does not "
        "say; torch's SGD and torchvision's recipe do; Caffe setups often exempt biases: --no-decay-biases)",
    )
    lr_factor: float = Field(default=0.1, gt=0, lt=1, description="lr multiplier when val accuracy plateaus")
    lr_patience: int = Field(
        default=2,
        ge=0,
        description="epochs without improvement before the lr drops, counted once the network has begun to learn "
        "(training loss below 0.9 ln classes, or validation error below 0.7 of chance's)",
    )
    lr_drops: int = Field(default=3, ge=0, description="at most this many lr drops (the paper: 3)")
    early_stop: bool = Field(
        default=True,
        description="end the run where the schedule would lower the lr once more but has no drop left: after its "
        "--lr-drops drops, --lr-patience + 1 epochs in a row without a better validation accuracy (counted as for "
        "the drops; the paper stopped after its third drop); --no-early-stop trains on at the last lr to --epochs",
    )

    scale: str | None = Field(
        default=None,
        description="training scale S (smallest image side): '256', or '256:512' for scale jittering; by default "
        "256 for 224 inputs, in proportion for others",
    )
    colour_std: float = Field(default=0.1, ge=0, description="std of the PCA colour shift's alpha")
    flip: bool = Field(default=True, description=FLIP_HELP)
    stats_images: int = Field(default=1000, ge=1, description="training images sampled for mean RGB and PCA")

    normalise: Literal["auto", "mean", "std"] = Field(
        default="auto",
        description="the network's input: mean, the paper's (the training set's mean RGB subtracted from each pixel, "
        "0-255 scale); std, each channel then divided by its std on the training set (unit-variance inputs, as in "
        "torchvision's recipe); auto: std where the random weights are Glorot's or Kaiming's (whose scale assumes "
        "unit-variance inputs) on a network 512 channels wide (on the paper's inputs they diverged there at lr "
        "1e-2), else mean. The weights of --weights and --init-from keep the inputs they were trained on",
    )
    init: str = Field(
        default="auto",
        description=f"random initialisation of the weights not loaded: {INIT_HELP}. train says which it chose and "
        "why, and warns when class scores would start far from 1 (far above diverges, far below stalls); "
        "analyze --init shows each layer's output RMS so initialised",
    )
    init_from: str | None = Field(default=None, description="a trained A's run or checkpoint (Section 3.1)")
    weights: str | None = Field(
        default=None,
        description="a state dict to start from: vggspec's (a checkpoint or run folder), torchvision's, or "
        "torchvision's pretrained by name (torchvision:vgg16[_bn][:ENUM], downloaded once into the torch hub "
        "cache). Layers whose shape differs (the classifier for your classes) are drawn by --init, a first conv "
        "for gray or N-channel input adapted from the RGB kernels",
    )
    strict_weights: bool = Field(
        default=False, description="every layer of --weights must fit: refuse weights of another shape"
    )
    freeze: str | None = Field(
        default=None,
        description="fine-tuning: freeze every layer up to and including LAYER (a name analyze shows: conv5_3, "
        "pool5, fc6; or features: every conv and pool layer): no gradient, no update, no weight decay, and its "
        "batch norm keeps its running statistics",
        **command_line(metavar="LAYER"),
    )
    num_classes: int | Literal["auto"] | None = Field(
        default=None,
        description="train for N classes whatever the spec's last FC layer says: its outputs become N, and "
        "RUN/spec.vgg records the network so trained (a comment on that line says so); auto: as many as the training "
        "split has class folders. A resumed run keeps its own",
        **command_line(metavar="N|auto", default_note="(default: the spec's)"),
    )
    new_layer_lr_mult: float = Field(
        default=1.0,
        gt=0,
        description="fine-tuning: learning-rate multiplier of the layers --weights leaves new (drawn: the "
        "classifier for your classes), e.g. 10 to let them catch up with the pretrained ones",
        **command_line(metavar="X"),
    )
    seed: int = Field(default=0, description="seed of the initialisation, the data order and the augmentation")

    gpus: int = Field(
        default=0,
        ge=0,
        description="data-parallel processes on GPUs (NCCL), one a GPU, which split the global batch (--batch-size): "
        "where N does not divide it, the first batch % N processes take one image more",
        **command_line(metavar="N"),
    )
    nproc: int = Field(
        default=1,
        ge=1,
        description="data-parallel processes on the CPU (gloo), which split the global batch as --gpus's do; under "
        "torchrun, its --nproc-per-node (leave --nproc out: torchrun's parser takes it for its own unless a -- "
        "comes before the command)",
    )
    nnodes: NodeCounts
    rdzv_endpoint: Endpoint
    rdzv_timeout: int
    nnodes, rdzv_endpoint, rdzv_timeout = machine_fields()
    max_restarts: int = Field(
        default=3,
        ge=0,
        description="with --nproc, --gpus or --nnodes: when a process dies (SIGKILL, the OOM killer, a crash), start "
        "them all again, at most N times, each resuming from RUN/last.pt (mid-epoch with --checkpoint-every); one "
        "process on one machine is not restarted (--resume continues it); under torchrun, torchrun's own "
        "--max-restarts does this",
        **command_line(metavar="N"),
    )
    workers: int = Field(default=2, ge=0, description="data loader workers per process")
    amp: Literal["bf16", "fp16"] | None = Field(default=None, description="mixed precision; by default float32")
    channels_last: bool = Field(default=False, description="channels-last memory format (faster on many GPUs)")
    compile: bool = Field(
        default=False,
        description="torch.compile the network that trains: the first step compiles (tens of seconds to minutes on a "
        "CPU, said when done; a C compiler needed there), later ones may run faster (on a CPU 1.5× for a narrow D "
        "with batch norm, 0.75× for a narrow A without: BENCHMARKS.md); where torch cannot compile, a warning and "
        "the run goes on uncompiled. Checkpoints are the same either way",
    )
    sync_bn: bool = Field(
        default=False,
        description="batch-norm statistics over all GPU processes' images (SyncBatchNorm, CUDA only); "
        "by default each process normalises with its own share of the batch",
    )
    deterministic: bool = Field(default=False, description="deterministic algorithms only (bit-exact resumes)")
    checkpoint_every: int | None = Field(default=None, ge=1, description="also checkpoint every N steps")
    resume: bool = Field(default=False, description="continue the run in --out from its last.pt, with its settings")
    progress: bool = Field(default=True, description="progress bars")

    @field_validator("init")
    @classmethod
    def _init(cls, value: str) -> str:
        return parse_init(value)

    @field_validator("num_classes", mode="before")
    @classmethod
    def _num_classes(cls, value: object) -> object:
        return _checked_class_count(value, auto=True)

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: str | None) -> str | None:
        if value is not None:
            TrainingScale.parse(value)
        return value

    def spec_file(self) -> str:
        """The spec to train: ``spec``, or for a resumed run without one, the copy in its folder.
        Checks first that a run to resume exists: a missing run, not a missing spec, is the news."""
        if self.resume:
            if not self.out:
                raise SpecError("--resume needs the run directory: --out RUN")
            if not (Path(self.out) / runs.LAST).exists():
                raise SpecError(f"nothing to resume: {Path(self.out) / runs.LAST} does not exist")
        if self.spec is not None:
            return self.spec
        if not self.resume:
            raise SpecError("which spec? give SPEC: a .vgg file, or a bundled spec by name (D)")
        copy = Path(self.out) / runs.SPEC
        if not copy.is_file():
            raise SpecError(
                f"{copy} does not exist: nothing tells which spec {self.out} was trained with",
                hint="give the spec too: vggspec train SPEC --out RUN --resume",
            )
        return str(copy)

    def batch_split(self, world: int, micro: int | None = None, rank: int = 0) -> BatchSplit:
        """Process ``rank``'s part of the global batch over ``world`` processes (one image more for the first
        ``batch % world``), in micro-batches of at most ``micro_batch`` (or ``micro``: what ``auto`` was resolved
        to; None for auto: the whole share)."""
        if self.batch_size is None:
            raise ValueError("the default batch is decided by the training set's size: resolve it first")
        if micro is None and self.micro_batch != "auto":
            micro = self.micro_batch
        return batch_split(self.batch_size, world, micro, rank)

    def training_scale(self, input_size: int) -> TrainingScale:
        """S for a network with ``input_size`` inputs: ``scale``, or the paper's 256 in proportion;
        checked to fit the crops (a SpecError, before any image is read)."""
        return TrainingScale.resolve(self.scale, input_size)


class EvaluateConfig(BaseModel):
    """Everything an evaluation depends on: the networks, the images and the protocol (Sections 3.2, 4)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    checkpoints: list[str] = Field(
        min_length=1,
        description="checkpoints or run folders (RUN: its best.pt); several: fused; with --from-probs, files "
        "written by --save-probs",
        **command_line(nargs="+", metavar="CKPT"),
    )
    weights: str | None = Field(
        default=None,
        description="weights to evaluate, with one SPEC given in place of CKPT: torchvision:NAME[:ENUM] (e.g. "
        "torchvision:vgg16 with spec D) or a state dict file; every layer must fit",
        **command_line(metavar="W"),
    )
    num_classes: int | None = Field(
        default=None, description=NUM_CLASSES_WITH_WEIGHTS_HELP, **command_line(metavar="N")
    )
    data: str | None = Field(
        default=None,
        description="image folder: DIR/<split>/<class>/* (required, but for --from-probs)",
        **command_line(metavar="DIR"),
    )
    split: str = Field(default="val", description="the folder under DIR to evaluate")
    scales: str | None = Field(
        default=None,
        description="test scales: numbers (256,384,512), relative to the training scale S (S-32,S,S+32; for a "
        "jittered S: S_min,S,S_max), or 'paper': Table 4's three (S-32,S,S+32, or S_min,S,S_max when S was "
        "jittered); by default S (for dense evaluation where S leaves a border of pixels outside every pooling "
        "window, the nearest scale that uses them all, said in a note: --scales S keeps S)",
        **command_line(metavar="Q,..."),
    )
    method: Method = Field(
        default="dense",
        description="dense: the fully-convolutional network on the whole image; multi-crop: 50 crops (5×5 grid × 2 "
        "flips); both: their average; all: a row for each of the three; center: one centre crop, no flip, as the "
        "validation during training measured it (at the default scale S, the run's validation error)",
    )
    flip: bool | None = Field(default=None, description=FLIP_HELP)
    batch_size: int = Field(default=32, ge=1, description="images per batch", **command_line(metavar="N"))
    gpus: int = Field(default=0, ge=0, description="evaluate on N GPUs (one process each)", **command_line(metavar="N"))
    nproc: int = Field(default=1, ge=1, description="evaluate in N CPU processes", **command_line(metavar="N"))
    nnodes: NodeCounts
    rdzv_endpoint: Endpoint
    rdzv_timeout: int
    nnodes, rdzv_endpoint, rdzv_timeout = machine_fields()
    json_path: str | None = Field(
        default=None,
        description="also write the table as JSON (-: to standard output, the table then to standard error)",
        **command_line(flag="json", metavar="FILE"),
    )
    save_probs: str | None = Field(
        default=None,
        description="save every image's posteriors (to fuse later; -: to standard output)",
        **command_line(metavar="FILE"),
    )
    from_probs: bool = Field(
        default=False, description="CKPT are files written by --save-probs: fuse them, no network runs"
    )
    progress: bool = Field(default=True, description="a progress bar")
    dtype: DType = Field(default="float32", description=DTYPE_HELP)
    compile: bool = Field(
        default=False,
        description="torch.compile the networks: faster batches, but each network compiles at its first batch "
        "and again at a new input shape (each test scale, the dense network at a new image size), tens of "
        "seconds each on a CPU: worth it for many images. Needs a C compiler on the CPU; where torch cannot "
        "compile, a warning and the evaluation goes on uncompiled",
    )

    @field_validator("checkpoints", "data", "json_path", "save_probs", mode="before")
    @classmethod
    def _paths_as_text(cls, value: Any) -> Any:
        """Paths given as :class:`~pathlib.Path` too: the worker processes get them as text."""
        if isinstance(value, (list, tuple)):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("num_classes", mode="before")
    @classmethod
    def _num_classes(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and info.data.get("weights") is None:  # weights: the field before
            raise PydanticCustomError("num_classes", NUM_CLASSES_WITHOUT_WEIGHTS)
        return _checked_class_count(value, auto=False)

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateConfig:
        if self.weights is not None and (len(self.checkpoints) != 1 or self.from_probs):
            raise ValueError("--weights loads into one SPEC, given in place of CKPT (no fusion, no --from-probs)")
        if self.json_path and self.save_probs and os.path.abspath(self.json_path) == os.path.abspath(self.save_probs):
            raise ValueError("--json and --save-probs name the same file: the second would overwrite the first")
        return self

    @property
    def methods(self) -> list[str]:
        """The methods to evaluate, a row each: ``all`` is dense, multi-crop and both."""
        return list(METHODS) if self.method == "all" else [self.method]


Settings = TypeVar("Settings", bound=BaseModel)


def validated(model: type[Settings], values: Mapping[str, Any], what: str) -> Settings:
    """``model(**values)``, with what is wrong said in one line (a SpecError), as the command line reports it:
    ``invalid training settings: lr: Input should be a finite number``."""
    try:
        return model(**values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise SpecError(f"invalid {what} settings: {problems}") from None


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
