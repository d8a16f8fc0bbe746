"""Full-size A at 224×224, a few SGD steps from each initialisation, side by side.

The evidence behind ``--init paper`` meaning N(0, 0.01²) (README, "Initialisation"): the paper
trained A from its random initialisation, so its "zero mean and 10⁻² variance" must start A where
SGD makes progress. From each initialisation, on the same batches of generated shape images (224×224,
the paper's preprocessing: 0–255 pixels minus the mean RGB) and with the paper's recipe (lr 10⁻²,
momentum 0.9, weight decay 5·10⁻⁴, dropout 0.5), this prints the loss of every step: std 0.01 and
auto (the paper's, for A) stay finite and fall; Glorot's and Kaiming's starts diverge here; std
0.1, the literal reading, starts at a loss as large as A's class scores (about 10⁸) and does not
recover. Also the analysis' estimate of each start.

    python tools/bench_init.py                         # ~3 minutes on 2 cores (A is 133 M parameters)
    python tools/bench_init.py --inits paper,glorot    # two of them
    python tools/bench_init.py --spec D --inits auto --lr 1e-3   # a deeper net from random weights
    python tools/bench_init.py --inits glorot,kaiming --normalise std   # inputs divided by their std

``--normalise`` as the trainer's: ``mean`` (the default here, the paper's), ``std`` (each channel then divided
by its std), ``auto`` (std for Glorot's and Kaiming's starts on networks 512 channels wide).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vggspec  # noqa: E402
from vggspec.data.decoding import rescale  # noqa: E402
from vggspec.data.samples import image_folder  # noqa: E402
from vggspec.spec.analysis import PIXEL_RMS, STANDARDISED_RMS, initial_scale, resolve_init, standardises  # noqa: E402

INITS = ("paper", "auto", "glorot", "kaiming", "normal:0.1")


def batches(count: int, batch: int, size: int = 224) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Generated shapes (4 classes) at the network's input, mean-subtracted as the trainer does."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = image_folder(tmp, classes=4, train=count * batch // 4 + 1, val=1, size=size)
        files = sorted((folder / "train").glob("*/*.png"))
        labels = {name: i for i, name in enumerate(sorted({f.parent.name for f in files}))}
        generator = torch.Generator().manual_seed(0)
        order = torch.randperm(len(files), generator=generator).tolist()[: count * batch]
        images = torch.stack([rescale(str(files[i]), size, 3).float() for i in order])
        targets = torch.tensor([labels[files[i].parent.name] for i in order])
    images -= images.mean(dim=(0, 2, 3), keepdim=True)
    return [(images[i : i + batch], targets[i : i + batch]) for i in range(0, len(images), batch)]


def losses(
    spec: vggspec.Spec, init: str, data: list[tuple[torch.Tensor, torch.Tensor]], lr: float = 1e-2
) -> list[float]:
    torch.manual_seed(0)  # dropout's masks: the same for every initialisation
    model = vggspec.build(spec, init=init, seed=0).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    out = []
    for images, targets in data:
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="SGD steps from each initialisation (default: 8)")
    parser.add_argument("--batch", type=int, default=8, help="images per step (default: 8)")
    parser.add_argument(
        "--inits", default=",".join(INITS), help=f"initialisations to compare (default: {','.join(INITS)})"
    )
    parser.add_argument("--spec", default="A", help="a bundled 224-pixel spec (default: A)")
    parser.add_argument("--lr", type=float, default=1e-2, help="learning rate (default: the paper's 1e-2)")
    parser.add_argument(
        "--normalise", choices=("mean", "std", "auto"), default="mean", help="the inputs (default: mean, the paper's)"
    )
    args = parser.parse_args(argv)
    spec = vggspec.load(args.spec)
    data = batches(args.steps, args.batch)
    std = torch.cat([images for images, _ in data]).std(dim=(0, 2, 3), keepdim=True)
    print(
        f"{args.spec} at 224×224, {args.steps} SGD steps of {args.batch} images, lr {args.lr:g}, "
        f"--normalise {args.normalise} (torch {torch.__version__})"
    )
    chance = f"losses (chance: ln 1000 = {math.log(1000):.2f})"
    print(f"{'init':<12} {'chosen':<8} {'inputs':<6} {'start RMS':>10}  {chance}")
    for init in args.inits.split(","):
        started = time.perf_counter()
        chosen = resolve_init(spec, init)
        standardise = args.normalise == "std" or (args.normalise == "auto" and standardises(spec, chosen))
        inputs = [(images / std, targets) for images, targets in data] if standardise else data
        trace = losses(spec, init, inputs, args.lr)
        shown = " ".join(f"{x:.3g}" for x in trace)
        verdict = "finite, falling" if all(map(math.isfinite, trace)) and trace[-1] < trace[0] else "NOT training"
        start = initial_scale(spec, init, STANDARDISED_RMS if standardise else PIXEL_RMS)
        print(
            f"{init:<12} {chosen:<8} {'std' if standardise else 'mean':<6} {start:>10.1e}"
            f"  {shown}   → {verdict} ({time.perf_counter() - started:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
