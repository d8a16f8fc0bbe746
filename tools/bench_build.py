"""How long does building E (VGG-19) take with vggspec, next to torchvision's own ``vgg19()``?

In one process, interleaved rounds, medians:

* torchvision: ``torchvision.models.vgg19()`` — its default initialisation (Kaiming for convs,
  N(0, 0.01) for FC), after PyTorch's own default initialisation that it overwrites;
* vggspec: ``vggspec.build(E, init="kaiming")`` — the same scheme — and ``init="paper"``;
* both on the ``meta`` device (structure only, no weights allocated).

Goal (issue 3): vggspec's construction is not slower than torchvision's. vggspec builds on the
meta device and materialises once, so it skips the default initialisation torchvision pays for.

    python tools/bench_build.py            # ~1 minute
    python tools/bench_build.py --rounds 3 # quicker, rougher
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
import torchvision  # noqa: E402

import vggspec  # noqa: E402


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    args = parser.parse_args(argv)

    spec = vggspec.load(ROOT / "specs" / "E.vgg")

    def meta_torchvision():
        with torch.device("meta"):
            return torchvision.models.vgg19()

    methods: dict[str, Callable[[], object]] = {
        "torchvision vgg19()": torchvision.models.vgg19,
        "vggspec build(E, init='kaiming')": lambda: vggspec.build(spec, init="kaiming"),
        "vggspec build(E, init='paper')": lambda: vggspec.build(spec),
        "torchvision vgg19() on meta": meta_torchvision,
        "vggspec build(E, device='meta')": lambda: vggspec.build(spec, device="meta"),
    }
    for fn in methods.values():  # warm-up: first-call costs (allocator, imports)
        seconds(fn)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            times[name].append(seconds(fn))
    median = {name: statistics.median(ts) for name, ts in times.items()}

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
          f"{args.rounds} rounds; median seconds per construction of E (143,667,240 parameters)\n")
    reference = median["torchvision vgg19()"]
    meta_reference = median["torchvision vgg19() on meta"]
    for name, value in median.items():
        base = meta_reference if "meta" in name else reference
        print(f"{name:<36} {value * 1000:9.1f} ms   {base / value:5.2f}× torchvision's speed")
    ratio = reference / median["vggspec build(E, init='kaiming')"]
    print(f"\nGoal: vggspec's construction not slower than torchvision's: {'met' if ratio >= 1 else 'NOT met'} "
          f"({ratio:.2f}× with the same initialisation scheme)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
