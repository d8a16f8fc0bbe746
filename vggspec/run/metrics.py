"""Top-1 and top-5 error (Section 4): one definition for the trainer's validation and the evaluator."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def top_k_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """For each k, how many rows of ``scores`` (N, classes) have their label among their k highest
    (float64 counts, on the CPU). A row with a NaN, an image that could not be read, counts as wrong."""
    valid = ~torch.isnan(scores).any(dim=1)
    top = scores.nan_to_num(-1.0).topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = (top == labels[:, None]) & valid[:, None]
    return torch.tensor([hits[:, :k].any(dim=1).sum().item() for k in ks], dtype=torch.float64)


def top_errors(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 and top-5 error of posteriors or scores; an image without them (NaN) counts as wrong."""
    if len(labels) == 0:
        return 1.0, 1.0
    top1, top5 = (1 - top_k_correct(scores, labels) / len(labels)).tolist()
    return top1, top5
