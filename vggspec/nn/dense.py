"""Dense evaluation (Section 3.2): the FC layers as convolutions, applied to whole images.

:func:`to_dense` turns a compiled :class:`VGG` into its fully-convolutional twin without
retraining: the first FC layer becomes a k×k convolution (k = the map size reaching it at the
training input: 7 for the paper's networks), the others 1×1 convolutions, their weights
reshaped. On the training input size the outputs are the original's; on a larger image the
result is a class score map, which :func:`class_scores` averages spatially and
:func:`posteriors` turns into soft-max posteriors, averaged with the flipped image's.
"""

from __future__ import annotations

import torch

from ..spec.analysis import dense_spec
from .compiler import VGG, assemble


def to_dense(model: VGG) -> VGG:
    """The fully-convolutional network computing ``model`` densely (a new module; weights copied)."""
    if model.dense:
        return model
    with torch.device("meta"):
        dense = assemble(dense_spec(model.spec))
    reference = next(model.parameters())
    dense.preprocessing = model.preprocessing  # the same weights want the same pixels
    if reference.is_meta:
        return dense.train(model.training)
    dense = dense.to_empty(device=reference.device).to(reference.dtype)
    own = dense.state_dict()
    dense.load_state_dict({key: value.reshape(own[key].shape) for key, value in model.state_dict().items()})
    return dense.train(model.training)


def class_scores(dense: VGG, images: torch.Tensor) -> torch.Tensor:
    """(N, classes): the class score map spatially averaged (sum-pooling up to a constant)."""
    return dense(images).mean(dim=(2, 3))


def posteriors(dense: VGG, images: torch.Tensor, *, flip: bool = True) -> torch.Tensor:
    """(N, classes) soft-max posteriors of whole images; with ``flip``, averaged with the mirror image's."""
    probs = class_scores(dense, images).softmax(dim=1)
    if flip:
        probs = (probs + class_scores(dense, images.flip(dims=(3,))).softmax(dim=1)) / 2
    return probs
