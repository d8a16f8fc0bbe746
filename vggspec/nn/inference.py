"""The fast path for inference: a compiled :class:`~vggspec.nn.compiler.VGG` made quick to evaluate.

:func:`optimize_for_inference` returns an :class:`InferenceModel`, a converted copy of the model
that takes the same inputs and returns the same class scores (as the model's dtype). What it does,
and why — each step measured with ``tools/bench_infer.py`` (BENCHMARKS.md: VGG-11, batch 8, on
a 2-core AMD EPYC Zen 4 with AVX512-BF16, torch 2.14.1; ratios against torchvision's fp32 model):

* **eval mode** — dropout off, batch norm on its running statistics: the deterministic network
  inference means. The copy is switched, never the caller's model (it may be training).
* **batch norm folded into the convolution before it** (``conv3-64 [bn]``) — exact up to
  rounding, and one pass over each activation map fewer (≈10 % on a VGG-11 with batch norm,
  measured once; not in the benchmark, whose A and D have no batch norm).
* **channels-last memory format** — oneDNN's convolutions work on NHWC; given NCHW tensors,
  PyTorch reorders every activation to NHWC and back around each convolution. 1.3–1.4× in
  fp32, which brings the network to the speed of a large fp32 matmul: the ceiling of fp32.
* **bfloat16 weights and activations, where they are faster** (``dtype="auto"``: measured once on
  a CPU with AVX512-BF16 or AMX, :func:`bf16_faster`; CUDA GPUs from Ampere on): ≈2.5× on one
  such EPYC, twice the multiply-adds per instruction and half the memory traffic — but 0.92× on
  another with AVX512-BF16 and no AMX, hence the measurement rather than a rule. The weights are converted once:
  ``torch.autocast`` instead re-casts them (VGG-11: 133 M parameters) on every call: ≈2.0×.
  Without native bf16 oneDNN emulates it: 0.53–0.58× on AVX-512 without BF16, 0.26× on AVX2 —
  slower than fp32 — so ``"auto"`` keeps fp32 there. In bf16 the scores differ from fp32 by
  bf16's rounding (≈1 % of the largest score, same top-1), not by float tolerance: pass
  ``dtype=torch.float32`` for fp32 scores.
* **``torch.inference_mode``** around the forward — no autograd bookkeeping, nothing kept for a
  backward pass: saves memory, costs nothing (speed: within noise of ``no_grad``).
* **``torch.compile``**, opt-in (``compile=True``) — 10–20 % more, but the first call compiles
  for 20–40 s (~4 s once inductor's cache is warm), again for each new input shape, and needs a
  C compiler: worth it for a long-running service, not for a script. Through :class:`Compiled`:
  where torch cannot compile (no C compiler, say), one warning, and the model runs uncompiled.

The input size is checked before anything runs, so a wrong input raises
:class:`vggspec.InputSizeError` exactly as the model does. Nothing here is CPU-specific: a model on
a CUDA device gets the same treatment (channels-last suits cuDNN's tensor-core kernels too).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .. import files
from ..errors import out_of_memory
from ..logs import log
from .compiler import VGG

DTypeLike = str | torch.dtype | None

_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# oneDNN instruction sets without bf16 dot products: capping oneDNN at one of them
# (ONEDNN_MAX_CPU_ISA=AVX512_CORE, say) makes it emulate bf16 even on a CPU that has it.
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


# -- hardware --------------------------------------------------------------------------------


def bf16_supported(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` computes bfloat16 natively, so that bf16 is faster than fp32 there.

    CPU: AVX512-BF16 or AMX (x86), unless ``ONEDNN_MAX_CPU_ISA`` forbids oneDNN to use them.
    oneDNN also runs bf16 on plain AVX-512 or AVX2, by emulation — correct, but measured ≈2.3×
    (AVX-512) to ≈5× (AVX2) slower than fp32 channels-last, hence not "supported" here. CUDA: compute
    capability 8.0 (Ampere) or later, emulation again excluded. Other devices: False.
    """
    device = torch.device("cpu" if device is None else device)
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def bf16_faster(device: str | torch.device | None = None) -> bool:
    """Whether bfloat16 runs faster than float32 on ``device``: what ``dtype="auto"`` asks.

    CUDA: native bf16 (:func:`bf16_supported`) is faster there. CPU: bf16 instructions are necessary but
    not enough — an EPYC with AVX512-BF16 and no AMX ran VGG-11 at 0.92× fp32's speed in bf16 — so the
    answer is measured, once per CPU model, torch version and thread count, by :func:`_probe_times`
    (a fraction of a second) and kept in ``$VGGSPEC_CACHE/dtype-probe.json`` (by default
    ``~/.cache/vggspec``). bf16 counts as faster from ``BF16_MARGIN`` of fp32's time down.
    """
    device = torch.device("cpu" if device is None else device)
    if device.type != "cpu" or not _cpu_has_native_bf16():
        return bf16_supported(device)
    key = f"{_cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = probe_cache_path()
    try:
        known = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(entry := known.get(key), dict) and isinstance(entry.get("bf16_faster"), bool):
        return entry["bf16_faster"]
    fp32, bf16 = _probe_times()
    faster = bf16 < BF16_MARGIN * fp32
    known[key] = {"fp32_ms": round(fp32 * 1e3, 3), "bf16_ms": round(bf16 * 1e3, 3), "bf16_faster": faster}
    if path is None:  # no cache folder: measured again next time, nothing else lost
        return faster
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(path, json.dumps(known, indent=2) + "\n")
    except OSError:  # a read-only home: the same
        pass
    return faster


BF16_MARGIN = 0.9  # bf16 must take at most this share of fp32's time: its rounding is not free


def probe_cache_path() -> Path | None:
    """Where the measured dtype decisions are kept: ``$VGGSPEC_CACHE``, ``$XDG_CACHE_HOME/vggspec`` or
    ``~/.cache/vggspec``; None where there is no home to find (``HOME`` unset in a container whose user has
    no passwd entry): then the probe measures and keeps nothing."""
    if explicit := os.environ.get("VGGSPEC_CACHE"):
        return Path(explicit) / "dtype-probe.json"
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "vggspec" / "dtype-probe.json"
    try:
        return Path.home() / ".cache" / "vggspec" / "dtype-probe.json"
    except RuntimeError:  # "Could not determine home directory"
        return None


def _probe_times() -> tuple[float, float]:
    """Seconds of a VGG-like 3×3 convolution (64 → 64 channels, 4 × 56 × 56, channels-last) in fp32 and in
    bf16 on this CPU: the best of three after a warm-up, the layer kind that dominates VGG's time."""
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 56, 56, generator=generator).to(memory_format=torch.channels_last)
    times = []
    for dtype in (torch.float32, torch.bfloat16):
        layer, inputs = copy.deepcopy(conv).to(dtype), x.to(dtype)
        with torch.inference_mode():
            layer(inputs)
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                layer(inputs)
                best = min(best, time.perf_counter() - start)
        times.append(best)
    return times[0], times[1]


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what platform says: the measured decision is this CPU's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_has_native_bf16() -> bool:
    """The CPU has bf16 instructions and oneDNN is allowed to use them."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return cap.strip().upper() not in _ONEDNN_ISAS_WITHOUT_BF16 and _cpu_has_bf16_instructions()


@lru_cache(maxsize=1)
def _cpu_has_bf16_instructions() -> bool:
    """Ask PyTorch (its own CPUID probe) when it can, else the kernel's flags in /proc/cpuinfo."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(probe is not None for probe in probes):
        try:
            return any(probe() for probe in probes)
        except RuntimeError:  # pragma: no cover - a build without the probes' backing code
            pass
    return bool(set(_cpu_flags()) & set(_CPU_BF16_FLAGS))


def _cpu_flags() -> list[str]:
    """The CPU feature flags Linux reports (empty elsewhere, or on non-x86 machines)."""
    if platform.system() != "Linux":
        return []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return value.split()
    return []


def resolve_dtype(
    dtype: DTypeLike, device: str | torch.device | None = None, default: torch.dtype = torch.float32
) -> torch.dtype:
    """The dtype a request means: ``"auto"`` → bf16 where it is faster than fp32 (:func:`bf16_faster`),
    else ``default`` (the model's own dtype); ``None`` → ``default``; a name or a ``torch.dtype`` → itself."""
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype == "auto":
        return torch.bfloat16 if default == torch.float32 and bf16_faster(device) else default
    elif isinstance(dtype, str) and dtype.lower() in _DTYPE_NAMES:
        resolved = _DTYPE_NAMES[dtype.lower()]
    else:
        raise ValueError(
            f"unknown dtype {dtype!r}: use 'auto', None, 'float32', 'bfloat16', 'float16' or a torch.dtype"
        )
    if not resolved.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type, got {resolved}")
    return resolved


# -- torch.compile, which may fail ----------------------------------------------------------

_COMPILE_FAILURES_SAID: set[str] = set()  # each reason torch.compile failed for, said once per process


class Compiled(nn.Module):
    """``module`` run through :func:`torch.compile`, and run as it is where torch cannot compile it.

    Compiling is for speed, never a reason to stop: where it fails — no C compiler for inductor's CPU
    kernels, a platform or Python that dynamo does not support, an operation inductor cannot lower — one
    line says why (a warning, once per process for each reason) and ``module`` runs uncompiled from then
    on. torch compiles at the first call, and again at an input shape it has not seen: most failures come
    there, not when this is made.

    ``module`` stays a submodule: the parameters are its own, and DDP wraps this as it would wrap
    ``module`` (compiling the module inside DDP, as torch's "Where to apply torch.compile?" advises; DDP
    still splits the graph at its gradient buckets). State-dict keys gain ``module.``: save ``module``'s.
    The compiled wrapper is kept out of the submodules (no ``_orig_mod.`` keys anywhere).

    ``dynamic``: torch.compile's (None: the first shape compiled static, a dimension seen to change compiled
    again as dynamic; True: dynamic from the start). ``backward``: lower the backward pass with the forward at
    the first call (torch does it lazily, at the first backward), so that its compile time and its failures
    come with that call too. ``on_first_call(seconds)``: told how long the first compiled call took,
    compiling included; ``say``: where the warning goes.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        dynamic: bool | None = None,
        backward: bool = False,
        on_first_call: Callable[[float], None] | None = None,
        say: Callable[[str], None] = log.warning,
    ) -> None:
        super().__init__()
        self.module = module
        self.backward = backward
        self.first_call_seconds: float | None = None
        self._on_first_call = on_first_call
        self._say = say
        try:
            compiled: Callable[..., torch.Tensor] | None = torch.compile(module, dynamic=dynamic)
        except Exception as err:  # noqa: BLE001 - what torch.compile's own checks raise (RuntimeError mostly)
            compiled = None
            self._failed(err)
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: see above

    @property
    def compiled(self) -> bool:
        """Whether calls go through torch.compile (False once it failed)."""
        return self._compiled is not None

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        compiled = self._compiled
        if compiled is None:
            return self.module(*args, **kwargs)
        first = self.first_call_seconds is None
        start = time.perf_counter()
        try:
            with _backward_lowered_now() if first and self.backward else nullcontext():
                out = compiled(*args, **kwargs)
        except Exception as err:
            if not compile_failure(err):
                raise
            self._failed(err)
            object.__setattr__(self, "_compiled", None)
            return self.module(*args, **kwargs)
        if first:
            self.first_call_seconds = time.perf_counter() - start
            if self._on_first_call is not None:
                self._on_first_call(self.first_call_seconds)
        return out

    def _failed(self, err: BaseException) -> None:
        """Say once per process why torch.compile failed (its first line: torch's own come with a traceback)."""
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        reason = f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
        if reason not in _COMPILE_FAILURES_SAID:
            _COMPILE_FAILURES_SAID.add(reason)
            self._say(f"warning: torch.compile failed ({reason}); running uncompiled")

    def extra_repr(self) -> str:
        return f"compiled={self.compiled}"


def compile_failure(err: BaseException) -> bool:
    """Whether ``err`` is torch failing to compile (dynamo's and inductor's errors: a missing or broken C
    compiler comes wrapped in them), not the model's own error nor memory running out (which the caller
    must hear about as such)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    return isinstance(err, (TorchDynamoException, CppCompileError, InvalidCxxCompiler)) and not out_of_memory(err)


def _backward_lowered_now():
    """torch.compile lowering the backward with the forward (not at the first backward), while this lasts;
    nothing where this torch has no such setting."""
    try:
        from torch._functorch import config as functorch_config

        return functorch_config.patch(force_non_lazy_backward_lowering=True)
    except (ImportError, AttributeError):  # pragma: no cover - another torch: lazily lowered, as by default
        return nullcontext()


# -- the fast path ---------------------------------------------------------------------------


class InferenceModel(nn.Module):
    """A :class:`VGG` converted for inference: call it like the model, get the model's scores.

    ``model`` is the converted copy (eval mode, batch norm folded, in ``dtype`` and the chosen
    memory format); ``dtype``, ``channels_last`` and ``compiled`` say what was applied (``compiled``:
    through torch.compile, False again once compiling failed: :class:`Compiled`); ``output_dtype`` is
    the original model's dtype, which scores are returned in.
    """

    def __init__(
        self,
        model: VGG,
        *,
        dtype: torch.dtype,
        channels_last: bool,
        compiled: bool,
        output_dtype: torch.dtype,
        dynamic: bool | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.output_dtype = output_dtype
        self.spec = model.spec
        # Not a submodule (it is ``model`` again, or wraps it): kept out of state_dict() and repr.
        run: Callable[[torch.Tensor], torch.Tensor] = Compiled(model, dynamic=dynamic) if compiled else model
        object.__setattr__(self, "_run", run)

    @property
    def compiled(self) -> bool:
        return isinstance(self._run, Compiled) and self._run.compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Checked here, before the conversion below (which fails differently on a 3-d tensor)
        # and outside the compiled graph: a wrong size raises InputSizeError, as the model does.
        self.model._check_input(x)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.inference_mode():
            scores = self._run(x.to(dtype=self.dtype, memory_format=memory_format))
        # Copied outside inference mode: an ordinary tensor, like the model's output (inference
        # tensors refuse in-place updates later). Scores are small: (N, classes), or a score map.
        return scores.to(self.output_dtype, copy=True)

    def train(self, mode: bool = True) -> InferenceModel:
        """Stays in eval mode: the fast path is for inference only (train the original model)."""
        if mode:
            raise RuntimeError(
                "an InferenceModel cannot be trained: train the original VGG, then optimise it again"
            )
        return super().train(False)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, channels_last={self.channels_last}, compiled={self.compiled}"


def optimize_for_inference(
    model: VGG,
    *,
    channels_last: bool = True,
    dtype: DTypeLike = "auto",
    compile: bool = False,
    dynamic: bool | None = None,
    fold_batch_norm: bool = True,
    inplace: bool = False,
) -> InferenceModel:
    """The fast path: a copy of ``model`` for inference (the model itself is left untouched).

    ``dtype``: ``"auto"`` (default) computes in bfloat16 where the model's device does so natively
    (:func:`bf16_supported`) and in the model's dtype elsewhere; ``None`` keeps the model's dtype;
    or name one (``torch.float32``, ``"bfloat16"``, ...). ``channels_last``: NHWC activations
    (faster convolutions on CPU and GPU). ``compile``: ``torch.compile`` the copy (slow first call; where
    torch cannot compile, a warning and the copy runs uncompiled), with torch.compile's ``dynamic`` (None: a
    second input shape compiles again, its changed dimensions dynamic; True: dynamic from the first).
    ``fold_batch_norm``: fold each eval-mode batch norm into its convolution.

    The copy costs the memory of the model's weights again (half of it in bf16); ``inplace``
    converts and wraps ``model`` itself instead, for a model that is not needed as it was
    (it is left in eval mode, folded, converted, frozen). Scores are those of ``model.eval()``
    (dropout off), within float tolerance, or bf16 rounding in bf16.
    """
    if not isinstance(model, VGG):
        raise TypeError(f"optimize_for_inference takes a vggspec VGG model, got {type(model).__name__}")
    reference = next(model.parameters())
    if reference.device.type == "meta":
        raise ValueError(
            "the model is on the meta device (no weights): build it with weights or on a real device"
        )
    target = resolve_dtype(dtype, reference.device, default=reference.dtype)
    fast = (model if inplace else copy.deepcopy(model)).eval()
    if fold_batch_norm:
        _fold_batch_norm(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast = fast.to(target)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return InferenceModel(
        fast,
        dtype=target,
        channels_last=channels_last,
        compiled=compile,
        output_dtype=reference.dtype,
        dynamic=dynamic,
    ).eval()


def _fold_batch_norm(model: nn.Module) -> None:
    """Replace each Conv2d → BatchNorm2d pair inside a Sequential by one conv (eval mode only).

    The batch norm becomes an ``nn.Identity`` in place, so module names stay as they were.
    """
    for sequential in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = sequential._modules[first], sequential._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
                and not bn.training
            ):
                sequential._modules[first] = fuse_conv_bn_eval(conv, bn)
                sequential._modules[second] = nn.Identity()
