"""The training budget's memory estimate next to PyTorch's measurement: how close, and how much faster?

For each network and micro-batch this script compares one steady-state training step of one process
(SGD with momentum and weight decay, the trainer's loss; float32, and bf16 autocast in channels-last
format):

* vggspec: ``train_budget(spec, TrainSettings(..., device="cpu"))``: the step replayed tensor by tensor
  without torch (the CPU's allocation rules, what the measurement below runs);
* PyTorch: ``torch.distributed._tools.mem_tracker.MemTracker`` over the built module under
  ``FakeTensorMode`` (``vggspec/measured.py``: a first step for the momentum buffers, then the
  measured one; the model is assembled under the fake mode, its time included, as a user would).

It prints both peaks, their difference in bytes and in %, and both times with their ratio. Goal:
within 5 %, at least 100× faster. Method: vggspec's time is the median of 20 calls after one
warm-up; MemTracker's is one run (each run builds its own fake model), after one warm-up run that
pays torch's first-call costs.

    python tools/bench_plan.py            # ~1 min
    python tools/bench_plan.py --quick    # D only

Exits 1 if any estimate is off by more than 5 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not

from measured import tracked_step  # noqa: E402

import vggspec  # noqa: E402
from vggspec.plan.budget import TrainSettings, train_budget  # noqa: E402
from vggspec.plan.report import render_table  # noqa: E402
from vggspec.units import human_bytes  # noqa: E402

NETWORKS = ("A", "A-LRN", "D", "E", "small/D-narrow-32-bn")
BATCHES = (1, 8, 64)
VARIANTS = ((None, False), ("bf16", True))  # (amp, channels_last)
TOLERANCE = 0.05


def estimate(spec: vggspec.Spec, batch: int, amp: str | None, channels_last: bool) -> tuple[int, float]:
    settings = TrainSettings(batch=batch, amp=amp, channels_last=channels_last, device="cpu")
    train_budget(spec, settings)  # warm-up
    times = []
    for _ in range(20):
        started = time.perf_counter()
        peak = train_budget(spec, settings).peak_bytes
        times.append(time.perf_counter() - started)
    return peak, statistics.median(times)


def measure(spec: vggspec.Spec, batch: int, amp: str | None, channels_last: bool) -> tuple[int, float]:
    started = time.perf_counter()
    peak = tracked_step(spec, batch, amp=amp, channels_last=channels_last)["peak"]["Total"]
    return peak, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="D only")
    args = parser.parse_args()
    networks = ("D",) if args.quick else NETWORKS
    tracked_step(vggspec.load("small/A-narrow-32"), 2)  # torch's first-call costs, outside the timings
    rows, errors, ratios = [], [], []
    for name in networks:
        spec = vggspec.load(name)
        for batch in BATCHES:
            for amp, channels_last in VARIANTS:
                ours, our_time = estimate(spec, batch, amp, channels_last)
                theirs, their_time = measure(spec, batch, amp, channels_last)
                error = (ours - theirs) / theirs
                errors.append(abs(error))
                ratios.append(their_time / our_time)
                rows.append(
                    [
                        name,
                        str(batch),
                        f"{amp}, channels-last" if amp else "float32",
                        human_bytes(ours),
                        human_bytes(theirs),
                        f"{ours - theirs:+,}",
                        f"{error:+.3%}",
                        f"{our_time * 1000:.2f} ms",
                        f"{their_time * 1000:.0f} ms",
                        f"{their_time / our_time:.0f}×",
                    ]
                )
    header = ["network", "batch", "precision", "vggspec peak", "MemTracker peak", "Δ bytes", "error", "vggspec"]
    print(render_table([*header, "MemTracker", "faster"], rows, "lrlrrrrrrr"))
    print(
        f"\nlargest error {max(errors):.3%} (goal: within {TOLERANCE:.0%}); vggspec faster by "
        f"{min(ratios):.0f}× to {max(ratios):.0f}× (median {statistics.median(ratios):.0f}×; goal: at least 100×)"
    )
    return 0 if max(errors) <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
