"""What a first run learns: `vggspec train SPEC --data DIR` with the defaults, against the paper's batch.

The evidence behind the small-set defaults (README, "The recipe"): on a folder of a few hundred
images, the paper's batch of 256 takes one step an epoch, and the plateau schedule spends its three
drops before anything is learned; the smaller batch the trainer takes instead needs a smaller rate
than the paper's 10⁻² (``--also-lr 0.01`` shows what that rate does there). Side by side, on the
same generated folder (4 classes of shapes, ``--train`` images each, 40×40 JPEGs) and the same
bundled spec with a 4-class classifier, this trains with the defaults (the batch from the set's
size, the lr from the batch, the lr drops waiting for learning to begin), with each ``--also-lr``,
and with ``--batch-size 256``, and prints each run's best and last validation error, its last lr
and the epoch learning began; chance is 75%.

    python tools/bench_defaults.py                                  # A-narrow-32, 30 epochs: ~2 min
    python tools/bench_defaults.py --also-lr 0.01 --defaults-only --seed 1
    python tools/bench_defaults.py --spec D-narrow-32-bn --epochs 30
    python tools/bench_defaults.py --spec vgg11-gray-10-narrow --epochs 10 --defaults-only  # 224 px: slow

Images are drawn at 1.25× the spec's input side (40 pixels for the 32-pixel specs); a gray spec
reads them as gray, as it would any colour folder.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vggspec import load  # noqa: E402
from vggspec.data.samples import image_folder  # noqa: E402
from vggspec.run.config import TrainConfig  # noqa: E402
from vggspec.run.train import train  # noqa: E402


def run(spec: Path, data: Path, out: Path, epochs: int, **settings: object) -> dict[str, object]:
    config = TrainConfig(spec=str(spec), data=str(data), out=str(out), epochs=epochs, progress=False, **settings)
    folder = train(config)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    checkpoint = torch.load(folder / "last.pt", weights_only=True, map_location="cpu")
    return {
        "batch": checkpoint["config"]["batch_size"],
        "lr": checkpoint["config"]["lr"],
        "best error": min(r["val_top1_err"] for r in records),
        "last error": records[-1]["val_top1_err"],
        "epochs": len(records),
        "last lr": records[-1]["lr"],
        "learning began": checkpoint.get("learning_began"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="A-narrow-32", help="a bundled small spec (default: A-narrow-32)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each run (default: 30)")
    parser.add_argument("--train", type=int, default=100, help="training images per class (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folder and of the runs (default: 0)")
    parser.add_argument(
        "--also-lr",
        type=float,
        action="append",
        default=[],
        metavar="LR",
        help="also train with the defaults but this lr (0.01: the paper's rate at any batch, the default before it "
        "followed the batch); repeatable",
    )
    parser.add_argument(
        "--defaults-only", action="store_true", help="skip the run at the paper's batch (for the 224-pixel specs)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = (ROOT / "specs" / "small" / f"{args.spec}.vgg").read_text()
        spec = root / f"{args.spec}.vgg"
        spec.write_text(re.sub(r"\bFC-10\b", "FC-4", text))
        size = round(1.25 * load(spec).input.size)
        data = image_folder(
            root / "data", classes=4, train=args.train, val=25, size=size, suffix=".jpg", seed=args.seed
        )
        rows = {"defaults": run(spec, data, root / "defaults", args.epochs, seed=args.seed)}
        for lr in args.also_lr:
            rows[f"--lr {lr:g}"] = run(spec, data, root / f"lr-{lr:g}", args.epochs, seed=args.seed, lr=lr)
        if not args.defaults_only:
            rows["--batch-size 256"] = run(
                spec, data, root / "paper-batch", args.epochs, seed=args.seed, batch_size=256
            )
    print(
        f"{args.spec}, {4 * args.train} training images of {size}×{size} in 4 classes, seed {args.seed}, at most "
        f"{args.epochs} epochs (chance: 75% error)"
    )
    for name, row in rows.items():
        print(
            f"  {name:<17} batch {row['batch']:>3}  lr {row['lr']:<7.3g} val top-1 error: best {row['best error']:6.1%}"
            f", last {row['last error']:6.1%} (epoch {row['epochs']})  last lr {row['last lr']:.0e}  learning began "
            f"in epoch {row['learning began']}"
        )
    if args.defaults_only:
        return
    paper, defaults = rows["--batch-size 256"]["best error"], rows["defaults"]["best error"]
    if defaults > 0:
        print(f"  error at the paper's batch / with the defaults: {paper / defaults:.1f}x")
    else:  # a ratio to 0 says nothing
        print(f"  the defaults made no error; the paper's batch {paper:.1%}")


if __name__ == "__main__":
    main()
