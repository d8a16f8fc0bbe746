"""Dense evaluation against 150-crop evaluation of the same network at the same scales.

In one run: train a narrow network on generated shapes (seconds), then evaluate its validation
images with ``dense`` and with ``multi-crop`` (5×5 grid × 2 flips per scale) over three scales,
timing each per image and reporting the accuracy of each (and of ``both``). With ``--full``, also
time full-size D (random weights: time only) on one photograph at Q ∈ {256, 384, 512}.

Section 3.2's point: dense evaluation needs no re-computation for every crop, so it is much
cheaper per image, at a similar accuracy; multi-crop adds a little, combined best.

    python tools/bench_eval.py            # ~1 minute
    python tools/bench_eval.py --full     # + full-size D on one image (~1 more minute)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402

import vggspec  # noqa: E402
from vggspec.data import folders  # noqa: E402
from vggspec.data.samples import image_folder  # noqa: E402
from vggspec.data.scales import parse_test_scales  # noqa: E402
from vggspec.run.config import TrainConfig  # noqa: E402
from vggspec.run.evaluate import image_posteriors, load_network  # noqa: E402
from vggspec.run.metrics import top_errors  # noqa: E402
from vggspec.run.train import train  # noqa: E402

SPEC = (
    "name: narrow shapes net\ninput: 32x32 RGB\nconv3-16 [bn] ×2\nmaxpool\nconv3-32 [bn] ×2\nmaxpool\n"
    "conv3-64 [bn] ×2\nmaxpool\nFC-64\nFC-4\nsoft-max\n"
)


def save_photograph(path: Path, size: tuple[int, int]) -> None:
    """Grace Hopper's portrait, which matplotlib ships in its sample data: a real JPEG, nothing downloaded."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        Image.open(f).convert("RGB").resize(size, Image.BILINEAR).save(path)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also time full-size D on one photograph")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = image_folder(root / "data", classes=4, train=48, val=16, size=48, suffix=".jpg")
        spec = root / "net.vgg"
        spec.write_text(SPEC)
        run = train(
            TrainConfig(
                spec=str(spec), data=str(data), out=str(root / "run"), epochs=6, batch_size=16, lr=0.05,
                init="kaiming", workers=0, stats_images=64, progress=False, scale="36:48",
            )
        )  # fmt: skip
        net = load_network(run / "best.pt")
        folder = folders.scan(data, "val", classes=net.classes)
        paths = [p for p, _ in folder.samples]
        labels = torch.tensor([label for _, label in folder.samples])
        scales = parse_test_scales("S_min,S,S_max", net.train_scale)
        image_posteriors(net, paths[:2], scales, ["dense", "multi-crop"])  # warm-up
        dense, t_dense = timed(lambda: image_posteriors(net, paths, scales, ["dense"]))
        crops, t_crops = timed(lambda: image_posteriors(net, paths, scales, ["multi-crop"]))
        both = (dense["dense"] + crops["multi-crop"]) / 2
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
        print(f"{net.name} (32×32 input, trained {len(folders.scan(data, 'train').samples)} images, "
              f"S ∈ [{net.train_scale[0]}, {net.train_scale[1]}]); {len(paths)} validation images, Q ∈ {scales}\n")
        print(f"{'method':<12} {'ms/image':>9} {'top-1 err':>10} {'top-5 err':>10}")
        for name, probs, seconds in (
            ("dense", dense["dense"], t_dense),
            ("multi-crop", crops["multi-crop"], t_crops),
            ("both", both, t_dense + t_crops),
        ):
            top1, top5 = top_errors(probs, labels)
            print(f"{name:<12} {1000 * seconds / len(paths):9.2f} {100 * top1:9.1f}% {100 * top5:9.1f}%")
        print(f"\n150-crop / dense time per image: {t_crops / t_dense:.1f}×")

        if args.full:
            d = vggspec.build(vggspec.load(ROOT / "specs" / "D.vgg"), init="kaiming", seed=0).eval()
            photo = root / "photo.jpg"
            save_photograph(photo, (512, 683))
            from vggspec.run.evaluate import Network

            fast = (vggspec.optimize_for_inference(m, dtype=torch.float32) for m in (d, vggspec.to_dense(d)))
            full = Network("D", "-", *fast, net.stats.model_copy(update={"mean": [120.0] * 3}), (256, 512), [])
            _, t_full_dense = timed(lambda: image_posteriors(full, [str(photo)], [256, 384, 512], ["dense"]))
            _, t_full_crops = timed(lambda: image_posteriors(full, [str(photo)], [256, 384, 512], ["multi-crop"]))
            print(f"\nfull-size D, one 512×683 photograph, Q ∈ {{256, 384, 512}}: dense {t_full_dense:.1f} s, "
                  f"150 crops {t_full_crops:.1f} s ({t_full_crops / t_full_dense:.1f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
