"""Evaluation as in Sections 3.2 and 4: dense, multi-crop, both, several scales, fused networks.

For every image and every test scale Q (the smallest side rescaled to Q):

* **dense**: the fully-convolutional network (:func:`vggspec.to_dense`) on the whole image; its
  class score map spatially averaged, soft-maxed, and averaged with the flipped image's;
* **multi-crop**: a 5×5 regular grid of crops of the network's input size, each also flipped
  (50 per scale), through the classifier; the 50 soft-max outputs averaged;
* **both**: the average of the two.

Posteriors are averaged over scales, and over networks for a fusion. Top-1 and top-5 errors
count every image exactly once, with one process or several.

Both networks run through :func:`vggspec.optimize_for_inference` (batch norm folded,
channels-last), in float32 unless ``dtype`` says otherwise: ``"auto"`` takes bfloat16 where the
hardware computes it natively (about 2.5× on such a CPU), at the cost of bf16's rounding in the
posteriors. ``compile`` adds torch.compile (:class:`~vggspec.nn.inference.Compiled`): the same
posteriors to float tolerance, a compile at each new input shape.
"""

from __future__ import annotations

import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch
from PIL import UnidentifiedImageError

from .. import files
from ..data import decoding, folders
from ..data.datasets import normalise, stack_images
from ..data.preprocessing import Preprocessing
from ..data.scales import TrainingScale, check_test_scales, parse_test_scales
from ..errors import SpecError, out_of_memory
from ..logs import log
from ..nn.checkpoint import check_finite, model_from_checkpoint, read_checkpoint
from ..nn.compiler import VGG, build
from ..nn.dense import posteriors, to_dense
from ..nn.devices import check_memory
from ..nn.inference import DTypeLike, InferenceModel, optimize_for_inference
from ..spec.analysis import scales_using_every_pixel, unused_pixels
from ..spec.parser import load
from . import runs
from .config import METHODS, PREDICT_METHODS, EvaluateConfig  # noqa: F401 - METHODS: where it always was
from .metrics import top_errors
from .runlog import progress_bar
from .runs import checkpoint_path

GRID = 5  # crops per side in multi-crop evaluation
# With --compile, the dense network compiled for dynamic shapes from its first batch: its inputs change size with
# each test scale and aspect ratio. Measured on A-narrow-32's, 7 batches of 7 shapes (3 scales, several aspect ratios,
# a batch of one): 3 compiles (again for the batch of one, and for a score map no longer 1×1: torch specialises sizes
# of 1), against 5 with the default (the first shape static, then dynamic where it changed).
DENSE_DYNAMIC = True


# -- the networks -------------------------------------------------------------------------


@dataclass
class Network:
    """A trained network ready to evaluate: classifier, dense twin (both on the inference fast
    path; ``.model`` is the converted VGG), and its training facts."""

    name: str
    path: str
    classifier: InferenceModel
    dense: InferenceModel
    preprocessing: Preprocessing
    train_scale: TrainingScale
    classes: list[str]
    trained_with_flips: bool = True  # the run's --flip: whether mirror images are images of its classes

    def flips(self, asked: bool | None) -> bool:
        """Whether to average with mirror images: as ``asked``, or by default as the network was trained."""
        return self.trained_with_flips if asked is None else asked

    @property
    def input_size(self) -> int:
        return self.classifier.spec.input.size

    @property
    def channels(self) -> int:
        return self.classifier.spec.input.channels

    @property
    def num_classes(self) -> int:
        return self.classifier.model.classifier[-1].fc.out_features

    @property
    def device(self) -> torch.device:
        return next(self.classifier.parameters()).device


def load_network(
    path: str | Path,
    device: torch.device | str = "cpu",
    dtype: DTypeLike = torch.float32,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    compile: bool = False,
) -> Network:
    """A checkpoint written by ``vggspec train`` (it knows its preprocessing, scale and classes), or by
    ``vggspec compile -o`` from weights that record their preprocessing; or, with ``weights``
    (``torchvision:vgg16``, a checkpoint, a state dict file), ``path`` is the spec they are loaded into:
    every layer must fit, and the weights must say how their inputs are prepared. ``num_classes``: with
    ``weights``, the classes they classify into, where the spec's last FC layer says another number.

    ``dtype``: what the networks compute in (see :func:`vggspec.optimize_for_inference`); ``compile``: both
    networks under torch.compile (:func:`_network`).
    """
    if weights is not None:
        return _network_from_weights(path, weights, device, dtype, num_classes, compile=compile)
    if num_classes is not None:
        raise SpecError(
            f"{path} classifies into the classes it was trained for: num_classes applies to a spec and its weights"
        )
    path = checkpoint_path(path)  # a run directory: its best.pt
    data = read_checkpoint(path, mmap=True)  # only the small entries are read here, each checked
    preprocessing = Preprocessing.from_checkpoint(data)
    if preprocessing is None:
        raise SpecError(
            f"{path} holds no preprocessing (mean RGB): it was not written by vggspec train",
            hint="evaluate checkpoints from a training run (RUN/best.pt or RUN/last.pt)",
        )
    model = model_from_checkpoint(data, path, device=device)  # checked: shapes, size, checksum, classes
    if model.dense:
        raise SpecError(f"{path} holds a dense network; evaluate the classifier's checkpoint")
    check_finite(model, path)  # else every image would come out "unreadable"
    return _network(
        model,
        str(path),
        dtype,
        compile=compile,
        preprocessing=preprocessing,
        train_scale=TrainingScale.from_checkpoint(data, model.spec.input.size),
        classes=list(data.get("classes") or preprocessing.classes),
        trained_with_flips=bool((data.get("config") or {}).get("flip", True)),
    )


def _network_from_weights(
    spec: str | Path,
    weights: str | Path,
    device: torch.device | str,
    dtype: DTypeLike,
    num_classes: int | None,
    *,
    compile: bool = False,
) -> Network:
    """``spec`` built with ``weights``, all of them: a network that drew some layers anew would classify at random."""
    model = build(load(spec), weights=weights, strict_weights=True, device=device, num_classes=num_classes).eval()
    if model.preprocessing is None:
        raise SpecError(
            f"{weights} does not say how its inputs are prepared (mean, std, value scale)",
            hint="use torchvision:NAME, a checkpoint written by vggspec, or 'vggspec compile SPEC --weights FILE -o "
            "x.pt' after training",
        )
    check_finite(model, str(weights))
    return _network(
        model,
        str(weights),
        dtype,
        compile=compile,
        preprocessing=model.preprocessing,
        train_scale=TrainingScale.default(model.spec.input.size),
        classes=list(model.preprocessing.classes),
        trained_with_flips=True,
    )


def _network(model: VGG, path: str, dtype: DTypeLike, *, compile: bool = False, **facts: Any) -> Network:
    """The classifier and its dense twin on the inference fast path, converted in place: the plain model
    and its dense twin are not kept, so they need no second copies (loading D held four copies of its
    weights at once that way). With ``compile``, each under torch.compile, with dynamic shapes where they
    vary: DENSE_DYNAMIC for the dense network, the default for the classifier (crops of one size; only the
    batch's length changes, dynamic from its second)."""
    dense = optimize_for_inference(to_dense(model), dtype=dtype, inplace=True, compile=compile, dynamic=DENSE_DYNAMIC)
    classifier = optimize_for_inference(model, dtype=dtype, inplace=True, compile=compile)
    return Network(name=model.spec.display_name, path=path, classifier=classifier, dense=dense, **facts)


def evaluation_scales(
    net: Network, text: str | None, *, dense: bool, say: bool = True, keep: str = "--scales S"
) -> list[int]:
    """The test scales ``text`` asks of ``net`` (:func:`~vggspec.data.scales.parse_test_scales`). By default
    that is S; but where S leaves a border of pixels outside every pooling window of a dense evaluation
    (S = 37 for a 32-pixel network of stride 32: 5 rows), the nearest scale that uses every pixel instead,
    said in a note that names ``keep``, how the caller's user asks for S itself (``{S}``: its value; evaluate's
    ``--scales S``, predict's ``--scale {S}``)."""
    scales = parse_test_scales(text, net.train_scale, net.input_size, say=say)
    spec = net.classifier.spec
    if text is not None or not dense or not (unused := unused_pixels(spec, scales[0])):
        return scales
    q = scales[0]
    fits = [s for s in scales_using_every_pixel(spec, q) if s is not None and s >= net.input_size]
    if not fits:
        return scales
    nearest = min(fits, key=lambda s: (abs(s - q), -s))
    if say:
        log.warning(
            f"note: testing {net.name} at Q = {nearest}, not its S = {q}: at {q} the dense evaluation leaves the "
            f"last {unused} rows and columns outside every pooling window ({keep.format(S=q)} tests at S)"
        )
    return [nearest]


def note_unused_pixels(net: Network, scales: Sequence[int]) -> None:
    """Say where a test scale leaves a border of the image outside every pooling window, and the nearest
    scales that use every pixel (at Q = 37 a network of stride 8 drops 5 rows: its error rose from 3.1%
    at Q = 32 to 8.4% on digits)."""
    spec = net.classifier.spec
    for q in scales:
        if q >= net.input_size and (unused := unused_pixels(spec, q)):
            nearest = " or ".join(str(s) for s in scales_using_every_pixel(spec, q) if s is not None)
            log.warning(
                f"note: at Q = {q}, {net.name}'s dense evaluation leaves the last {unused} rows and columns of "
                f"the shorter side outside every pooling window; {nearest} use{'s' if ' or ' not in nearest else ''} "
                "every pixel"
            )


# -- per-image posteriors ----------------------------------------------------------------


def grid_positions(extent: int, size: int, count: int = GRID) -> list[int]:
    """``count`` evenly spaced offsets of a ``size`` window along ``extent`` pixels, ends included."""
    room = extent - size
    if count == 1:
        return [room // 2]
    return [round(i * room / (count - 1)) for i in range(count)]


def multi_crops(image: torch.Tensor, size: int, *, flip: bool = True) -> torch.Tensor:
    """(25 or 50, C, size, size): the 5×5 grid of crops of one rescaled image, and their mirrors."""
    _, h, w = image.shape
    crops = [
        image[:, top : top + size, left : left + size]
        for top in grid_positions(h, size)
        for left in grid_positions(w, size)
    ]
    batch = stack_images(crops)
    return torch.cat([batch, batch.flip(dims=(3,))]) if flip else batch


@torch.inference_mode()
def dense_posteriors(
    net: Network, images: Sequence[torch.Tensor], *, flip: bool = True, batch_size: int = 32
) -> torch.Tensor:
    """(N, classes) for images already rescaled to one Q; same-sized images share a batch."""
    device = net.device
    out = torch.empty(len(images), net.num_classes)
    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_size[tuple(image.shape)].append(i)
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = normalise(stack_images([images[i] for i in chunk]), net.preprocessing, device)
            out[chunk] = posteriors(net.dense, batch, flip=flip).float().cpu()
    return out


@torch.inference_mode()
def multi_crop_posteriors(
    net: Network, images: Sequence[torch.Tensor], *, flip: bool = True, batch_size: int = 50
) -> torch.Tensor:
    """(N, classes): for each image rescaled to one Q, the mean soft-max of its 50 crops."""
    device, preprocessing = net.device, net.preprocessing
    rows = []
    for image in images:
        crops = multi_crops(image, net.input_size, flip=flip)
        probs = torch.cat(
            [
                net.classifier(normalise(crops[i : i + batch_size], preprocessing, device)).float().softmax(dim=1).cpu()
                for i in range(0, len(crops), batch_size)
            ]
        )
        rows.append(probs.mean(dim=0))
    return torch.stack(rows)


@torch.inference_mode()
def center_posteriors(net: Network, crops: Sequence[torch.Tensor], *, batch_size: int = 32) -> torch.Tensor:
    """(N, classes): each image's centre crop (:func:`~vggspec.data.decoding.centre_crop`) through the
    classifier, as the validation during training sees it (no flip): what the run's printed validation
    error measured, and torchvision's evaluation transform for its weights (Q 256, crop 224)."""
    return torch.cat(
        [
            net.classifier(normalise(stack_images(crops[i : i + batch_size]), net.preprocessing, net.device))
            .float()
            .softmax(dim=1)
            .cpu()
            for i in range(0, len(crops), batch_size)
        ]
    )


# What each method averages (Section 3.2: "both" is the mean of the dense and multi-crop posteriors).
AVERAGED = {"dense": ("dense",), "multi-crop": ("multi-crop",), "both": ("dense", "multi-crop"), "center": ("center",)}


def uses_dense(method: str) -> bool:
    return "dense" in AVERAGED[method]


def image_posteriors(
    net: Network,
    paths: Sequence[str],
    scales: Sequence[int],
    methods: Sequence[str],
    *,
    flip: bool = True,
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """Posteriors of ``paths`` by method (``dense``, ``multi-crop``, ``both``, ``center``), averaged
    over scales.

    Unreadable images get NaN rows (the caller counts them as errors).
    """
    need_dense = any(map(uses_dense, methods))
    need_crops = any("multi-crop" in AVERAGED[m] for m in methods)
    classes = net.num_classes
    total = {m: torch.zeros(len(paths), classes) for m in ("dense", "multi-crop", "center")}
    broken = torch.zeros(len(paths), dtype=torch.bool)
    check_test_scales(list(scales), net.input_size, net.name)
    for q in scales:  # what a pass needs, asked of the analysis before an image is decoded at Q
        if need_dense:
            check_memory(net.dense.spec, net.device, batch=1, input_size=q, weights_there=True)
        if need_crops:
            check_memory(net.classifier.spec, net.device, batch=max(batch_size, 50), weights_there=True)
    for q in scales:
        if need_dense or need_crops:
            rescaled = partial(decoding.rescale, scale=q, channels=net.channels)
            images, ok = _readable(_decoded(paths, rescaled, q), broken)
        if need_dense and images:
            total["dense"][ok] += dense_posteriors(net, images, flip=flip, batch_size=batch_size)
        if need_crops and images:
            total["multi-crop"][ok] += multi_crop_posteriors(net, images, flip=flip, batch_size=max(batch_size, 50))
        if "center" in methods:
            centre = partial(decoding.centre_crop, scale=q, size=net.input_size, channels=net.channels)
            crops, ok = _readable(_decoded(paths, centre, q), broken)
            if crops:
                total["center"][ok] += center_posteriors(net, crops, batch_size=batch_size)
    out = {}
    for method in methods:
        parts = AVERAGED[method]
        probs = sum(total[part] for part in parts) / (len(parts) * len(scales))
        probs[broken] = math.nan
        out[method] = probs
    return out


def _decoded(paths: Sequence[str], decode: Callable[[str], torch.Tensor], scale: int) -> list[torch.Tensor | None]:
    """``decode`` of each path (the image at test scale ``scale``), in threads (PIL releases the GIL
    while it decodes).

    None for a file that cannot be read (counted as an error). Running out of memory is not the
    file's fault, and would make every image "unreadable": it stops the evaluation with one line.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> torch.Tensor | None:
        try:
            return decode(path)
        except Exception as err:  # noqa: BLE001 - PIL's many error types for a bad file
            if out_of_memory(err):
                raise SpecError(
                    f"out of memory rescaling {path} to Q = {scale} ({type(err).__name__}: {_first_line(err)})",
                    hint="use smaller test scales (--scales), or a machine with more memory",
                ) from None
            return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, paths))


def _readable(
    decoded: Sequence[torch.Tensor | None], broken: torch.Tensor
) -> tuple[list[torch.Tensor], list[int]]:
    """The images that could be read and their indices; the others marked in ``broken`` (counted as errors)."""
    images, ok = [], []
    for i, image in enumerate(decoded):
        if image is None:
            broken[i] = True
        else:
            images.append(image)
            ok.append(i)
    return images, ok


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


def by_aspect_ratio(paths: Sequence[str], indices: Sequence[int]) -> list[int]:
    """``indices`` ordered by their image's aspect ratio (upright, read from the header), so that a chunk
    of consecutive images mostly shares one rescaled size and dense evaluation batches them."""

    def ratio(index: int) -> float:
        try:
            width, height = decoding.image_size(paths[index])
            return width / height
        except Exception:  # noqa: BLE001 - unreadable: anywhere will do, it is counted later
            return 0.0

    return sorted(indices, key=lambda i: (ratio(i), i))


# -- errors and results ------------------------------------------------------------------


@dataclass
class Row:
    network: str
    method: str
    scales: list[int]
    top1_err: float
    top5_err: float
    paper: tuple[float, float] | None = None
    flip: bool | None = None  # averaged with mirror images (None: not known, or a fusion)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "method": self.method,
            "scales": self.scales,
            "flip": self.flip,
            "top1_err": self.top1_err,
            "top5_err": self.top5_err,
            "paper": list(self.paper) if self.paper else None,
        }


@dataclass
class Results:
    """Posteriors of every network and method for every image, and the table made of them."""

    paths: list[str]
    labels: torch.Tensor
    classes: list[str]
    probs: dict[str, dict[str, torch.Tensor]]  # network → method → (N, classes)
    scales: dict[str, list[int]]
    flips: dict[str, bool] = field(default_factory=dict)  # network → averaged with mirror images
    rows: list[Row] = field(default_factory=list)

    def compute_rows(self, paper_lookup=None) -> list[Row]:
        rows = []
        for network, by_method in self.probs.items():
            for method, probs in by_method.items():
                top1, top5 = top_errors(probs, self.labels)
                paper = paper_lookup(network, method, self.scales[network]) if paper_lookup else None
                flips = self.flips.get(network)  # the centre crop is never mirrored, as the run's validation
                flips = False if method == "center" and flips is not None else flips
                rows.append(Row(network, method, self.scales[network], top1, top5, paper, flips))
        networks = list(self.probs)
        if len(networks) > 1:  # fusion: the posteriors of all networks averaged, per method
            for method in next(iter(self.probs.values())):
                fused = torch.stack([self.probs[n][method] for n in networks]).mean(dim=0)
                top1, top5 = top_errors(fused, self.labels)
                rows.append(Row(" + ".join(networks), method, [], top1, top5))
        self.rows = rows
        return rows

    def document(self) -> dict[str, Any]:
        """What ``--json FILE`` writes and ``--format json`` prints: ``{images, rows: [{network, method, scales,
        flip, top1_err, top5_err, paper}]}``, the rows as the table shows them (errors as fractions)."""
        return {"images": len(self.paths), "rows": [row.to_dict() for row in self.rows]}

    def unreadable(self) -> list[str]:
        """The images a network could not read (NaN posteriors): counted as errors in every row."""
        missing = torch.zeros(len(self.paths), dtype=torch.bool)
        for by_method in self.probs.values():
            for probs in by_method.values():
                missing |= torch.isnan(probs).any(dim=1)
        return [path for path, gone in zip(self.paths, missing.tolist()) if gone]

    def note_unreadable(self, shown: int = 5) -> None:
        """Say which images the errors count as wrong because they could not be read (a warning)."""
        if unreadable := self.unreadable():
            more = f" and {len(unreadable) - shown} more" if len(unreadable) > shown else ""
            log.warning(
                f"note: {len(unreadable)} of {len(self.paths)} images could not be read; each is counted as an "
                f"error: {', '.join(unreadable[:shown])}{more}"
            )

    def save(self, path: str | Path) -> Path:
        from ..nn.checkpoint import atomic_save

        return atomic_save(
            {
                "format": "vggspec.posteriors",
                "paths": self.paths,
                "labels": self.labels,
                "classes": self.classes,
                "scales": self.scales,
                "flips": self.flips,
                "probs": self.probs,
            },
            path,
        )

    @classmethod
    def load(cls, paths: Sequence[str | Path]) -> Results:
        """Saved posteriors of one or several runs over the same images (to fuse them again)."""
        merged: Results | None = None
        for path in paths:
            try:
                data = torch.load(Path(path), map_location="cpu", weights_only=True)
            except OSError:
                raise  # missing, a folder, unreadable: said by the caller in one line
            except Exception:  # noqa: BLE001 - torch raises several types for a file it cannot read
                data = None
            if not isinstance(data, dict) or data.get("format") != "vggspec.posteriors":
                raise SpecError(f"{path} is not a file of posteriors written by vggspec evaluate --save-probs")
            if merged is None:
                merged = cls(list(data["paths"]), data["labels"], list(data["classes"]), {}, {})
            elif list(data["paths"]) != merged.paths:
                raise SpecError(f"{path} holds posteriors of other images than {paths[0]}: they cannot be fused")
            for name, by_method in data["probs"].items():
                key = name if name not in merged.probs else f"{name} ({Path(path).stem})"
                merged.probs[key] = dict(by_method)
                merged.scales[key] = list(data["scales"][name])
                if name in (data.get("flips") or {}):  # files saved before flips were recorded: not known
                    merged.flips[key] = bool(data["flips"][name])
        if merged is None:
            raise SpecError("no posterior files given")
        return merged


def render_rows(rows: Sequence[Row]) -> str:
    """The table in the shape of the paper's Tables 5 and 6."""
    from ..plan.report import render_table

    show_paper = any(r.paper for r in rows)
    header = ["network", "method", "test scales Q", "flip", "top-1 err (%)", "top-5 err (%)"]  # flip: as in JSON
    if show_paper:
        header += ["paper top-1", "paper top-5"]
    body = []
    for r in rows:
        line = [
            r.network,
            r.method,
            ",".join(map(str, r.scales)) or "-",
            {True: "yes", False: "no"}.get(r.flip, "-"),
            f"{100 * r.top1_err:.1f}",
            f"{100 * r.top5_err:.1f}",
        ]
        if show_paper:
            line += [f"{r.paper[0]:.1f}", f"{r.paper[1]:.1f}"] if r.paper else ["", ""]
        body.append(line)
    return render_table(header, body, "llll" + "r" * (len(header) - 4))


# -- the paper's numbers (ILSVRC-2012 val), printed beside measured ones --------------------

# (network, training scale S_min, S_max, method, test scales) → (top-1, top-5) error, %.
PAPER = {
    ("A", 256, 256, "dense", (256,)): (29.6, 10.4),
    ("A-LRN", 256, 256, "dense", (256,)): (29.7, 10.5),
    ("B", 256, 256, "dense", (256,)): (28.7, 9.9),
    ("C", 256, 256, "dense", (256,)): (28.1, 9.4),
    ("C", 384, 384, "dense", (384,)): (28.1, 9.3),
    ("C", 256, 512, "dense", (384,)): (27.3, 8.8),
    ("D", 256, 256, "dense", (256,)): (27.0, 8.8),
    ("D", 384, 384, "dense", (384,)): (26.8, 8.7),
    ("D", 256, 512, "dense", (384,)): (25.6, 8.1),
    ("E", 256, 256, "dense", (256,)): (27.3, 9.0),
    ("E", 384, 384, "dense", (384,)): (26.9, 8.7),
    ("E", 256, 512, "dense", (384,)): (25.5, 8.0),
    ("B", 256, 256, "dense", (224, 256, 288)): (28.2, 9.6),
    ("C", 256, 256, "dense", (224, 256, 288)): (27.7, 9.2),
    ("C", 384, 384, "dense", (352, 384, 416)): (27.8, 9.2),
    ("C", 256, 512, "dense", (256, 384, 512)): (26.3, 8.2),
    ("D", 256, 256, "dense", (224, 256, 288)): (26.6, 8.6),
    ("D", 384, 384, "dense", (352, 384, 416)): (26.5, 8.6),
    ("D", 256, 512, "dense", (256, 384, 512)): (24.8, 7.5),
    ("E", 256, 256, "dense", (224, 256, 288)): (26.9, 8.7),
    ("E", 384, 384, "dense", (352, 384, 416)): (26.7, 8.6),
    ("E", 256, 512, "dense", (256, 384, 512)): (24.8, 7.5),
    ("D", 256, 512, "multi-crop", (256, 384, 512)): (24.6, 7.5),
    ("D", 256, 512, "both", (256, 384, 512)): (24.4, 7.2),
    ("E", 256, 512, "multi-crop", (256, 384, 512)): (24.6, 7.4),
    ("E", 256, 512, "both", (256, 384, 512)): (24.4, 7.1),
}


def looks_like_ilsvrc2012_val(classes: Sequence[str], images: int) -> bool:
    return len(classes) == 1000 and images == 50_000 and all(map(folders.is_wordnet_id, classes))


def paper_row(network: Network, method: str, scales: Sequence[int]) -> tuple[float, float] | None:
    low, high = network.train_scale
    return PAPER.get((network.name, low, high, method, tuple(scales)))


# -- the whole evaluation, in one process or several ----------------------------------------


def evaluate(config: EvaluateConfig) -> Results | None:
    """Evaluate (and fuse) ``config.checkpoints`` on ``DATA/<split>``, or with ``from_probs`` fuse saved
    posteriors; print the table, write files.

    Returns the results in this process; with several processes, rank 0 prints and writes them
    and this returns None.
    """
    read = [p for c in config.checkpoints for p in (Path(c), Path(c) / runs.BEST, Path(c) / runs.LAST)]
    for output in (config.json_path, config.save_probs):
        if output:  # --json or --save-probs naming a checkpoint would replace it
            files.refuse_overwriting(output, read, "evaluate")
    if config.from_probs:
        results = Results.load(config.checkpoints)
        print(render_rows(results.compute_rows()), file=_table_stream(config))
        results.note_unreadable()
        _write_outputs(results, config)  # --json, and --save-probs keeps the fusion for a later one
        return results
    from .launch import Launcher, where_is_the_data

    launcher = Launcher("evaluate", config)
    with launcher.checking():  # what this machine finds wrong before it starts its processes, the others are told
        where_is_the_data(config.data, f"the images in DIR/{config.split}/<class>/*")
        world = launcher.processes(config.gpus, config.nproc, config.model_fields_set)
    return launcher.start(_worker, config.model_dump(), world=world)


def _worker(config_values: dict[str, Any]) -> Results | None:
    """One process's share: the settings come as a plain dict, which crosses into launched processes."""
    from .distributed import Distributed

    config = EvaluateConfig(**config_values)
    env = Distributed.setup(gpu=bool(config.gpus))
    try:
        env.meet({})  # where a process of another machine that stopped before joining stops them all
        return _evaluate_here(config, env)
    finally:
        env.close()


def _networks_and_images(
    config: EvaluateConfig, env
) -> tuple[list[Network], dict[str, list[int]], folders.ImageFolder]:
    """The networks (rows told apart), each one's test scales, and the folder of images, all checked before
    any image is read."""
    networks = [
        load_network(
            path, env.device, config.dtype, weights=config.weights, num_classes=config.num_classes,
            compile=config.compile,
        )
        for path in config.checkpoints
    ]  # fmt: skip
    seen: dict[str, int] = defaultdict(int)
    for net in networks:  # the same network twice (or two runs of one spec): tell the rows apart
        seen[net.name] += 1
        if seen[net.name] > 1:
            net.name = f"{net.name} #{seen[net.name]}"
    classes = networks[0].classes
    for net in networks[1:]:
        if net.classes != classes:
            raise SpecError(f"{net.path} was trained on other classes than {networks[0].path}: they cannot be fused")
    dense = any(map(uses_dense, config.methods))
    scales = {net.name: evaluation_scales(net, config.scales, dense=dense, say=env.main) for net in networks}
    for net in networks:  # before the folder is scanned or an image read
        check_test_scales(scales[net.name], net.input_size, net.name)
        if env.main:
            note_unused_pixels(net, scales[net.name])
    folder = folders.scan(config.data, config.split, classes=classes or None, say=env.speaks)
    return networks, scales, folder


def _evaluate_here(config: EvaluateConfig, env) -> Results | None:
    try:  # a problem of this process's own (its machine's copy of a checkpoint, of the data): the others are told
        networks, scales, folder = _networks_and_images(config, env)
    except SpecError as problem:
        env.agree({}, "the evaluation", problem=problem)
        raise
    paths = [path for path, _ in folder.samples]
    # Machines of several started with other settings or data would each evaluate their share of another table.
    protocol = {key: getattr(config, key) for key in ("split", "scales", "method", "flip", "dtype")}
    env.agree({"networks": [net.name for net in networks], "images": len(paths), **protocol}, "the evaluation")
    if config.compile and env.main:
        log.info(
            "torch.compile: each network compiles at its first batch, and again at some new shapes (a new test scale, "
            "a batch of one image): tens of seconds each on a CPU, a few times in all"
        )
    labels = torch.tensor([label for _, label in folder.samples])
    mine = by_aspect_ratio(paths, range(env.rank, len(paths), env.world))
    local: dict[str, dict[str, torch.Tensor]] = {}
    bar = _progress(len(mine) * len(networks), config.progress and env.main)
    for net in networks:
        parts: dict[str, list[torch.Tensor]] = defaultdict(list)
        for start in range(0, len(mine), config.batch_size):
            chunk = [paths[i] for i in mine[start : start + config.batch_size]]
            for method, probs in image_posteriors(
                net,
                chunk,
                scales[net.name],
                config.methods,
                flip=net.flips(config.flip),
                batch_size=config.batch_size,
            ).items():
                parts[method].append(probs)
            if bar is not None:
                bar.update(len(chunk))
        local[net.name] = {m: torch.cat(p) if p else torch.empty(0, 0) for m, p in parts.items()}
    if bar is not None:
        bar.close()
    gathered = env.gather((mine, local))
    if not env.main:
        return None
    probs: dict[str, dict[str, torch.Tensor]] = {}
    for net in networks:
        probs[net.name] = {}
        for method in config.methods:
            full = torch.full((len(paths), net.num_classes), math.nan)
            for indices, part in gathered:
                if indices:
                    full[indices] = part[net.name][method]
            probs[net.name][method] = full
    flips = {net.name: net.flips(config.flip) for net in networks}
    results = Results(paths, labels, list(folder.classes), probs, scales, flips)
    by_name = {net.name: net for net in networks}
    lookup = None
    if looks_like_ilsvrc2012_val(folder.classes, len(paths)):
        lookup = lambda name, method, qs: paper_row(by_name[name], method, qs)  # noqa: E731
    results.compute_rows(lookup)
    print(render_rows(results.rows), file=_table_stream(config))
    results.note_unreadable()
    _write_outputs(results, config)
    return results


def _write_outputs(results: Results, config: EvaluateConfig) -> None:
    """``--json FILE`` and ``--save-probs FILE``; ``-`` writes to standard output (the table went to standard
    error then: :func:`_table_stream`)."""
    import json

    if config.json_path:
        files.write_text(config.json_path, json.dumps(results.document(), indent=2) + "\n")
        if not files.is_stdout(config.json_path):
            log.info(f"wrote {config.json_path}")
    if config.save_probs:
        results.save(config.save_probs)
        if not files.is_stdout(config.save_probs):
            log.info(f"wrote {config.save_probs} (posteriors of every image)")


def _table_stream(config: EvaluateConfig) -> TextIO:
    """Where the table of errors goes: standard output, unless ``--json -`` or ``--save-probs -`` write there."""
    return sys.stderr if files.is_stdout(config.json_path) or files.is_stdout(config.save_probs) else sys.stdout


def _progress(total: int, enabled: bool):
    return progress_bar(total, desc="evaluating", unit="img") if enabled else None


# -- one image at a time: vggspec predict ------------------------------------------------------


def predict(checkpoint: str | Path, images: Sequence[str | Path], **options: Any) -> list[tuple[str, list]]:
    """Top classes of each image: [(path, [(class, p), ...])], with :func:`predictions`' options.
    An image that cannot be read raises a SpecError."""
    out = []
    for path, found in predictions(checkpoint, images, **options):
        if isinstance(found, SpecError):
            raise found
        out.append((path, found))
    return out


@dataclass
class Predictions:
    """The images' top classes, computed one image at a time as they are iterated: (path, [(class, p),
    ...]), or (path, the error) for an image that cannot be read, so that one bad file stops nothing.
    The fields say how they were made."""

    net: Network
    paths: list[str]
    method: str
    scale: int
    flip: bool
    top: int

    def __iter__(self) -> Iterator[tuple[str, list[tuple[str, float]] | SpecError]]:
        net, q = self.net, self.scale
        names = net.classes or [str(i) for i in range(net.num_classes)]
        for path in self.paths:
            try:  # read once, as the method reads it
                if self.method == "center":
                    image = decoding.centre_crop(path, scale=q, size=net.input_size, channels=net.channels)
                else:
                    image = decoding.rescale(path, q, net.channels)
            except FileNotFoundError:
                yield path, SpecError(f"no such image: {path}")
                continue
            except UnidentifiedImageError:
                yield path, SpecError(f"cannot read {path} as an image: not a format PIL knows, or a broken file")
                continue
            except Exception as err:  # noqa: BLE001 - PIL's many error types
                yield path, SpecError(f"cannot read {path} as an image ({type(err).__name__}: {err})")
                continue
            posteriors = {
                "dense": lambda: dense_posteriors(net, [image], flip=self.flip)[0],
                "multi-crop": lambda: multi_crop_posteriors(net, [image], flip=self.flip)[0],
                "center": lambda: center_posteriors(net, [image])[0],
            }
            parts = AVERAGED[self.method]
            probs = sum(posteriors[part]() for part in parts) / len(parts)
            values, indices = probs.topk(min(self.top, len(probs)))
            yield path, [(names[i], float(v)) for v, i in zip(values, indices)]

    def describe(self) -> dict[str, Any]:
        """What the numbers mean: the network, its weights, the method, Q, flips and the preprocessing."""
        return {
            "network": self.net.name,
            "weights": self.net.path,
            "method": self.method,
            "scale": self.scale,
            "flip": self.flip,
            "preprocessing": self.net.preprocessing.describe(),
        }


def predictions(
    checkpoint: str | Path,
    images: Sequence[str | Path],
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    method: str = "dense",
    scale: int | None = None,
    top: int = 5,
    flip: bool | None = None,
    dtype: DTypeLike = torch.float32,
) -> Predictions:
    """The top classes of each image, computed as the result is iterated (:class:`Predictions`).

    ``checkpoint`` is a checkpoint or run folder, or with ``weights`` a spec (:func:`load_network`; ``num_classes``:
    the weights' classes, where the spec says another number).
    ``method`` as evaluate's: dense evaluation by default, or ``center`` (torchvision's evaluation
    transform: at Q = 256 and a 224 input, resize 256, centre crop 224), ``multi-crop``, ``both``; at the
    training scale (or ``scale``), averaged with the flipped image if the network was trained with flips
    (or ``flip`` says so; not for ``center``). A folder means the image files under it.
    """
    if method not in PREDICT_METHODS:
        raise SpecError(f"unknown method {method!r}: the methods are {', '.join(PREDICT_METHODS)}")
    paths = image_paths(images)
    net = load_network(checkpoint, dtype=dtype, weights=weights, num_classes=num_classes)
    q = scale or evaluation_scales(net, None, dense=uses_dense(method), keep="--scale {S}")[0]
    check_test_scales([q], net.input_size, net.name)
    if method != "center":
        note_unused_pixels(net, [q])
    return Predictions(net, paths, method, q, net.flips(flip) and method != "center", top)


def image_paths(items: Sequence[str | Path]) -> list[str]:
    """Files as given (read whatever their suffix: the decoder goes by their content); a folder stands for
    the image files under it, those whose suffix is one of :data:`~vggspec.data.folders.IMAGE_EXTENSIONS`
    as for training (sorted, each real file once: a file a folder reaches again, through a link or another
    folder given, is skipped with a warning; a note says how many files were not taken for their suffix)."""
    paths: list[str] = []
    seen: set[tuple[int, int]] = set()
    again = 0
    for item in items:
        folder = Path(item)
        if folder.is_dir():
            found = folders.image_files(folder)
            if not found:
                extensions = ", ".join(folders.IMAGE_EXTENSIONS)
                raise SpecError(f"{folder} holds no image files", hint=f"they end in {extensions}")
            for name in found:
                path = str(folder / name)
                try:
                    stat = os.stat(path)
                except OSError:  # a broken link: listed, and said unreadable when it is read
                    paths.append(path)
                    continue
                if (stat.st_dev, stat.st_ino) in seen:
                    again += 1
                    continue
                seen.add((stat.st_dev, stat.st_ino))
                paths.append(path)
        else:
            paths.append(str(item))
    if again:
        log.warning(f"warning: skipped {again} file{'s' if again != 1 else ''} that an earlier folder given holds too")
    return paths
