"""One training step of a compiled spec against torchvision's same model, in one run.

A training step = forward, cross-entropy, backward, SGD step (momentum 0.9, weight decay 5e-4)
on one batch, as ``vggspec train`` does it. Both models get the same weights (vggspec loads
torchvision's state dict); torchvision's model has an ``AdaptiveAvgPool2d((7, 7))`` (an identity
at 224×224) and vggspec's an input-size check instead. Interleaved rounds, medians.

Goal (issue 4): vggspec's speed / torchvision's ≥ 0.97, i.e. the compiled module costs nothing
extra. The ratio is the median over rounds of each round's torchvision time / vggspec time (the
two run back to back, in alternating order), which drift on a shared machine affects least.

    python tools/bench_train.py                 # A (vgg11), batch 4, 10 rounds
    python tools/bench_train.py --spec D --batch 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
    parser.add_argument("--spec", choices=sorted(TORCHVISION), default="A")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
