"""How fast is vggspec's static analysis next to counting with PyTorch tools; do the counts agree?

For the paper's configurations A, B, D and E (torchvision's vgg11, vgg13, vgg16, vgg19) this
script measures, in one process:

* vggspec: the analysis of an already-parsed spec (layer graph + analysis), and
  ``analyze(parse(text))`` from the file's text (the file is read once, outside the timing);
* fvcore: what a user has to run to get the same number from torchvision's model: build it
  (on the meta device, then ``to_empty`` on the CPU: weights don't matter for counting and this
  skips seconds of initialisation) and ``FlopCountAnalysis(model, zeros(1, 3, 224, 224)).total()``,
  which traces a real forward pass on the CPU;
* PyTorch's ``torch.utils.flop_counter.FlopCounterMode``: build the model on the meta device and
  run a forward on a meta tensor inside the mode (no arithmetic is done at all).

It then checks that the counts agree: parameters against torchvision's ``model.parameters()``,
MACs against fvcore's conv + linear operators (fvcore's total also holds torchvision's
``adaptive_avg_pool2d``, a layer the paper's network doesn't have), FLOPs against
FlopCounterMode (which counts 2 × MACs).

Last, it measures the start-up cost of a fresh process that imports vggspec and analyses every
spec in ``specs/`` against ``python -c pass``, and checks that this process never imported torch.

Method: the machine this runs on is shared and noisy, so each method is warmed up once (first-call
overheads), then the methods are timed in interleaved rounds (drift hits them all alike) and the
median over rounds is reported. vggspec is timed in batches of many calls, per call. As ``timeit``
does, the garbage collector is off during a timed call. Ratios are "alternative time / vggspec
parse+analyze time": building the model from its definition is what parsing the spec is.

Run from anywhere (it benchmarks the checkout it lives in)::

    python tools/bench_analyze.py              # ~40 s
    python tools/bench_analyze.py --quick      # ~10 s (3 s of it importing torch), rougher
    python tools/bench_analyze.py --repeat 15  # more rounds, steadier medians

Exits 1 if any count disagrees or the vggspec process imported torch.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not

# fvcore's import and its tracing use torch.jit, which warns that it is deprecated: not our
# business here, and it would interleave with the table.
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
import torchvision  # noqa: E402
from fvcore.nn import FlopCountAnalysis  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import vggspec  # noqa: E402
from vggspec.spec.analysis import analyze_graph  # noqa: E402
from vggspec.spec.graph import to_graph  # noqa: E402

# Paper configuration -> torchvision constructor.
NETWORKS = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
INPUT_SHAPE = (1, 3, 224, 224)
GOAL_RATIO = 20.0


# --- timing ----------------------------------------------------------------------------------


def time_per_call(fn: Callable[[], object], calls: int = 1) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls, with the GC off (as timeit).

    No ``gc.collect()`` first: with torch loaded one costs ~0.15 s, more than the budget.
    """
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        gc.enable()


def calls_for(fn: Callable[[], object], budget_s: float) -> int:
    """How many calls of a fast ``fn`` fill ``budget_s``, so timer resolution doesn't matter."""
    return max(1, round(budget_s / time_per_call(fn, 10)))


# --- the three ways to count ----------------------------------------------------------------


def build_model(arch: str, device: str) -> torch.nn.Module:
    """torchvision's model without paying for weight initialisation (values don't matter)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)()
    if device != "meta":
        model = model.to_empty(device=device)
    return model.eval()


def count_fvcore(arch: str) -> FlopCountAnalysis:
    """What an fvcore user runs: build the model, trace a forward on the CPU, ask for the total."""
    analysis = FlopCountAnalysis(build_model(arch, "cpu"), torch.zeros(INPUT_SHAPE))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.total()
    return analysis


def count_flop_counter(arch: str) -> int:
    """What a FlopCounterMode user runs: a forward on the meta device inside the mode."""
    model = build_model(arch, "meta")
    with torch.device("meta"):
        x = torch.zeros(INPUT_SHAPE)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


# --- one network -----------------------------------------------------------------------------


@dataclass
class NetworkResult:
    """Median seconds per call of each method, and the counts each one gave."""

    config: str
    arch: str
    analyze_s: float
    parse_analyze_s: float
    fvcore_s: float
    flop_counter_s: float
    params: int
    torch_params: int
    macs: int
    fvcore_conv_linear: int
    fvcore_other: dict[str, int]
    flops: int
    counter_flops: int

    @property
    def params_agree(self) -> bool:
        return self.params == self.torch_params

    @property
    def macs_agree(self) -> bool:
        return self.macs == self.fvcore_conv_linear

    @property
    def flops_agree(self) -> bool:
        return self.flops == self.counter_flops

    @property
    def agree(self) -> bool:
        return self.params_agree and self.macs_agree and self.flops_agree

    @property
    def fastest_alternative_s(self) -> float:
        return min(self.fvcore_s, self.flop_counter_s)


def bench_network(config: str, arch: str, rounds: int, batch_s: float) -> NetworkResult:
    """Warm each method up (keeping its counts), then time them in interleaved rounds."""
    text = (ROOT / "specs" / f"{config}.vgg").read_text()
    spec = vggspec.parse(text)

    def analyze_only() -> vggspec.Analysis:
        # Not vggspec.analyze(spec): a parsed spec keeps the analysis the parser's check made,
        # so that analyze(parse(text)) analyses once; time building the graph and analysing it.
        return analyze_graph(to_graph(spec))

    def parse_and_analyze() -> vggspec.Analysis:
        return vggspec.analyze(vggspec.parse(text))

    analysis = parse_and_analyze()  # warm-ups, whose results are the counts compared below
    fvcore = count_fvcore(arch)
    counter_flops = count_flop_counter(arch)
    analyze_only()

    analyze_calls = calls_for(analyze_only, batch_s)
    parse_calls = calls_for(parse_and_analyze, batch_s)
    times: dict[str, list[float]] = {"analyze": [], "parse": [], "fvcore": [], "counter": []}
    for _ in range(rounds):
        times["analyze"].append(time_per_call(analyze_only, analyze_calls))
        times["parse"].append(time_per_call(parse_and_analyze, parse_calls))
        times["fvcore"].append(time_per_call(lambda: count_fvcore(arch)))
        times["counter"].append(time_per_call(lambda: count_flop_counter(arch)))
    median = {method: statistics.median(ts) for method, ts in times.items()}

    by_operator = fvcore.by_operator()
    return NetworkResult(
        config=config,
        arch=arch,
        analyze_s=median["analyze"],
        parse_analyze_s=median["parse"],
        fvcore_s=median["fvcore"],
        flop_counter_s=median["counter"],
        params=analysis.params,
        torch_params=sum(p.numel() for p in build_model(arch, "meta").parameters()),
        macs=analysis.macs,
        fvcore_conv_linear=by_operator.get("conv", 0) + by_operator.get("linear", 0),
        fvcore_other={op: n for op, n in by_operator.items() if op not in ("conv", "linear")},
        flops=analysis.flops,
        counter_flops=counter_flops,
    )


# --- process start-up ------------------------------------------------------------------------

VGGSPEC_SNIPPET = (
    "import glob, sys, vggspec; "
    "[vggspec.analyze(vggspec.load(p)) for p in glob.glob('specs/*.vgg')]; "
    "print('torch' in sys.modules)"
)


@dataclass
class StartupResult:
    empty_s: float
    vggspec_s: float
    specs: int
    imported_torch: bool


def run_python(code: str) -> tuple[float, str]:
    """Wall time and stdout of a fresh interpreter (the real one, not a pyenv shim) in the repo."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - start, done.stdout.strip()


def bench_startup(runs: int) -> StartupResult:
    """Median wall time of `python -c pass` and of the vggspec snippet, run alternately."""
    run_python("pass")  # warm the OS file cache for both
    run_python(VGGSPEC_SNIPPET)
    empty, full, outputs = [], [], set()
    for _ in range(runs):
        empty.append(run_python("pass")[0])
        seconds, output = run_python(VGGSPEC_SNIPPET)
        full.append(seconds)
        outputs.add(output)
    return StartupResult(
        empty_s=statistics.median(empty),
        vggspec_s=statistics.median(full),
        specs=len(list((ROOT / "specs").glob("*.vgg"))),
        imported_torch=outputs != {"False"},
    )


# --- report ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_timings(results: list[NetworkResult]) -> None:
    print("Time per call, median over rounds [ms]; ×: alternative / vggspec parse+analyze")
    header = (
        f"{'network':<11} {'analyze':>8} {'parse+an.':>9} {'fvcore':>8} {'×':>6} "
        f"{'FlopCntr':>8} {'×':>5}   {'params':>6} {'MACs':>4} {'FLOPs':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        label = f"{r.config} ({r.arch})"
        print(
            f"{label:<11} {ms(r.analyze_s):>8} {ms(r.parse_analyze_s):>9} "
            f"{ms(r.fvcore_s):>8} {r.fvcore_s / r.parse_analyze_s:>5.0f}× "
            f"{ms(r.flop_counter_s):>8} {r.flop_counter_s / r.parse_analyze_s:>4.0f}×   "
            f"{yes_no(r.params_agree):>6} {yes_no(r.macs_agree):>4} {yes_no(r.flops_agree):>5}"
        )


def print_counts(results: list[NetworkResult]) -> None:
    print("Counts (vggspec | alternative)")
    header = (
        f"{'network':<8} {'params':>11} {'torchvision':>11}  {'MACs':>14} "
        f"{'fvcore conv+lin':>15}  {'FLOPs':>14} {'FlopCounterMode':>15}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.config:<8} {r.params:>11,} {r.torch_params:>11,}  {r.macs:>14,} "
            f"{r.fvcore_conv_linear:>15,}  {r.flops:>14,} {r.counter_flops:>15,}"
        )
    for note in sorted({other_ops_note(r.fvcore_other) for r in results}):
        print(note)
    for line in disagreements(results):
        print(line)


def disagreements(results: list[NetworkResult]) -> list[str]:
    """One line per count that differs, with the signed difference: what a bug report needs."""
    lines = []
    for r in results:
        for what, ours, theirs, source in (
            ("params", r.params, r.torch_params, "torchvision"),
            ("MACs", r.macs, r.fvcore_conv_linear, "fvcore conv+linear"),
            ("FLOPs", r.flops, r.counter_flops, "FlopCounterMode"),
        ):
            if ours != theirs:
                lines.append(
                    f"DISAGREE {r.config} {what}: vggspec {ours:,} vs {source} {theirs:,} "
                    f"(vggspec − {source} = {ours - theirs:+,})"
                )
    return lines


def other_ops_note(other: dict[str, int]) -> str:
    """Why fvcore's total() is not vggspec's MACs: the operators besides conv and linear."""
    if not other:
        return "fvcore's total() is conv + linear only."
    if other == {"adaptive_avg_pool2d": 512 * 7 * 7}:
        return (
            "fvcore's total() = conv + linear + 25,088 adaptive_avg_pool2d (512·7·7):\n"
            "torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier, an identity on the\n"
            "7×7 map of a 224×224 input. The paper's network has no such layer, so vggspec\n"
            "doesn't count it."
        )
    listed = ", ".join(f"{op} {n:,}" for op, n in sorted(other.items()))
    return f"fvcore's total() = conv + linear + {listed}, which vggspec doesn't count."


def print_summary(results: list[NetworkResult], startup: StartupResult) -> None:
    worst = min(results, key=lambda r: r.fastest_alternative_s / r.parse_analyze_s)
    ratio = worst.fastest_alternative_s / worst.parse_analyze_s
    ratio_analyze = min(r.fastest_alternative_s / r.analyze_s for r in results)
    agree = all(r.agree for r in results)
    verdict = "met" if agree and ratio >= GOAL_RATIO else "NOT met"
    print(
        f"Summary: against the fastest alternative (per network), vggspec parse+analyze is\n"
        f"≥ {ratio:.0f}× faster (worst: {worst.config}), analyze-only "
        f"≥ {ratio_analyze:.0f}×; counts {'identical' if agree else 'DISAGREE'}.\n"
        f"Goal ≥ {GOAL_RATIO:.0f}× faster with identical counts: {verdict}."
    )
    print(
        f"Process start-up: `python -c pass` {ms(startup.empty_s)} ms; import vggspec and "
        f"analyse all {startup.specs} specs\n{ms(startup.vggspec_s)} ms; vggspec's start-up "
        f"cost {ms(startup.vggspec_s - startup.empty_s)} ms. "
        f"torch imported in that process: {startup.imported_torch}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, help="timing rounds (default 9, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one round, ~10 s, rougher numbers")
    args = parser.parse_args(argv)
    rounds = args.repeat or (1 if args.quick else 9)
    batch_s = 0.01 if args.quick else 0.05
    startup_runs = 2 if args.quick else 7

    print(
        f"vggspec {vggspec.__version__}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, Python {sys.version.split()[0]}, "
        f"torch threads {torch.get_num_threads()}, {rounds} round(s)\n"
    )
    results = [bench_network(c, arch, rounds, batch_s) for c, arch in NETWORKS.items()]
    startup = bench_startup(startup_runs)
    print_timings(results)
    print()
    print_counts(results)
    print()
    print_summary(results, startup)
    return 0 if all(r.agree for r in results) and not startup.imported_torch else 1


if __name__ == "__main__":
    sys.exit(main())
