"""How much memory does a DataLoader worker copy from the training process while it reads samples?

A worker is a fork of the training process: it shares its pages until it writes to them. Reading
a Python object writes to it (its reference count), so a worker that looks up ``(path, label)``
tuples copies every page they live on, and every worker of every training process holds its own
copy by the end of an epoch. Two datasets over the same ImageNet-sized list of samples (1.28
million synthetic paths; nothing is read from disk), each read whole by two workers:

* **tuples**: ``samples[i]`` from a tuple of ``(path, label)`` tuples (what ``ImageFolder.samples``
  is, and what the datasets read before);
* **vggspec**: ``PackedSamples`` (``vggspec/data.py``): the paths in one UTF-8 byte array with
  their end offsets, the labels in an integer array, as ``TrainDataset`` and ``EvalDataset`` read.

Reported: each worker's private memory (USS, from /proc/PID/smaps_rollup: its own copies, not
the shared pages) after its first batch and after one pass over all samples, and the ratio of the
growths. Linux only (fork and /proc).

    python tools/bench_memory.py            # ~10 s
    python tools/bench_memory.py --samples 200000
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not

import torch  # noqa: E402

from vggspec.data.datasets import PackedSamples  # noqa: E402

IMAGENET_TRAIN = 1_281_167
WORKERS = 2


class TupleSamples(torch.utils.data.Dataset):
    def __init__(self, samples: tuple[tuple[str, int], ...]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> int:
        path, label = self.samples[index]
        return len(path) + label  # a real dataset opens the path here


class Packed(torch.utils.data.Dataset):
    def __init__(self, samples: tuple[tuple[str, int], ...]) -> None:
        self.samples = PackedSamples(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> int:
        path, label = self.samples[index]
        return len(path) + label


def private_mb(pid: int) -> float:
    """Unique set size: the pages only this process holds."""
    total_kb = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def one_pass(dataset: torch.utils.data.Dataset) -> tuple[list[float], list[float]]:
    """Each worker's private MB after its first batch and after the whole pass."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4096, num_workers=WORKERS, persistent_workers=True, multiprocessing_context="fork"
    )
    batches = iter(loader)
    next(batches)
    pids = [worker.pid for worker in batches._workers]
    first = [private_mb(pid) for pid in pids]
    for _ in batches:
        pass
    last = [private_mb(pid) for pid in pids]
    del batches, loader
    gc.collect()
    return first, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=IMAGENET_TRAIN, help="how many (default: ImageNet's train set)")
    args = parser.parse_args(argv)
    if not Path("/proc/self/smaps_rollup").exists():
        print("needs Linux (/proc/PID/smaps_rollup)", file=sys.stderr)
        return 2
    print(f"Python {platform.python_version()}, torch {torch.__version__}; {args.samples:,} samples, {WORKERS} workers")
    samples = tuple(
        (f"/data/imagenet/train/n{i % 1000:08d}/n{i % 1000:08d}_{i}.JPEG", i % 1000) for i in range(args.samples)
    )
    growth = {}
    print(f"\n{'':10}{'per worker, MB:':>18}{'after 1st batch':>18}{'after the pass':>18}{'growth':>10}")
    for name, dataset in (("tuples", TupleSamples(samples)), ("vggspec", Packed(samples))):
        first, last = one_pass(dataset)
        growth[name] = statistics.mean(b - a for a, b in zip(first, last))
        print(
            f"{name:10}{'':>18}{statistics.mean(first):>18.0f}{statistics.mean(last):>18.0f}{growth[name]:>10.1f}"
        )
    ratio = growth["tuples"] / max(growth["vggspec"], 1.0)
    print(
        f"\nvggspec's workers copy {growth['vggspec']:.1f} MB each in a pass, tuples' {growth['tuples']:.0f} MB "
        f"({ratio:.0f}× more; growth under 1 MB counted as 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
