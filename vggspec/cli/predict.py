"""``vggspec predict``: the top classes of images, as text or one JSON document; an image that cannot be read
is said and the others go on."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ExitCode, SpecError
from ..run.config import NUM_CLASSES_WITHOUT_WEIGHTS, PREDICT_METHODS
from .common import (
    INTERRUPTED,
    Commands,
    ExitCodes,
    add_dtype_option,
    add_flip_option,
    add_weights_classes_option,
    fixed_class_count,
    need_torch,
    positive_int,
)

EXIT_CODES: ExitCodes = {
    ExitCode.OK: "every image classified",
    ExitCode.BAD_INPUT: "bad input, or an image that could not be read (said, and the others are still classified)",
    ExitCode.INTERRUPTED: INTERRUPTED,
}


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "predict",
        help="the top classes of images, with probabilities",
        description="Classify images with a trained checkpoint, or a spec and --weights (vggspec predict D "
        "--weights torchvision:vgg16 cat.jpg): dense evaluation at the training scale (or --scale), averaged "
        "with the flipped image if the network was trained with --flip (or --flip says so); class names from the "
        "training run or the weights. Inputs are prepared as the weights were trained on (the paper's mean "
        "subtraction, or torchvision's normalisation).",
    )
    p.add_argument(
        "checkpoint",
        metavar="CKPT|SPEC",
        help="a checkpoint written by 'vggspec train' or 'vggspec compile -o', or its run folder (its best.pt); "
        "with --weights, the spec (file or bundled name) to load them into",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    p.add_argument(
        "--weights",
        metavar="W",
        help="weights to load into SPEC: torchvision:NAME[:ENUM] (e.g. torchvision:vgg16 with spec D; downloaded "
        "once into the torch hub cache) or a state dict file; every layer must fit",
    )
    add_weights_classes_option(p)
    p.add_argument(
        "--method",
        "--crop",
        choices=PREDICT_METHODS,
        default="dense",
        help="dense: the fully-convolutional network on the whole image, as the paper evaluates; center: one "
        "centre crop, no flip, resampled as torchvision's evaluation transform does (for torchvision's weights "
        "at the default Q = 256: resize 256, centre crop 224, its probabilities); multi-crop: 50 crops; both: "
        "dense and multi-crop averaged (default: dense)",
    )
    p.add_argument(
        "--scale",
        type=positive_int,
        metavar="Q",
        help="rescale the smallest side to Q (default: the training scale S, the middle of a jittered one; for a "
        "network vggspec did not train, 256 at 224-pixel inputs, in proportion for others; where S leaves a "
        "border of pixels outside every pooling window of the dense evaluation, the nearest scale that uses "
        "them all, said in a note)",
    )
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="how many classes (default: 5)")
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: each image and its classes; json: one document, {network, weights, method, scale, flip, "
        "preprocessing, images: [{path, top: [{class, probability}]} or {path, error}]} (default: text)",
    )
    add_flip_option(p)
    add_dtype_option(p)
    p.set_defaults(run=_predict, exit_codes=EXIT_CODES)


def _predict(args: argparse.Namespace) -> int:
    classes = fixed_class_count(args, "predict")
    if classes is not None and args.weights is None:
        raise SpecError(NUM_CLASSES_WITHOUT_WEIGHTS)
    need_torch("vggspec predict")
    from ..run.evaluate import predictions

    failed = False
    options = {"scale": args.scale, "top": args.top, "flip": args.flip, "dtype": args.dtype, "num_classes": classes}
    found = predictions(args.checkpoint, args.images, weights=args.weights, method=args.method, **options)
    images: list[dict[str, object]] = []  # for --format json
    for path, top in found:
        if isinstance(top, SpecError):  # said, and the other images go on
            print(top, file=sys.stderr, flush=True)
            images.append({"path": path, "error": top.message})
            failed = True
            continue
        images.append({"path": path, "top": [{"class": name, "probability": p} for name, p in top]})
        if args.format == "text":
            print(path)
            for name, p in top:
                print(f"  {p:7.2%}  {name}")
            sys.stdout.flush()
    if args.format == "json":
        print(json.dumps({**found.describe(), "images": images}, indent=2))
    return ExitCode.BAD_INPUT if failed else ExitCode.OK
