"""How fast does vggspec make training samples, next to torchvision's standard pipeline?

The paper's training input (Section 3.1): rescale so the smallest side is S, random 224×224
crop, random flip (and a colour shift). Two ways to make one sample from a JPEG file, in one
process, without DataLoader workers (the per-sample cost, i.e. images/s per worker):

* torchvision, the standard pipeline: ``Image.open(p).convert("RGB")``, ``Resize(S)``,
  ``RandomCrop(224)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize(mean, std)``;
  for scale jittering ``Resize`` gets a random S in [256, 512] per image;
* vggspec: ``TrainDataset.__getitem__`` (``vggspec/data.py``, decoding in
  ``vggspec/decoding.py``): JPEG decoded at 1/2, 1/4 or 1/8 size when that still leaves the
  smallest side ≥ S (PIL's ``draft``), otherwise straight into a tensor
  (TorchCodec's ``decode_jpeg``); rescaled with torch's uint8 antialiased bilinear kernel
  (torchvision's ``Resize`` on tensors) and cropped, or, when the rescaled image is over 4× the
  crop's area, only the crop's region resampled by PIL (``box=``); flipped, a uint8 tensor kept in
  the interleaved (H, W, C) memory decoders write (a planar copy is a slow strided gather), plus
  the image's PCA colour shift (which torchvision doesn't do). The float conversion and the mean
  subtraction happen later, on the device (``to_device``); its cost on the CPU is reported
  separately.

Two reference rows show the floor: decoding the JPEG at full size (all torchvision can do) and
decoding at the reduced size vggspec picks at S = 256.

The images are made here, in a temporary directory: ~90% at about 500×375 (typical ImageNet
photos, JPEG quality 90 with texture and noise, ~0.45 bytes/pixel), ~10% large (2000×1500 and
4000×3000, as from a camera). Each is reported separately, since the large ones are where
decoding at reduced size pays.

Method (as tools/bench_analyze.py): one warm-up pass, then the methods in interleaved rounds
(order rotated every round), each round one pass over every image; per-image times are summed
per group, and the median over rounds is reported. ``torch.set_num_threads(1)``, as in a
DataLoader worker. Then a check that vggspec's crops are the standard pipeline's pixels: for the
same random draws, the mean absolute difference to ``reference_image`` (rescale the whole image,
crop the same box).

    python tools/bench_data.py            # ~1.5 min
    python tools/bench_data.py --quick    # ~15 s, rougher
    python tools/bench_data.py --repeat 15

Exits 1 if a crop differs from the reference by more than interpolation error (mean > 3).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image, ImageDraw, features  # noqa: E402
from torchvision import transforms as T  # noqa: E402
from torchvision.transforms import functional as TF  # noqa: E402

from vggspec.data import colour, decoding, folders  # noqa: E402
from vggspec.data import datasets as data  # noqa: E402
from vggspec.data.preprocessing import Preprocessing  # noqa: E402

SETTINGS = {"S=256": (256, 256), "S∈[256,512]": (256, 512)}
GOALS = {"S=256": 3.0, "S∈[256,512]": 2.0}
SMALL_SIZES = [(500, 375), (500, 333), (375, 500), (500, 400), (333, 500), (500, 375), (450, 338), (500, 281)]
LARGE_SIZES = [(2000, 1500), (4000, 3000)]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MAX_MEAN_DIFF = 3.0


# --- the test images -------------------------------------------------------------------------


def photo(width: int, height: int, rng: np.random.Generator, noise: float = 14.0) -> Image.Image:
    """Smooth colour fields at two frequencies, a dozen shapes, Gaussian noise: decodes like a photo."""

    def field(cell: int) -> np.ndarray:
        small = rng.integers(0, 256, (max(2, height // cell), max(2, width // cell), 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)

    base = 0.6 * field(max(width, height) // 6) + 0.4 * field(max(8, min(width, height) // 16))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 20, width // 3)), y0 + int(rng.integers(height // 20, height // 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    pixels = np.asarray(img, dtype=np.float32)
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_dataset(directory: Path, count: int, large_fraction: float, seed: int = 0) -> folders.ImageFolder:
    """DIR/train/<4 classes>/*.jpg: ``count`` images, ``large_fraction`` of them large."""
    rng = np.random.default_rng(seed)
    large = max(len(LARGE_SIZES), round(count * large_fraction))
    sizes = [LARGE_SIZES[i % len(LARGE_SIZES)] for i in range(large)]
    sizes += [SMALL_SIZES[i % len(SMALL_SIZES)] for i in range(count - large)]
    for i, (w, h) in enumerate(sizes):
        folder = directory / "train" / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        photo(w, h, rng).save(folder / f"{i:04d}_{w}x{h}.jpg", quality=90)
    return folders.scan(directory, "train")


def group_of(path: str) -> str:
    w, h = Image.open(path).size
    return f"{w}×{h}" if (w, h) in LARGE_SIZES else "≈500×375"


# --- the methods ------------------------------------------------------------------------------


def torchvision_pipeline(scale: tuple[int, int]) -> Callable[[str], torch.Tensor]:
    if scale[0] == scale[1]:
        resize = T.Resize(scale[0])
    else:
        resize = T.Lambda(lambda img: TF.resize(img, random.randint(scale[0], scale[1])))
    transform = T.Compose(
        [resize, T.RandomCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    return lambda path: transform(Image.open(path).convert("RGB"))


def decode_full(path: str) -> None:
    with Image.open(path) as img:
        img.load()


def decode_reduced(path: str, scale: int = 256) -> None:
    with Image.open(path) as img:
        w, h = img.size
        factor = decoding._draft_factor(w, h, scale)
        img.draft("RGB", (w // factor, h // factor) if factor > 1 else None)
        img.load()


@dataclass
class Method:
    name: str
    setting: str  # "S=256", "S∈[256,512]" or "" for the reference rows
    kind: str  # "torchvision", "vggspec", "decode"
    run: Callable[[int], object]
    dataset: data.TrainDataset | None = None  # vggspec's, whose epoch advances every round


def make_methods(folder: folders.ImageFolder, stats: colour.ColourStats) -> list[Method]:
    paths = [p for p, _ in folder.samples]
    methods = [
        Method("decode only, full size", "", "decode", lambda i: decode_full(paths[i])),
        Method("decode only, reduced for S=256", "", "decode", lambda i: decode_reduced(paths[i])),
    ]
    for setting, scale in SETTINGS.items():
        standard = torchvision_pipeline(scale)
        dataset = data.TrainDataset(folder, data.Augment(224, scale, 3, stats), seed=0)
        methods.append(Method(f"torchvision {setting}", setting, "torchvision", lambda i, f=standard: f(paths[i])))
        methods.append(Method(f"vggspec     {setting}", setting, "vggspec", dataset.__getitem__, dataset))
    return methods


# --- timing -----------------------------------------------------------------------------------


def timed_pass(method: Method, count: int) -> list[float]:
    """Seconds per image for one pass over all images, GC off (as timeit)."""
    times = []
    gc.disable()
    try:
        for i in range(count):
            start = time.perf_counter()
            method.run(i)
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def bench(methods: list[Method], groups: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Median over rounds of the seconds each method spends per group (and "all")."""
    count = len(groups)
    names = group_order(groups)
    for method in methods:  # warm-up
        timed_pass(method, count)
    per_round: dict[str, dict[str, list[float]]] = {m.name: {g: [] for g in ["all", *names]} for m in methods}
    for r in range(rounds):
        for method in methods[r % len(methods) :] + methods[: r % len(methods)]:
            if method.dataset is not None:
                method.dataset.set_epoch(r + 1)  # new crops each round, as in a new epoch
            times = timed_pass(method, count)
            per_round[method.name]["all"].append(sum(times))
            for g in names:
                per_round[method.name][g].append(sum(t for t, gi in zip(times, groups) if gi == g))
    return {m: {g: statistics.median(v) for g, v in by_group.items()} for m, by_group in per_round.items()}


def device_cost(dataset: data.TrainDataset, stats: colour.ColourStats, batch: int) -> float:
    """Seconds per image of collate + to_device on the CPU (the float work torchvision does per sample)."""
    samples = [dataset[i % len(dataset)] for i in range(batch)]
    preprocessing = Preprocessing.paper(stats.mean)  # what a run's batches are normalised by
    data.to_device(data.collate(samples), preprocessing, "cpu")
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        data.to_device(data.collate(samples), preprocessing, "cpu")
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) / batch


def equivalence(folder: folders.ImageFolder, stats: colour.ColourStats, scale: tuple[int, int]) -> list[float]:
    """Mean |vggspec − reference| per image (0-255 scale), for the same draws."""
    dataset = data.TrainDataset(folder, data.Augment(224, scale, 3, stats), seed=0)
    diffs = []
    for i, (path, _) in enumerate(folder.samples):
        d = dataset.draw(i)
        ours = dataset[i].image
        ref = decoding.reference_image(path, d.scale, 224, d.left, d.top, d.flip, 3)
        diffs.append((ours.float() - ref.float()).abs().mean().item())
    return diffs


# --- report -----------------------------------------------------------------------------------


def pillow_build() -> str:
    simd = "Pillow-SIMD" if ".post" in PIL.__version__ else "not Pillow-SIMD"
    if features.check_feature("libjpeg_turbo"):
        jpeg = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
    else:
        jpeg = f"libjpeg {features.version('jpg')}"
    return f"Pillow {PIL.__version__} ({simd}, JPEG: {jpeg})"


def group_order(groups: list[str]) -> list[str]:
    return sorted(set(groups), key=lambda g: (g != "≈500×375", g))


def print_tables(methods: list[Method], medians: dict[str, dict[str, float]], groups: list[str]) -> dict:
    """Images/s with ratios, then ms per image; returns {setting: {group: vggspec speed-up}}."""
    names = ["all", *group_order(groups)]
    sizes = {g: len(groups) if g == "all" else groups.count(g) for g in names}
    header = f"{'':<32}" + "".join(f"{f'{g} ({sizes[g]})':>20}" for g in names)
    torchvision_of = {m.setting: m.name for m in methods if m.kind == "torchvision"}
    ratios: dict[str, dict[str, float]] = {}
    print("Images/s per worker (one process, no DataLoader workers), median over rounds; ×: vggspec / torchvision")
    print(header)
    print("-" * len(header))
    for m in methods:
        cells = []
        for g in names:
            rate = f"{sizes[g] / medians[m.name][g]:>12.0f}"
            if m.kind == "vggspec":
                ratio = medians[torchvision_of[m.setting]][g] / medians[m.name][g]
                ratios.setdefault(m.setting, {})[g] = ratio
                cells.append(f"{rate} {ratio:>5.2f}×")
            else:
                cells.append(f"{rate}       ")
        print(f"{m.name:<32}" + "".join(f"{c:>20}" for c in cells))
    print()
    print("Milliseconds per image, median over rounds")
    print(header)
    print("-" * len(header))
    for m in methods:
        print(f"{m.name:<32}" + "".join(f"{medians[m.name][g] / sizes[g] * 1e3:>20.2f}" for g in names))
    ceiling = {g: medians[torchvision_of["S=256"]][g] / medians["decode only, reduced for S=256"][g] for g in names}
    print(
        f"{'ceiling at S=256':<32}" + "".join(f"{f'{ceiling[g]:.2f}×':>20}" for g in names) + "\n"
        "(torchvision S=256 ÷ decoding alone at the reduced size: vggspec's speed-up if all but decoding were free)"
    )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 images, 2 rounds: seconds, rougher")
    parser.add_argument("--repeat", type=int, help="timing rounds (default 9, 2 with --quick)")
    parser.add_argument("--images", type=int, help="images in the test set (default 64, 16 with --quick)")
    parser.add_argument("--large", type=float, default=0.1, help="fraction of large images (default 0.1)")
    args = parser.parse_args(argv)
    rounds = args.repeat or (2 if args.quick else 9)
    count = args.images or (16 if args.quick else 64)
    torch.set_num_threads(1)  # as in a DataLoader worker
    random.seed(0)
    torch.manual_seed(0)

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {pillow_build()}, numpy "
        f"{np.__version__}, Python {platform.python_version()}; torch threads 1, {rounds} round(s)"
    )
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        start = time.perf_counter()
        folder = make_dataset(Path(tmp), count, args.large)
        made = time.perf_counter() - start
        paths = [p for p, _ in folder.samples]
        groups = [group_of(p) for p in paths]
        small = [p for p, g in zip(paths, groups) if g == "≈500×375"]
        bpp = statistics.mean(Path(p).stat().st_size / np.prod(Image.open(p).size) for p in small)
        tally = ", ".join(f"{groups.count(g)} at {g}" for g in group_order(groups))
        print(f"{count} JPEGs (quality 90) made in {made:.1f} s: {tally}; the ≈500×375 ones {bpp:.2f} bytes/pixel")
        stats = colour.colour_stats(folder, 3)
        methods = make_methods(folder, stats)
        medians = bench(methods, groups, rounds)
        batch = min(64, count)
        per_device = device_cost(methods[-1].dataset, stats, batch)
        diffs = {setting: equivalence(folder, stats, scale) for setting, scale in SETTINGS.items()}

    print()
    ratios = print_tables(methods, medians, groups)
    print()
    print(
        "vggspec leaves the float conversion and mean subtraction (torchvision's ToTensor, Normalize) to\n"
        f"to_device: collate + to_device on the CPU cost {per_device * 1e3:.3f} ms per image, in batches of "
        f"{batch} (on a GPU, on the device)."
    )
    for setting, d in diffs.items():
        print(
            f"Same draws, {setting}: mean |vggspec − reference| per image {statistics.median(d):.2f} (median), "
            f"{max(d):.2f} (max), 0-255 scale"
        )
    print()
    for setting, goal in GOALS.items():
        ratio = ratios[setting]["all"]
        verdict = "met" if ratio >= goal else "NOT met"
        print(f"Goal ≥ {goal:.0f}× at {setting}: {verdict} ({ratio:.2f}× over all {count} images)")
    worst = max(max(d) for d in diffs.values())
    return 0 if worst <= MAX_MEAN_DIFF else 1


if __name__ == "__main__":
    sys.exit(main())
