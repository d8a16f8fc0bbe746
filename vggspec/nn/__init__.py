"""The torch network and its weights files.

    compiler.py         Spec → ``VGG`` (torch modules under Caffe names), initialised or loaded (``build``)
    devices.py          a device's free memory, and whether a network or a forward pass fits in it
    weights_file.py     weights files: found, recognised by content, read (every entry and checksum checked), written
    checkpoint.py       a model's checkpoint: saved, its spec read back, rebuilt (``load_model``)
    integrity.py        checksums of a checkpoint's entries, NaN weights found
    safetensors_file.py a checkpoint's entries in a ``.safetensors`` file (its bytes; read through weights_file)
    pretrained.py       torchvision's weights by name (``torchvision:vgg16``), from the hub cache
    dense.py            FC layers as convolutions: whole-image evaluation (Section 3.2)
    transfer.py         Section 3.1's initialisation from a trained shallower net
    inference.py        a copy made fast for inference (batch norm folded, channels-last, bf16)
    export.py           torch.export, TorchScript, ONNX, a standalone source file
    verify.py           the compiled network checked against the analysis

Importing this package imports no torch; its names import it when asked for.
"""

import importlib

_API = {
    "VGG": "compiler",
    "build": "compiler",
    "to_dense": "dense",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "transfer_from": "transfer",
    "export_model": "export",
    "optimize_for_inference": "inference",
    "bf16_supported": "inference",
}


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'vggspec.nn' has no attribute '{name}'")


__all__ = sorted(_API)
