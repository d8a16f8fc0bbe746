"""``vggspec samples DIR``: a generated folder of drawn shapes (:mod:`vggspec.data.samples`), to try the trainer,
the evaluator and the predictor on without finding images first."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

# Names from the module, not 'from ..data import samples': that asks vggspec.data for the attribute first, whose
# look-up of the torch names (datasets.py) would import torch at every start of the program.
from ..data.samples import (
    DEFAULT_CLASSES,
    DEFAULT_SIZE,
    DEFAULT_TRAIN,
    DEFAULT_VAL,
    SHAPES,
    check_request,
    holds_samples,
    image_folder,
)
from ..errors import ExitCode, SpecError
from .common import Commands, ExitCodes, positive_int

SPLITS = ("train", "val")  # the folders the samples are in: what --force deletes
NEXT_SPEC = "small/A-narrow-32"
EXIT_CODES: ExitCodes = {
    ExitCode.OK: "the samples are written (or the folder holds these very samples already)",
    ExitCode.BAD_INPUT: "bad input: a count or size out of range, a folder that is not empty (without --force)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}  # the spec the next command trains: a bundled one, found wherever vggspec is


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "samples",
        help="write a small image folder of drawn shapes, to train on",
        description="Write an image folder of drawn shapes, a class per shape, each of random colour, size and "
        "place: DIR/train/<shape>/*.png and DIR/val/<shape>/*.png, the layout 'vggspec train --data' and "
        "'vggspec evaluate --data' read. The same settings write the same files, byte for byte. With the "
        f"defaults, the default training run of {NEXT_SPEC} on it takes well under a minute on a CPU.",
    )
    p.add_argument("dir", metavar="DIR", help="the folder to write: a new or empty one (or see --force)")
    images = p.add_argument_group("images", "what the folder holds")
    images.add_argument(
        "--classes",
        type=int,
        default=DEFAULT_CLASSES,
        metavar="N",
        help=f"the first N of the {len(SHAPES)} shapes: {', '.join(SHAPES)} (default: {DEFAULT_CLASSES})",
    )
    images.add_argument(
        "--train",
        type=positive_int,
        default=DEFAULT_TRAIN,
        metavar="K",
        help=f"training images a class (default: {DEFAULT_TRAIN})",
    )
    images.add_argument(
        "--val",
        type=positive_int,
        default=DEFAULT_VAL,
        metavar="K",
        help=f"validation images a class (default: {DEFAULT_VAL})",
    )
    images.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        metavar="PX",
        help=f"images of PX×PX pixels; the bundled small specs take 32×32 (default: {DEFAULT_SIZE})",
    )
    images.add_argument("--seed", type=int, default=0, metavar="S", help="other seeds draw other images (default: 0)")
    output = p.add_argument_group("output", "a folder that is not empty")
    output.add_argument(
        "--force",
        action="store_true",
        help="delete DIR/train and DIR/val, whatever they hold, and write the samples anew; without it, a folder "
        "that is not empty is refused, unless it holds these very samples (then nothing is written)",
    )
    p.set_defaults(run=_samples, exit_codes=EXIT_CODES)


def _samples(args: argparse.Namespace) -> int:
    if any(importlib.util.find_spec(module) is None for module in ("numpy", "PIL")):
        raise SpecError("vggspec samples draws with numpy and Pillow: pip install 'vggspec[torch]'")
    request = {"classes": args.classes, "train": args.train, "val": args.val, "size": args.size, "seed": args.seed}
    try:
        check_request(classes=args.classes, train=args.train, val=args.val, size=args.size)
    except ValueError as err:
        raise SpecError(f"--classes, --train, --val, --size: {err}") from None
    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise SpecError(f"{root} is a file, where samples writes a folder")
    held = sorted(entry.name for entry in root.iterdir()) if root.is_dir() else []
    if held and args.force:
        for split in SPLITS:
            path = root / split
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():  # a file, or a link: itself, not what it points to
                path.unlink()
    elif held:
        if holds_samples(root, **request):
            print(f"{root} holds these samples already: nothing written")
            _say_next(root)
            return ExitCode.OK
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise SpecError(
            f"{root} is not empty ({shown}) and holds no samples of these settings: give a new folder, or --force "
            f"to delete {root / 'train'} and {root / 'val'} and write anew"
        )
    image_folder(root, **request)
    print(
        f"wrote {args.classes * (args.train + args.val)} images of {args.size}×{args.size} pixels to {root}: "
        f"{args.classes} classes × ({args.train} in {root / 'train'} + {args.val} in {root / 'val'}), seed {args.seed}"
    )
    print(f"classes: {', '.join(sorted(SHAPES[: args.classes]))}")  # sorted, as the trainer numbers them
    _say_next(root)
    return ExitCode.OK


def _say_next(root: Path) -> None:
    """The next step: train a bundled small spec on the folder, with the defaults."""
    print(f"next: vggspec train {NEXT_SPEC} --data {root} --num-classes auto --out {root}-run")
