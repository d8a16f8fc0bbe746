"""The network one process trains: built from the spec (random weights drawn by ``--init``, or
``--weights``, or the layers of a trained A by ``--init-from``), what its inputs are (its
preprocessing: the weights' own, or the training set's statistics), the layers ``--freeze`` holds
fixed, and the form it trains in (channels-last, SyncBatchNorm, torch.compile, DistributedDataParallel
over several processes). With it, the word of advice said before training from random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.colour import ColourStats
from ..data.preprocessing import Preprocessing
from ..errors import SpecError, did_you_mean
from ..logs import log as messages
from ..nn.compiler import VGG, build
from ..nn.devices import free_memory
from ..nn.inference import Compiled
from ..plan.budget import TrainSettings, auto_micro_batch, train_budget
from ..spec.analysis import (
    EXPLODING_SCALE,
    FADING_SCALE,
    PIXEL_RMS,
    WIDE,
    analyze,
    auto_init,
    initial_scale,
    initial_scales,
    resolve_init,
    scale_trouble,
    standardises,
    widest,
)
from ..spec.graph import layer_nodes, to_graph
from ..spec.spec import Spec
from ..units import human_bytes, human_duration
from .config import TrainConfig
from .distributed import Distributed
from .runlog import RunLog

PAPER_RANDOM_INIT_DEPTH = 11  # A's weight layers: the deepest net the paper trained from random weights
# From Glorot's start on the paper's 0-255 inputs, D's loss fell at 1e-3 where it diverged at the paper's 1e-2
# (tools/bench_init.py, BENCHMARKS.md): what the note says to a run that keeps those inputs (--normalise mean).
GLOROT_TRAINED_LR = 1e-3


@dataclass
class TrainingModel:
    """The network of one process: ``model`` holds the weights a checkpoint saves, ``net`` runs forward and
    backward (``model`` itself, or wrapped: by :class:`~vggspec.nn.inference.Compiled` with ``--compile``, by DDP
    with several processes, DDP outside)."""

    model: VGG
    net: nn.Module
    init: str  # the initialisation of the weights drawn (auto resolved)
    input_rms: float  # RMS of the inputs the first layer sees
    frozen: list[nn.Module]  # the layers --freeze holds
    new_layers: list[str]  # what --weights left new: --new-layer-lr-mult's layers

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        spec: Spec,
        env: Distributed,
        log: RunLog,
        stats: ColourStats,
        classes: list[str],
        resumed: dict[str, Any] | None,
    ) -> TrainingModel:
        """The network as the settings and the data ask, each choice said once (by rank 0); a resumed run's
        weights, preprocessing and new layers come from its checkpoint."""
        init = resolve_init(spec, config.init, stats.rms)  # auto: decided for this spec and data
        weights = config.weights if resumed is None else None  # a resumed run's come from its checkpoint
        model = build(
            spec,
            init=config.init if weights else init,  # auto: decided for the weights' input scale
            weights=weights,
            seed=config.seed,
            device=env.device,
            strict_weights=config.strict_weights,
            pixel_rms=stats.rms,
        )
        if model.weights_report is not None:
            init = model.weights_report.init
            log.note(str(model.weights_report))
        if config.init_from and resumed is None:
            from ..nn.transfer import transfer_from

            log.note(str(transfer_from(config.init_from, model)))
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.sync_bn and env.world > 1:  # before the optimizer: the conversion makes new modules
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.preprocessing = _preprocessing(config, spec, init, stats, classes, model.preprocessing, resumed, log)
        input_rms = model.preprocessing.input_rms(stats.rms)  # what the first layer sees
        if resumed is None and not config.weights and env.main:
            log.note(_init_note(config, spec, init, stats.rms))
            standardised = not model.preprocessing.is_paper
            advice = init_advice(spec, init, input_rms, config.lr, standardised=standardised)
            if advice and not config.init_from:
                log.note(advice)
        frozen = _freeze(model, spec, config.freeze, log)  # before DDP, which hooks only the parameters with gradients
        net: nn.Module = _compiled(model, env, log) if config.compile else model
        if env.world > 1:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[env.local_rank] if env.device.type == "cuda" else None
            )
        return cls(model, net, init, input_rms, frozen, _new_layers(config, model, resumed, log))

    def train_mode(self) -> None:
        """Training mode, but for the frozen layers' batch norm: its running statistics must not move either."""
        self.model.train()
        for bn in _batch_norms(self.frozen):
            bn.eval()

    def decided(self, config: TrainConfig) -> dict[str, str]:
        """What the run made of the settings left to auto, as the configuration shows them."""
        decided = {}
        if config.init == "auto" and not config.weights:
            decided["init"] = f"auto: {self.init}"
        if config.normalise == "auto":
            own = "mean" if self.model.preprocessing.is_paper else "std"
            decided["normalise"] = f"auto: {'as the weights' if config.weights or config.init_from else own}"
        return decided

    def gentler_starts(self, spec: Spec, config: TrainConfig) -> list[str]:
        """After a loss that is no longer finite, what else to try than a lower lr: only what was not tried."""
        began = initial_scale(spec, self.init, self.input_rms)
        if config.init_from or config.weights or not began > 1:  # scores did not begin large
            return []
        starts = initial_scales(spec, self.input_rms)
        tamer = [f"--init {init}" for init, scale in starts.items() if not scale_trouble(scale) and scale < began]
        return [*([" or ".join(tamer)] if tamer else []), "--init-from a trained A (Section 3.1)"]


def _preprocessing(
    config: TrainConfig,
    spec: Spec,
    init: str,
    stats: ColourStats,
    classes: list[str],
    weights: Preprocessing | None,
    resumed: dict[str, Any] | None,
    log: RunLog,
) -> Preprocessing:
    """What the network's inputs are: the run's own (resumed), the starting ``weights``' (fine-tuning keeps
    torchvision's normalisation, --init-from the trained A's), or from random weights the paper's subtraction
    of this training set's mean RGB, and for Glorot's and Kaiming's a division by its std (``--normalise``)."""
    if resumed is not None and (recorded := Preprocessing.from_checkpoint(resumed)) is not None:
        return recorded
    if weights is not None:
        log.note(f"inputs as the weights were trained on: {weights.describe()}")
        return weights.model_copy(update={"classes": classes})
    normalise = config.normalise
    if normalise == "std" or (normalise == "auto" and standardises(spec, init)):
        standardised = Preprocessing.standardised(stats.mean, stats.std, classes)
        why = f": {init}'s start on a network {WIDE} channels wide" if normalise == "auto" else ""
        log.note(f"inputs divided by their std{why} ({standardised.describe()})")
        return standardised
    return Preprocessing.paper(stats.mean, classes)


def _compiled(model: VGG, env: Distributed, log: RunLog) -> nn.Module:
    """--compile: ``model`` under torch.compile, to be wrapped by DDP (torch's advice: compile the module inside
    DDP, whose bucketed all-reduces dynamo still splits the graph for; compiling DDP itself traces its
    internals). Checkpoints save ``model``, whose state-dict keys are unchanged. The first step's forward lowers
    the backward too, so its time is the compile's, said once it is done; a failure to compile is a warning
    (each machine's first process says it), and the run goes on uncompiled."""

    def first_step(seconds: float) -> None:
        log.note(
            f"torch.compile: the first step took {human_duration(seconds)} to compile; later steps run compiled "
            "(this epoch's images/s counts the compile)"
        )

    return Compiled(model, backward=True, on_first_call=first_step, say=messages.warning if env.speaks else _quiet)


def _quiet(message: str) -> None:
    """Say nothing: another process of this machine says it."""


def _init_note(config: TrainConfig, spec: Spec, init: str, pixel_rms: float) -> str:
    """Which initialisation the random weights have, and for ``auto`` why."""
    layers = "the layers not copied from A" if config.init_from else "the weights"
    if config.init != "auto":
        return f"initialisation: --init {init} for {layers}"
    why = auto_init(spec, pixel_rms)[1]
    return f"initialisation: --init auto chose {init} for {layers} of {spec.display_name}: {why}"


def _freeze(model: VGG, spec: Spec, freeze: str | None, log: RunLog) -> list[nn.Module]:
    """--freeze: the frozen layers' parameters take no gradient (and so stay out of the optimizer)."""
    names = frozen_layers(spec, freeze)
    parts = (model.features, model.classifier)
    modules = [getattr(part, name) for part in parts for name in names if hasattr(part, name)]
    for module in modules:
        module.requires_grad_(False)
    if modules:
        count = sum(p.numel() for module in modules for p in module.parameters())
        statistics = ", batch norm's statistics too" if _batch_norms(modules) else ""
        log.note(f"frozen: {names[0]} to {names[-1]} ({count:,} parameters){statistics}")
    return modules


def _batch_norms(modules: list[nn.Module]) -> list[nn.Module]:
    """The batch norms in ``modules``: frozen, their running statistics stay as loaded too."""
    return [bn for module in modules for bn in module.modules() if isinstance(bn, nn.modules.batchnorm._BatchNorm)]


def _new_layers(config: TrainConfig, model: VGG, resumed: dict[str, Any] | None, log: RunLog) -> list[str]:
    """The layers --weights left new (drawn, not loaded): a resumed run's checkpoint says which, the load is not
    repeated."""
    if resumed is not None:
        return list(resumed.get("new_layers", []))
    report = model.weights_report
    new_layers = [name for name, _ in report.new] if report is not None else []
    if config.new_layer_lr_mult != 1 and not new_layers:
        mult = config.new_layer_lr_mult
        log.note(f"note: --weights left no layer new: --new-layer-lr-mult {mult:g} applies to none")
    return new_layers


def frozen_layers(spec: Spec, freeze: str | None) -> list[str]:
    """The layers ``--freeze LAYER`` holds fixed: every one up to and including LAYER (``features``: every
    conv and pool layer), by the Caffe names ``analyze`` shows. A name the spec has not, or one that leaves
    nothing to train, is a SpecError: said before any image is read."""
    if freeze is None:
        return []
    graph = to_graph(spec)
    names = layer_nodes(graph)
    if freeze == "features":
        spatial = [i for i, name in enumerate(names) if graph.nodes[name]["layer"].SPATIAL]
        last = spatial[-1] if spatial else -1
    elif freeze in names:
        last = names.index(freeze)
    else:
        close = did_you_mean(freeze, ["features", *names])
        guess = f"did you mean {close}? " if close else ""
        raise SpecError(
            f"--freeze {freeze}: {spec.display_name} has no such layer; {guess}it has features, {', '.join(names)}"
        )
    if not any(layer.params for layer in analyze(spec).layers[last + 1 :]):
        raise SpecError(f"--freeze {freeze} leaves no layer of {spec.display_name} to train: freeze fewer layers")
    return names[: last + 1]


def init_advice(
    spec: Spec, init: str, pixel_rms: float = PIXEL_RMS, lr: float | None = None, *, standardised: bool = False
) -> str | None:
    """A word before training from random weights (``init``, resolved) whose class scores start far from 1 on
    inputs of RMS ``pixel_rms``, or from Glorot's start at a rate (``lr``) that diverged for networks as wide
    on the paper's unstandardised inputs."""
    init = resolve_init(spec, init, pixel_rms)
    scale = initial_scale(spec, init, pixel_rms)
    width = widest(spec)
    if init == "glorot" and not standardised and lr is not None and lr > GLOROT_TRAINED_LR and width >= WIDE:
        return (
            f"note: from Glorot's start at lr {lr:g}, networks {width} channels wide diverged here (A and D, "
            f"within 8 steps) where D's loss fell at lr {GLOROT_TRAINED_LR:g} (tools/bench_init.py): expect to "
            f"need --lr {GLOROT_TRAINED_LR:g}, or start as the paper did, from a trained A (--init-from RUN_A)"
        )
    if not (fate := scale_trouble(scale)):
        return None
    others = ", ".join(
        f"--init {other} {value:.0e}" for other, value in initial_scales(spec, pixel_rms).items() if other != init
    )
    deeper = analyze(spec).weight_layers > PAPER_RANDOM_INIT_DEPTH
    return (
        f"note: with --init {init}, {spec.display_name}'s class scores start at about {scale:.0e} (RMS, "
        f"estimated from its layers' sizes; {FADING_SCALE:.0e} to {EXPLODING_SCALE:.0e} trains): {fate}. "
        f"Other initialisations: {others}."
        + (" The paper started nets deeper than A from a trained A (--init-from RUN_A)." if deeper else "")
    )


def check_the_step_fits(config: TrainConfig, spec: Spec, env: Distributed, micro: int) -> None:
    """Refuse, before the network is built and a batch is read, a training step that the training budget
    (:func:`vggspec.plan.budget.train_budget`: weights, gradients, momentum, what the forward pass keeps) says
    needs more than this process's device has free: one line with the numbers, not an allocator's error or the
    kernel's OOM killer minutes later."""
    available = free_memory(env.device)
    if available is None:
        return
    settings = TrainSettings(
        batch=config.batch_size,
        processes=env.world,
        micro_batch=micro,
        amp=config.amp,
        channels_last=config.channels_last,
        device="cuda" if env.device.type == "cuda" else "cpu",
        weight_decay=config.weight_decay > 0,
    )
    budget = train_budget(spec, settings)
    if budget.peak_bytes <= available:
        return
    raise SpecError(
        f"a training step of {spec.display_name} with {micro} image{'s' if micro != 1 else ''} a pass needs "
        f"{human_bytes(budget.peak_bytes)} on {env.device} at its peak (weights, gradients, momentum and what the "
        f"forward pass keeps: vggspec analyze --train), more than the {human_bytes(available)} it has free",
        hint="fewer images a pass with the same batch: --micro-batch N (gradient accumulation)"
        + (", or --micro-batch auto" if env.device.type == "cuda" else ""),
    )


def micro_batch_that_fits(config: TrainConfig, spec: Spec, env: Distributed, log: RunLog) -> int | None:
    """``--micro-batch auto``: on GPUs the micro-batch :func:`vggspec.plan.budget.auto_micro_batch` plans for the
    free memory of the process with the least; on the CPU, which has no fixed memory to fit, none: the whole
    share. None when not asked."""
    if config.micro_batch != "auto":
        return None
    if env.device.type != "cuda":
        log.note("--micro-batch auto: not needed on the CPU, each process takes its whole share a pass")
        return None
    mine = free_memory(env.device) or 0
    free = [int(n) for n in env.sum([mine if rank == env.rank else 0 for rank in range(env.world)])]
    settings = TrainSettings(
        batch=config.batch_size,
        processes=env.world,
        amp=config.amp,
        channels_last=config.channels_last,
        weight_decay=config.weight_decay > 0,
    )
    micro, note = auto_micro_batch(spec, settings, free, str(env.device))
    log.note(note)
    return micro
