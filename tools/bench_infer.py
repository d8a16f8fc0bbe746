"""How fast does a vggspec model classify images on the CPU, next to torchvision's, and its fast path?

For the paper's configuration A (torchvision's vgg11) or D (vgg16) this script measures, in one
process, images per second of a forward pass on a batch of 224×224 images:

* **torchvision fp32**: ``torchvision.models.vgg11()`` in eval mode under ``torch.no_grad()``,
  what a PyTorch user runs; every ratio is against this;
* **vggspec fp32**: ``vggspec.build(spec, weights=<the same state dict>)``, eval mode, ``no_grad``;
* **fast path, each ingredient added in turn** (:func:`vggspec.nn.inference.optimize_for_inference`):
  channels-last fp32 (with eval mode, batch-norm folding and ``inference_mode``, which cost nothing
  and matter little for speed), then channels-last bf16 (marked *emulated* when the CPU lacks
  native bf16: then the default fast path stays fp32), then, with ``--compile``, ``torch.compile``
  on top of the default fast path (its compile time is printed); with ``--autocast``, also bf16
  by ``torch.autocast`` on fp32 weights, the alternative the fast path rejects.

It checks that every method's scores agree with torchvision's on the same batch (max abs
difference; top-1 on every image), and reports the achieved GFLOP/s (vggspec's FLOPs per image ×
images/s) as a fraction of a 2048×2048 @ 2048×2048 matmul's GFLOP/s measured in the same rounds
(fp32, and bf16 for bf16 rows): how close each method gets to what the CPU's GEMM can do.

Goals (the issue's): the built module is never slower than torchvision's (ratio ≥ 0.95, i.e. 1.0
within the noise of this machine), and the default fast path is ≥ 1.3× torchvision's fp32.

Method: weights are torchvision's layout, initialised deterministically (He-normal, so scores are
O(1) and top-1 is meaningful; never uninitialised memory, whose NaNs and denormals distort
timings). Each method is warmed up once, then timed in interleaved rounds (one forward each per
round, the order rotating from round to round, the matmul as the median of 3 calls), with the GC
off during a call. Times are medians over rounds; ratios (× and the matmul fractions) are taken
within each round, then the median over rounds: this machine is shared and goes through phases of
load, tens of seconds long, in which everything runs up to 2× slower; a round (a few seconds)
mostly sits in one phase, so its ratios hold while its absolute times don't.

Run from anywhere (it benchmarks the checkout it lives in)::

    python tools/bench_infer.py                        # A, batch 8, 11 rounds: 1-2 min
    python tools/bench_infer.py --quick                # 3 rounds: ~30 s, rougher
    python tools/bench_infer.py --spec D               # vgg16, 7 rounds: 1-2 min
    python tools/bench_infer.py --compile --autocast   # + torch.compile (20-40 s to compile) and autocast
    ONEDNN_MAX_CPU_ISA=AVX512_CORE python tools/bench_infer.py   # as if the CPU had no AVX512-BF16

Exits 1 if any method's scores disagree with torchvision's.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not

import torch  # noqa: E402
import torchvision  # noqa: E402

import vggspec  # noqa: E402
from vggspec.nn.inference import _cpu_flags, bf16_supported, optimize_for_inference  # noqa: E402

NETWORKS = {"A": "vgg11", "D": "vgg16"}
DEFAULT_ROUNDS = {"A": 11, "D": 7}
IMAGE = 224
MATMUL_N = 2048
GOAL_BUILT = 0.95  # "never slower": 1.0 within this machine's noise
GOAL_FAST = 1.3
FP32_TOLERANCE = 1e-4  # max abs difference / max |score|
BF16_TOLERANCE = 5e-2  # bf16 keeps 8 significant bits: ≈0.4 % per rounding, accumulated over 11–16 layers


# --- models --------------------------------------------------------------------------------


def torchvision_model(arch: str) -> torch.nn.Module:
    """torchvision's model, built on the meta device and materialised once, initialised He-normal."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)()
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                module.bias.normal_(0.0, 0.01, generator=generator)
    return model.eval()


@dataclass
class Method:
    """One way to classify a batch: a callable, the dtype it computes in, and what it returned."""

    label: str
    run: Callable[[torch.Tensor], torch.Tensor]
    dtype: torch.dtype = torch.float32
    note: str = ""
    times: list[float] = field(default_factory=list)
    scores: torch.Tensor | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    def speedup_over(self, base: Method) -> float:
        """Median over rounds of base time / this time, both from the same round."""
        return statistics.median(b / t for b, t in zip(base.times, self.times))

    def matmul_fraction(self, flops_per_call: float, matmul_gflops: list[float]) -> float:
        """Median over rounds of this method's GFLOP/s / the matmul's, both from the same round."""
        return statistics.median(flops_per_call / t / 1e9 / g for t, g in zip(self.times, matmul_gflops))


def no_grad(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def autocast_bf16(model: vggspec.VGG) -> Callable[[torch.Tensor], torch.Tensor]:
    """bf16 the other way: ``torch.autocast`` over channels-last fp32 weights (re-cast every call)."""
    fp32 = optimize_for_inference(model, dtype=torch.float32).model

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32(x.contiguous(memory_format=torch.channels_last)).float()

    return run


def methods_for(
    tv: torch.nn.Module,
    model: vggspec.VGG,
    images: torch.Tensor,
    *,
    native_bf16: bool,
    compile: bool,
    autocast: bool,
) -> tuple[list[Method], float | None]:
    """The methods to time, torchvision's first; and the compile time if compiling."""
    methods = [
        Method("torchvision fp32", no_grad(tv)),
        Method("vggspec fp32", no_grad(model)),
        Method("fast: channels-last fp32", optimize_for_inference(model, dtype=torch.float32)),
        Method(
            "fast: + bf16",
            optimize_for_inference(model, dtype=torch.bfloat16),
            torch.bfloat16,
            "" if native_bf16 else "emulated: no native bf16",
        ),
    ]
    compile_s = None
    if compile:
        compiled = optimize_for_inference(model, compile=True)  # the default fast path, compiled
        start = time.perf_counter()
        compiled(images)  # the first call compiles, for this batch size (another one recompiles)
        compile_s = time.perf_counter() - start
        label = f"fast: + compile ({'bf16' if compiled.dtype == torch.bfloat16 else 'fp32'})"
        methods.append(Method(label, compiled, compiled.dtype))
    if autocast:
        methods.append(Method("bf16 by autocast (rejected)", autocast_bf16(model), torch.bfloat16))
    return methods, compile_s


# --- timing --------------------------------------------------------------------------------


def time_call(fn: Callable[[], object]) -> float:
    """Seconds for one call of ``fn`` with the GC off (as timeit)."""
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def matmul_gflops(a: torch.Tensor, b: torch.Tensor, seconds: float) -> float:
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e9


def bench(
    methods: list[Method], images: torch.Tensor, rounds: int, bf16_matmul: bool
) -> dict[torch.dtype, list[float]]:
    """Time every method once per round, interleaved and rotated; and the matmuls. Returns the
    matmul GFLOP/s per round by dtype."""
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=generator)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=generator)
    operands = {torch.float32: (a, b)}
    if bf16_matmul:
        operands[torch.bfloat16] = (a.bfloat16(), b.bfloat16())
    gflops: dict[torch.dtype, list[float]] = {dtype: [] for dtype in operands}

    def matmuls() -> None:
        for dtype, (x, y) in operands.items():
            seconds = statistics.median(time_call(lambda: torch.mm(x, y)) for _ in range(3))
            gflops[dtype].append(matmul_gflops(x, y, seconds))

    for method in methods:  # warm-up; keep the scores for the agreement check
        method.scores = method.run(images).float()
    for x, y in operands.values():
        torch.mm(x, y)

    tasks: list[Callable[[], None]] = [matmuls]
    for method in methods:
        tasks.append(lambda m=method: m.times.append(time_call(lambda: m.run(images))))
    for r in range(rounds):
        for i in range(len(tasks)):
            tasks[(r + i) % len(tasks)]()
    return gflops


# --- report --------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def isa_cap() -> str:
    """Instruction-set caps set in the environment (to emulate an older CPU), if any."""
    names = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")
    caps = [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]
    return f" (capped: {', '.join(caps)})" if caps else ""


@dataclass
class Agreement:
    max_abs: float
    relative: float
    top1_same: int
    images: int
    ok: bool


def agreement(method: Method, reference: torch.Tensor) -> Agreement:
    assert method.scores is not None
    diff = (method.scores - reference).abs().max().item()
    relative = diff / reference.abs().max().item()
    top1 = int((method.scores.argmax(1) == reference.argmax(1)).sum())
    tolerance = FP32_TOLERANCE if method.dtype == torch.float32 else BF16_TOLERANCE
    ok = relative <= tolerance and top1 == len(reference)
    return Agreement(diff, relative, top1, len(reference), ok)


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", choices=sorted(NETWORKS), default="A", help="paper configuration (default A)")
    parser.add_argument("--batch", type=int, default=8, help="images per forward (default 8)")
    parser.add_argument("--repeat", type=int, help="timing rounds (default 11 for A, 7 for D; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="3 rounds: rougher numbers, ~30 s for A")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile on the fast path (20-40 s to compile)"
    )
    parser.add_argument("--autocast", action="store_true", help="also time bf16 by torch.autocast (the rejected way)")
    parser.add_argument("--show-rounds", action="store_true", help="also print every round's time per method")
    args = parser.parse_args(argv)
    rounds = args.repeat or (3 if args.quick else DEFAULT_ROUNDS[args.spec])
    arch = NETWORKS[args.spec]
    spec = vggspec.load(ROOT / "specs" / f"{args.spec}.vgg")
    flops_per_image = vggspec.analyze(spec).flops
    native_bf16 = bf16_supported("cpu")
    flags = sorted(set(_cpu_flags()) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})

    print(
        f"vggspec {vggspec.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"Python {sys.version.split()[0]}, torch threads {torch.get_num_threads()}\n"
        f"CPU: {cpu_model()}, {torch.backends.cpu.get_cpu_capability()} kernels; flags: {' '.join(flags) or '-'}; "
        f"native bf16: {yes_no(native_bf16).lower()}{isa_cap()}\n"
        f"{args.spec} ({arch}), batch {args.batch} of {IMAGE}×{IMAGE}, {flops_per_image / 1e9:.2f} GFLOP/image, "
        f"{rounds} round(s)"
    )
    tv = torchvision_model(arch)
    model = vggspec.build(spec, weights=tv.state_dict()).eval()
    images = torch.randn(args.batch, *model.input_shape, generator=torch.Generator().manual_seed(2))
    methods, compile_s = methods_for(
        tv, model, images, native_bf16=native_bf16, compile=args.compile, autocast=args.autocast
    )
    default_dtype = optimize_for_inference(model, dtype="auto").dtype  # what the default picks here
    # Without native bf16 a bf16 matmul falls back to a slow reference kernel: minutes, and no peak.
    gflops = bench(methods, images, rounds, bf16_matmul=native_bf16)
    peak = {dtype: statistics.median(values) for dtype, values in gflops.items()}
    if compile_s is not None:
        print(f"torch.compile: first call (compiling) took {compile_s:.1f} s")
    print()

    base = methods[0]
    reference = base.scores
    assert reference is not None
    bf16_peak = f"bf16 {peak[torch.bfloat16]:.0f} GFLOP/s" if torch.bfloat16 in peak else "bf16 not measured"
    print(
        "ms/batch, img/s, GFLOP/s: medians over rounds. ×: torchvision fp32's time / the method's;\n"
        f"%fp32mm, %ownmm: its GFLOP/s / a {MATMUL_N}² matmul's (fp32 {peak[torch.float32]:.0f} GFLOP/s, "
        f"{bf16_peak}; median)\nin fp32 or its own dtype. Both within each round, median over rounds. "
        "max|Δ|, rel, top-1: against\ntorchvision's scores."
    )
    header = (
        f"{'method':<28} {'ms/batch':>8} {'img/s':>6} {'×':>5} {'GFLOP/s':>7} {'%fp32mm':>7} "
        f"{'%ownmm':>6}  {'max|Δ|':>8} {'rel':>7} {'top-1':>5} {'agree':>5}"
    )
    print(header)
    print("-" * len(header))
    all_agree = True
    for method in methods:
        images_s = args.batch / method.median_s
        achieved = flops_per_image * images_s / 1e9
        flops_per_call = flops_per_image * args.batch
        of_fp32 = method.matmul_fraction(flops_per_call, gflops[torch.float32])
        own = (
            f"{100 * method.matmul_fraction(flops_per_call, gflops[method.dtype]):>5.0f}%"
            if method.dtype in gflops
            else f"{'-':>6}"
        )
        ag = agreement(method, reference)
        all_agree &= ag.ok
        print(
            f"{method.label:<28} {method.median_s * 1e3:>8.0f} {images_s:>6.2f} "
            f"{method.speedup_over(base):>4.2f}× {achieved:>7.0f} "
            f"{100 * of_fp32:>6.0f}% {own}  "
            f"{ag.max_abs:>8.1e} {ag.relative:>7.1e} {ag.top1_same:>2}/{ag.images:<2} {yes_no(ag.ok):>5}"
            + (f"  ({method.note})" if method.note else "")
        )
    if args.show_rounds:
        print("Per round [ms]:")
        for method in methods:
            print(f"  {method.label:<28} " + " ".join(f"{t * 1e3:.0f}" for t in method.times))
    print(
        f"Tolerance: max|Δ| ≤ {FP32_TOLERANCE:g} × max|score| ({reference.abs().max().item():.1f}) in fp32, "
        f"≤ {BF16_TOLERANCE:g} × in bf16; top-1 identical on every image."
    )
    print()

    built = methods[1].speedup_over(base)
    fast_fp32 = methods[2].speedup_over(base)
    fast_bf16 = methods[3].speedup_over(base)
    fast = fast_bf16 if default_dtype == torch.bfloat16 else fast_fp32
    print(
        f"Default fast path here (dtype='auto'): channels-last {'bf16' if default_dtype == torch.bfloat16 else 'fp32'}"
        f" ({'native bf16' if native_bf16 else 'no native bf16, so fp32'}).\n"
        f"Goal: vggspec's built module ≥ torchvision's ({built:.2f}×, ≥ {GOAL_BUILT} counts as "
        f"equal within noise): {'met' if built >= GOAL_BUILT else 'NOT met'}.\n"
        f"Goal: default fast path ≥ {GOAL_FAST}× torchvision's fp32 ({fast:.2f}×): "
        f"{'met' if fast >= GOAL_FAST else 'NOT met'}."
        f" fp32-only fast path: {fast_fp32:.2f}× ({'≥' if fast_fp32 >= GOAL_FAST else '<'} {GOAL_FAST})."
    )
    print(f"Scores agree with torchvision's: {'all' if all_agree else 'NOT ALL'}.")
    return 0 if all_agree else 1


if __name__ == "__main__":
    sys.exit(main())
