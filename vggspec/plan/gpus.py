"""Known GPUs' peak dense arithmetic rates, for a lower bound on training time (``analyze --device``).

Dense rates (no structured sparsity), FLOP/s, from NVIDIA's datasheets; each entry names its
source. ``tf32`` is the tensor-core rate cuDNN uses for float32 convolutions by default
(``torch.backends.cudnn.allow_tf32``); PyTorch's float32 matrix multiplications use ``fp32``
unless ``torch.backends.cuda.matmul.allow_tf32`` is set. None: the GPU has no such tensor cores.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import SpecError, did_you_mean


class GPU(NamedTuple):
    name: str
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float
    source: str


GPUS: dict[str, GPU] = {
    gpu.name: gpu
    for gpu in (
        # NVIDIA H100 Tensor Core GPU datasheet, SXM5 column (the sparse rates halved)
        GPU("h100", fp32=67e12, tf32=494.7e12, bf16=989.4e12, fp16=989.4e12, source="NVIDIA H100 datasheet (SXM)"),
        # NVIDIA A100 Tensor Core GPU datasheet (SXM4; PCIe's rates are the same)
        GPU("a100", fp32=19.5e12, tf32=156e12, bf16=312e12, fp16=312e12, source="NVIDIA A100 datasheet"),
        # NVIDIA Tesla V100 datasheet, SXM2 column: no TF32 or bf16; fp16 on tensor cores
        GPU("v100", fp32=15.7e12, tf32=None, bf16=None, fp16=125e12, source="NVIDIA V100 datasheet (SXM2)"),
        # NVIDIA A10 Tensor Core GPU datasheet (the sparse rates halved)
        GPU("a10", fp32=31.2e12, tf32=62.5e12, bf16=125e12, fp16=125e12, source="NVIDIA A10 datasheet"),
        # NVIDIA L4 Tensor Core GPU datasheet (the sparse rates halved)
        GPU("l4", fp32=30.3e12, tf32=60e12, bf16=121e12, fp16=121e12, source="NVIDIA L4 datasheet"),
        # NVIDIA T4 Tensor Core GPU datasheet: no TF32 or bf16; fp16 mixed precision on tensor cores
        GPU("t4", fp32=8.1e12, tf32=None, bf16=None, fp16=65e12, source="NVIDIA T4 datasheet"),
        # NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: tensor rates with FP32 accumulate
        GPU("rtx4090", fp32=82.6e12, tf32=82.6e12, bf16=165.2e12, fp16=165.2e12, source="NVIDIA Ada whitepaper"),
    )
}


def gpu(name: str) -> GPU:
    """A known GPU by name (case and dashes aside: H100, a-100); a SpecError naming the known ones."""
    key = name.lower().replace("-", "").replace(" ", "")
    if key in GPUS:
        return GPUS[key]
    suggestion = did_you_mean(key, GPUS)
    raise SpecError(
        f"unknown GPU '{name}'; known: {', '.join(GPUS)}",
        hint=f"did you mean '{suggestion}'?" if suggestion else "or give its peak rate: --device-flops 312e12",
    )


def rates(device: GPU, amp: str | None) -> tuple[float, float]:
    """(convolution, matrix multiplication) peak FLOP/s of a training step's precision on ``device``:
    autocast's half precision for both; in float32, TF32 for convolutions (cuDNN's default), fp32 for
    fully-connected layers (PyTorch's default)."""
    if amp == "bf16":
        if device.bf16 is None:
            raise SpecError(f"{device.name} has no bfloat16 tensor cores", hint="use --amp fp16")
        return device.bf16, device.bf16
    if amp == "fp16":
        return device.fp16, device.fp16
    return device.tf32 or device.fp32, device.fp32
