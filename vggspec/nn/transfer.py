"""The paper's initialisation of deeper nets from a trained A (Section 3.1).

"We initialised the first four convolutional layers and the last three fully-connected layers
with the layers of net A (the intermediate layers were initialised randomly)." A's first four
conv layers are conv1_1, conv2_1, conv3_1 and conv3_2; each is copied into the layer of the
same name in the deeper net (Caffe copies weights by layer name), where it has the same shape
in B, C, D and E. The last three FC layers are copied in order. A layer that is missing or
has another shape is an error, never a silent skip; everything else keeps its random weights,
and the report says so, layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from .compiler import VGG

CONVS_FROM_A = 4
FCS_FROM_A = 3


@dataclass
class TransferReport:
    source: str
    target: str
    copied: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (target, source, shape)
    random: list[tuple[str, str]] = field(default_factory=list)  # (target layer, why)

    def __str__(self) -> str:
        lines = [
            f"Initialised {self.target} from {self.source} (Section 3.1): {len(self.copied)} layers copied, "
            f"{len(self.random)} left random"
        ]
        width = max((len(name) for name, *_ in self.copied + self.random), default=0)
        for target, source, shape in self.copied:
            lines.append(f"  copied  {target:<{width}}  <- {source}  {'×'.join(map(str, shape))}")
        for target, why in self.random:
            lines.append(f"  random  {target:<{width}}  {why}")
        return "\n".join(lines)


def _weight_layers(model: VGG) -> list[tuple[str, str, nn.Module]]:
    """(block name, kind, module) of every conv and FC layer, in order."""
    out = []
    for section in (model.features, model.classifier):
        for name, block in section.named_children():
            inner = getattr(block, "conv", None) if isinstance(block, nn.Sequential) else None
            fc = getattr(block, "fc", None) if isinstance(block, nn.Sequential) else None
            if inner is not None:
                out.append((name, "conv", inner))
            elif fc is not None:
                out.append((name, "fc", fc))
    return out


def transfer_from(source: VGG | str | Path, target: VGG) -> TransferReport:
    """Copy A's first four conv and last three FC layers into ``target``, in place."""
    if not isinstance(source, VGG):
        from .checkpoint import load_model

        source = load_model(source)
    report = TransferReport(source.spec.display_name, target.spec.display_name)
    src_layers = _weight_layers(source)
    src_convs = [layer for layer in src_layers if layer[1] == "conv"][:CONVS_FROM_A]
    src_fcs = [layer for layer in src_layers if layer[1] == "fc"][-FCS_FROM_A:]
    tgt_layers = _weight_layers(target)
    tgt_by_name = {name: (kind, module) for name, kind, module in tgt_layers}
    tgt_fcs = [layer for layer in tgt_layers if layer[1] == "fc"][-FCS_FROM_A:]
    if len(src_convs) < CONVS_FROM_A or len(src_fcs) < FCS_FROM_A:
        raise WeightsError(
            f"{source.spec.display_name} has {len(src_convs)} conv and {len(src_fcs)} FC layers; the paper's "
            f"transfer takes {CONVS_FROM_A} conv and {FCS_FROM_A} FC layers from a trained A"
        )
    if len(tgt_fcs) < FCS_FROM_A:
        raise WeightsError(f"{target.spec.display_name} has fewer than {FCS_FROM_A} FC layers to receive A's")

    pairs: list[tuple[str, nn.Module, str, nn.Module]] = []
    for name, _, module in src_convs:
        if name not in tgt_by_name or tgt_by_name[name][0] != "conv":
            raise WeightsError(
                f"{target.spec.display_name} has no conv layer {name} to receive {source.spec.display_name}'s {name}"
            )
        pairs.append((name, tgt_by_name[name][1], name, module))
    pairs += [(t_name, t_mod, s_name, s_mod) for (t_name, _, t_mod), (s_name, _, s_mod) in zip(tgt_fcs, src_fcs)]

    with torch.no_grad():
        for t_name, t_mod, s_name, s_mod in pairs:
            if t_mod.weight.shape != s_mod.weight.shape:
                raise WeightsError(
                    f"cannot copy {source.spec.display_name}'s {s_name} into {t_name}: shapes "
                    f"{tuple(s_mod.weight.shape)} and {tuple(t_mod.weight.shape)} differ"
                )
            t_mod.weight.copy_(s_mod.weight)
            t_mod.bias.copy_(s_mod.bias)
            report.copied.append((t_name, s_name, tuple(t_mod.weight.shape)))
    copied = {t_name for t_name, *_ in pairs}
    for name, kind, _ in tgt_layers:
        if name not in copied:
            why = (
                f"not one of {source.spec.display_name}'s first {CONVS_FROM_A} conv layers"
                if kind == "conv"
                else f"not one of the last {FCS_FROM_A} FC layers"
            )
            report.random.append((name, why))
    if source.preprocessing is not None and target.preprocessing is None:  # A's layers take the inputs A was trained on
        target.preprocessing = source.preprocessing
    return report
