"""One training step of a compiled spec against torchvision's same model, or with ``--compile`` of a
spec eager against under torch.compile, in one run.

A training step = forward, cross-entropy, backward, SGD step (momentum 0.9, weight decay 5e-4)
on one batch, as ``vggspec train`` does it. Both models get the same weights (vggspec loads
torchvision's state dict); torchvision's model has an ``AdaptiveAvgPool2d((7, 7))`` (an identity
at 224×224) and vggspec's an input-size check instead. Interleaved rounds, medians.

Goal (issue 4): vggspec's speed / torchvision's ≥ 0.97, i.e. the compiled module costs nothing
extra. The ratio is the median over rounds of each round's torchvision time / vggspec time (the
two run back to back, in alternating order), which drift on a shared machine affects least.

    python tools/bench_train.py                 # A (vgg11), batch 4, 10 rounds
    python tools/bench_train.py --spec D --batch 2

``--compile``: the same step of one spec (by default small/A-narrow-32, batch 64) eager and under
torch.compile as ``vggspec train --compile`` runs it (:class:`vggspec.nn.inference.Compiled`, the
backward lowered with the first forward), the two with the same weights and batch: the compile time
(the first compiled step, in an empty inductor cache unless ``--warm-cache``), images/s of each after
a warm-up step, and their ratio (the median of per-round ratios, as above).

    python tools/bench_train.py --compile --threads 1 --rounds 20   # BENCHMARKS.md: one thread is steadier
    python tools/bench_train.py --compile --threads 1 --rounds 20 --spec small/D-narrow-32-bn
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
import torchvision  # noqa: E402

import vggspec  # noqa: E402
from vggspec.nn.compiler import initialise  # noqa: E402
from vggspec.nn.inference import Compiled  # noqa: E402
from vggspec.spec.bundled import spec_path  # noqa: E402

TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}


def step_fn(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", help="A, B, D or E (default: A); with --compile any bundled spec or file")
    parser.add_argument("--batch", type=int, help="images a step (default: 4; with --compile 64)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="eager against torch.compile, one spec")
    parser.add_argument("--warm-cache", action="store_true", help="with --compile: inductor's cache as it is")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:
        return compare_compiled(args.spec or "small/A-narrow-32", args.batch or 64, args.rounds, args.warm_cache)
    args.spec, args.batch = args.spec or "A", args.batch or 4
    if args.spec not in TORCHVISION:
        parser.error(f"--spec: one of {', '.join(sorted(TORCHVISION))} (torchvision has those)")

    with torch.device("meta"):
        reference = getattr(torchvision.models, TORCHVISION[args.spec])()
    reference = reference.to_empty(device="cpu")
    initialise(reference, "kaiming", seed=0)
    reference.train()
    model = vggspec.build(vggspec.load(ROOT / "specs" / f"{args.spec}.vgg"), weights=reference.state_dict()).train()

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 1000, (args.batch,), generator=generator)
    steps = {"torchvision": step_fn(reference, images, labels), "vggspec": step_fn(model, images, labels)}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(args.rounds):
        # alternate who goes first: the machine is shared, and drift within a round is common
        for name in list(steps) if round_ % 2 == 0 else list(steps)[::-1]:
            times[name].append(seconds(steps[name]))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    # the ratio of each round's pair, then their median: robust to drift between rounds
    ratio = statistics.median(tv / vs for tv, vs in zip(times["torchvision"], times["vggspec"]))
    flops = 3 * vggspec.analyze(model.spec).flops * args.batch  # forward + backward ≈ 3 × forward
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.spec} ({TORCHVISION[args.spec]}), "
        f"batch {args.batch} at 224×224, {args.rounds} rounds, median seconds per training step\n"
    )
    for name, value in median.items():
        print(f"{name:<12} {value:8.3f} s   {args.batch / value:6.2f} images/s   ≈{flops / value / 1e9:6.1f} GFLOP/s")
    print(
        f"\nspeed ratio vggspec / torchvision (median of per-round ratios): {ratio:.3f} "
        f"(goal ≥ 0.97: {'met' if ratio >= 0.97 else 'NOT met'})"
    )
    return 0


def compare_compiled(name: str, batch: int, rounds: int, warm_cache: bool) -> int:
    """One spec's training step eager and compiled, with the same weights and batch: the compile time, each
    one's images/s after warm-up, and the speed ratio compiled / eager."""
    if not warm_cache:  # the compile time a first run sees: nothing compiled before
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-train-inductor-")
    eager = vggspec.build(vggspec.load(spec_path(name)), init="kaiming", seed=0).train()
    compiled = Compiled(copy.deepcopy(eager), backward=True)
    spec = eager.spec
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, spec.input.channels, spec.input.size, spec.input.size, generator=generator)
    labels = torch.randint(0, eager.classifier[-1].fc.out_features, (batch,), generator=generator)
    steps = {"eager": step_fn(eager, images, labels), "compiled": step_fn(compiled, images, labels)}
    compile_seconds = seconds(steps["compiled"])  # the first step: the forward and backward compiled
    if not compiled.compiled:
        print("torch.compile failed (see the warning above): nothing to compare", file=sys.stderr)
        return 1
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(rounds):
        for step_name in list(steps) if round_ % 2 == 0 else list(steps)[::-1]:
            times[step_name].append(seconds(steps[step_name]))
    median = {step_name: statistics.median(ts) for step_name, ts in times.items()}
    ratio = statistics.median(e / c for e, c in zip(times["eager"], times["compiled"]))
    size = spec.input.size
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; {spec.display_name} ({name}), batch {batch} "
        f"at {size}×{size}, {rounds} rounds, median seconds per training step\n"
    )
    cache = "inductor's cache as found" if warm_cache else "an empty inductor cache"
    print(f"compile: the first compiled step took {compile_seconds:.1f} s ({cache})")
    for step_name, value in median.items():
        print(f"{step_name:<12} {value * 1e3:8.1f} ms   {batch / value:8.1f} images/s")
    saved = median["eager"] - median["compiled"]
    pays = f"; the compile pays for itself after {compile_seconds / saved:,.0f} steps" if saved > 0 else ""
    print(f"\nspeed ratio compiled / eager (median of per-round ratios): {ratio:.2f}{pays}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
