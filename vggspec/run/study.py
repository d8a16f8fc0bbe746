"""``vggspec study``: the paper's experiments on the user's own folder and specs, in one command that the same
command continues.

Section 4 is a study: one recipe applied to A–E, each net trained at a few scales S, then evaluated at one
test scale (Table 3), at three (Table 4), densely against 150 crops (Table 5), and fused (Table 6). Here a study
is a grid of **cells**, one per network × training scale, each an ordinary run folder ``STUDY/<spec>/S<scale>``
(its checkpoints, logs and ``--resume``), trained with :func:`~vggspec.run.train.train` and evaluated with
:func:`~vggspec.run.evaluate.evaluate` on the validation split:

* Table 3: dense, at Q = S (Q = ½(S_min + S_max) for a jittered S);
* Table 4: dense, at S−32, S, S+32 (S_min, ½(S_min + S_max), S_max for a jittered S);
* Table 5: at Table 4's scales, dense, multi-crop (50 crops a scale) and both;
* Table 6: the posteriors of the best networks averaged (:func:`fusion_groups`), for each method.

The paper's scales are for 224-pixel inputs; for others they go in proportion: ``--train-scales 256,384,256-512``
is S = 37, 55 and [37, 73] for 32-pixel inputs, and ±32 is ±5 (:func:`~vggspec.data.scales.paper_offset`).
Each network is evaluated as training left it (``RUN/last.pt``): its best epoch was picked on these same
validation images, which would flatter it.

``STUDY/study.json`` (written whole) records each cell's **recipe** (the training settings that change what it
learns, the network, S, the data, and the recipe of the run it was initialised from) and what of it finished.
The same command again skips finished cells, resumes a killed one from its ``last.pt``, and starts anew, said in
one line, a cell whose recipe changed; a larger ``--epochs`` alone continues the finished runs.

Cells run one after another, each over every GPU given (train's ``--gpus``): see :data:`GPU_CHOICE`.
Torch is imported only to train and evaluate: the plan (``--dry-run``) is arithmetic on the specs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import files
from ..data.folders import ImageFolder
from ..data.scales import (
    PAPER_INPUT,
    PAPER_OFFSET,
    TrainingScale,
    in_proportion,
    paper_offset,
    parse_test_scales,
    parse_train_scales,
)
from ..errors import SpecError
from ..logs import log
from ..spec.analysis import analyze, unused_pixels
from ..spec.bundled import spec_path
from ..spec.formatter import spec_hash
from ..spec.parser import load
from ..spec.spec import Spec
from ..units import human_bytes, human_count, human_duration
from . import runs
from .classes import check_classes, with_classes
from .config import TrainConfig, validated
from .study_report import MULTI_SCALE, SINGLE_SCALE, CellResults, FusionResult, Report, fusion_groups, scale_text

STATE = "study.json"  # STUDY/study.json: the cells, their recipes and what of them finished
POSTERIORS = "posteriors.pt"  # RUN/posteriors.pt: every validation image's posteriors at Table 4's scales
STATE_FORMAT = "vggspec.study"
METHODS = ("dense", "multi-crop", "both")  # Table 5's rows, Section 3.2

# Train's settings the study decides for each cell, and those of several machines (a study runs on one).
STUDY_DECIDES = ("spec", "out", "data", "resume", "scale")
MACHINE_SETTINGS = ("nnodes", "rdzv_endpoint", "rdzv_timeout")
# How the work is done, not what is learned: changing them does not make a cell's run another.
WORK_SETTINGS = (
    "micro_batch", "gpus", "nproc", "max_restarts", "workers", "channels_last", "deterministic", "checkpoint_every",
    "progress",
)  # fmt: skip

GPU_CHOICE = (
    "Cells run one after another, each over every GPU given (--gpus N: train's data parallelism, as the paper "
    "trained each net on 4 GPUs, 3.75x one). Not one cell per GPU: over N GPUs a step needs about 1/N of the "
    "batch's activations on each (D at batch 256: 19.1 GiB on one GPU, 6.42 GiB on each of 4; analyze --train), "
    "--init-from-first's deeper nets must wait for the first anyway, and a killed study has one cell to resume."
)
DEFAULT_DEVICE = "a100"  # whose peak rates the plan's time bound uses when none is given

UNUSED_PIXELS = "outside every pooling window"  # evaluate's note for each run, which unused_pixel_notes condenses
_EPOCH_LINE = re.compile(r"epoch \d+: ")  # the trainer's line per epoch: its progress, kept in a study's output


@dataclass(frozen=True)
class StudyConfig:
    """What a study is: its specs, data and folder, the training settings every cell shares (``recipe``: train's
    settings as given, without those the study decides), its training scales and how its cells start."""

    specs: Sequence[str]
    data: str
    out: str
    recipe: dict[str, Any] = field(default_factory=dict)
    train_scales: str | None = None  # '256,384,256-512', at the paper's 224 pixels; by default each spec's S
    init_from_first: bool = False  # the first spec's runs initialise the others' (Section 3.1)
    device: str | None = None  # the plan's time bound: a known GPU's peak rates ...
    device_flops: float | None = None  # ... or one rate for every layer


# -- the plan: cells, their recipes and their scales ---------------------------------------------


def network_fingerprint(spec: Spec) -> str:
    """The network, as its canonical text without comments: a renamed file or a new comment is the same network."""
    return spec_hash(spec)[:16]


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Cell:
    """One network at one training scale: a run folder, trained and evaluated as the paper did."""

    index: int  # from 1, in the order the cells run
    key: str  # its folder under STUDY: '<spec>/S<scale>'
    spec_file: Path
    spec: Spec
    scale: TrainingScale
    run: Path
    init_from: Cell | None
    recipe: dict[str, Any]
    single_scales: list[int]  # Table 3's Q
    multi_scales: list[int]  # Table 4's and Table 5's

    @property
    def name(self) -> str:
        return self.spec.display_name

    @property
    def input_size(self) -> int:
        return self.spec.input.size

    @property
    def params(self) -> int:
        return analyze(self.spec).params

    @property
    def forward_flops(self) -> int:
        """FLOPs (2 × MACs) of one image's forward pass at the network's input, through its classifier."""
        return analyze(self.spec).flops

    @property
    def recipe_hash(self) -> str:
        return recipe_hash(self.recipe)

    @property
    def protocol(self) -> dict[str, Any]:
        """What its evaluation depends on besides its weights: re-evaluated when it changes."""
        return {"split": self.recipe["val_split"], "single": self.single_scales, "multi": self.multi_scales,
                "weights": runs.LAST, "methods": list(METHODS)}  # fmt: skip

    @property
    def weights(self) -> Path:
        return self.run / runs.LAST

    def train_config(self, given: dict[str, Any], data: str, *, resume: bool) -> TrainConfig:
        """The run's settings: the study's recipe as given (so that a resumed run compares only those), and what
        the study decides: the spec, the folder, S, and the run it starts from."""
        values = {**given, "spec": str(self.spec_file), "data": data, "out": str(self.run), "scale": str(self.scale)}
        if self.init_from is not None:
            values["init_from"] = str(self.init_from.weights)
        return validated(TrainConfig, {**values, "resume": resume}, "training")


def plan_cells(config: StudyConfig, notes: list[str] | None = None) -> list[Cell]:
    """The study's cells in the order they run (spec by spec, scale by scale), each with its recipe; what the paper's
    scales become for other inputs goes to ``notes``. Bad input is a SpecError before anything runs."""
    notes = [] if notes is None else notes
    if not config.specs:
        raise SpecError("which specs? give those to compare: vggspec study A D --data DIR --out STUDY")
    if taken := sorted(set(config.recipe) & {*STUDY_DECIDES, *MACHINE_SETTINGS}):
        raise SpecError(
            f"a study sets {', '.join(taken)} itself: leave {'them' if len(taken) > 1 else 'it'} out",
            hint="the training scales are --train-scales; a study runs on one machine (its cells over all its GPUs)",
        )
    if config.init_from_first and config.recipe.get("init_from"):
        raise SpecError("--init-from-first and --init-from both say where the networks start: give one")
    base = validated(TrainConfig, {**config.recipe, "data": config.data}, "training")
    study = Path(config.out)
    specs: list[tuple[Path, Spec]] = []
    for name in config.specs:
        path = spec_path(name)
        specs.append((path.resolve() if path.exists() else path, load(path)))
    folders: dict[str, Path] = {}
    for path, _ in specs:
        if path.stem in folders:
            same = folders[path.stem] == path
            raise SpecError(
                f"{path} is given twice" if same else f"{folders[path.stem]} and {path} would share STUDY/{path.stem}",
                hint="give each spec once" if same else "rename one of the files",
            )
        folders[path.stem] = path
    cells: list[Cell] = []
    first: list[Cell] = []
    for number, (path, spec) in enumerate(specs):
        for position, scale in enumerate(parse_train_scales(config.train_scales, spec.input.size)):
            source = None
            if config.init_from_first and number > 0:
                source = first[position] if position < len(first) else first[0]
            key = f"{path.stem}/S{scale.low}" + (f"-{scale.high}" if scale.jittered else "")
            recipe = base.model_dump(exclude={*STUDY_DECIDES, *MACHINE_SETTINGS, *WORK_SETTINGS})
            recipe.update(network=network_fingerprint(spec), scale=str(scale), data=str(Path(config.data).resolve()))
            if source is not None:
                recipe["init_from"] = f"{source.key} (recipe {source.recipe_hash})"
            single, multi = paper_test_scales(spec, scale, notes)
            cell = Cell(len(cells) + 1, key, path, spec, scale, study / key, source, recipe, single, multi)
            cells.append(cell)
            if number == 0:
                first.append(cell)
    notes[:0] = [*scale_notes(cells), *unused_pixel_notes(cells)]
    return cells


def paper_test_scales(spec: Spec, scale: TrainingScale, notes: list[str]) -> tuple[list[int], list[int]]:
    """Table 3's Q and Table 4's three for a network trained at ``scale``; a Q below the network's input (S at the
    input itself) is left out, said in ``notes``."""
    size = spec.input.size
    single = parse_test_scales(None, scale, size, say=False)
    paper = parse_test_scales("paper", scale, size, say=False)
    multi = [q for q in paper if q >= size]
    if len(multi) < len(paper):
        notes.append(
            f"note: {spec.display_name} at S = {scale}: Q = {', '.join(str(q) for q in paper if q < size)} is below "
            f"its {size}-pixel input; Table 4 tests it at {', '.join(map(str, multi))}"
        )
    return single, multi


def scale_notes(cells: Sequence[Cell]) -> list[str]:
    """What the paper's scales become for inputs other than 224 pixels, once per input size."""
    notes = []
    for size in sorted({cell.input_size for cell in cells if cell.input_size != PAPER_INPUT}):
        offset = paper_offset(size)
        scales = ", ".join(str(in_proportion(s, size)) for s in (256, 384, 512))
        notes.append(
            f"note: the paper's scales are for {PAPER_INPUT}-pixel inputs; for {size}-pixel ones they go in proportion "
            f"(× {size}/{PAPER_INPUT}): S = 256, 384, 512 are {scales}, and Table 4's S−{PAPER_OFFSET}, S, "
            f"S+{PAPER_OFFSET} are S−{offset}, S, S+{offset} (at least one pixel)"
        )
    return notes


def unused_pixel_notes(cells: Sequence[Cell]) -> list[str]:
    """Where a test scale leaves a border of the image outside every pooling window in dense evaluation (as
    evaluate notes for each run), once per network: the paper's scales, in proportion, are seldom multiples of a
    small network's stride."""
    found: dict[str, tuple[Spec, dict[int, int]]] = {}
    for cell in cells:
        unused = found.setdefault(cell.name, (cell.spec, {}))[1]
        for q in (*cell.single_scales, *cell.multi_scales):
            if q not in unused and (rows := unused_pixels(cell.spec, q)):
                unused[q] = rows
    notes = []
    for name, (spec, unused) in found.items():
        if unused:
            scales = sorted(unused)
            stride = analyze(spec, dense=True).layers[-1].effective_stride
            notes.append(
                f"note: at Q = {_listed(scales)}, {name}'s dense evaluation leaves the last "
                f"{_listed([unused[q] for q in scales])} rows and columns of the shorter side outside every pooling "
                f"window (a Q that is a multiple of its stride, {stride}, uses every pixel)"
            )
    return notes


def _listed(values: Sequence[object]) -> str:
    """1, 2 and 3."""
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


# -- what the study has done: STUDY/study.json ---------------------------------------------------


class StudyState:
    """Which cells finished, with which recipe, and their results; written whole after every change, so that a
    killed study leaves it as it was after the last thing that finished."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATE
        self.cells: dict[str, dict[str, Any]] = {}
        self.fusions: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def load(cls, folder: Path) -> StudyState:
        state = cls(folder)
        try:
            data = json.loads(state.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as err:
            raise SpecError(
                f"{state.path} cannot be read ({getattr(err, 'strerror', None) or err})",
                hint=f"remove it to start the study again (its run folders are kept, and retrained): rm {state.path}",
            ) from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(data.get("cells"), dict):
            raise SpecError(
                f"{state.path} is not a study's record", hint="give --out a study's folder, or a new or empty one"
            )
        state.cells = data["cells"]
        state.fusions = data.get("fusions") or {}
        return state

    def save(self) -> None:
        text = json.dumps({"format": STATE_FORMAT, "cells": self.cells, "fusions": self.fusions}, indent=2)
        files.write_text(self.path, text + "\n")


@dataclass(frozen=True)
class Step:
    """What a cell needs: ``train`` (None: nothing; 'new', 'resume', 'continue', 'anew') and ``evaluate``; ``said``:
    the cell's line."""

    train: str | None
    evaluate: bool
    said: str

    @property
    def done(self) -> bool:
        return self.train is None and not self.evaluate


def next_step(cell: Cell, state: StudyState) -> Step:
    """What ``cell`` needs, from what the study recorded of it and what its folder holds."""
    entry = state.cells.get(cell.key)
    has_run = (cell.run / runs.LAST).exists()
    if entry is None:
        if cell.run.exists() and any(cell.run.iterdir()):
            return Step("anew", True, f"starts anew: {cell.run} holds files the study has no record of")
        return Step("new", True, "trains")
    changed = {k for k in {*entry.get("recipe", {}), *cell.recipe} if entry["recipe"].get(k) != cell.recipe.get(k)}
    if changed == {"epochs"} and cell.recipe["epochs"] > entry["recipe"]["epochs"] and has_run:
        return Step(
            "continue", True, f"continues to {cell.recipe['epochs']} epochs (it had {entry['recipe']['epochs']})"
        )
    if changed:
        return Step("anew", True, f"recipe changed ({_changes(entry['recipe'], cell.recipe, changed)}): starts anew")
    if not entry.get("trained"):
        if has_run:
            return Step("resume", True, "resumes its stopped run")
        return Step("anew", True, "starts anew: its run stopped before its first checkpoint")
    if not has_run:
        return Step("anew", True, f"starts anew: {cell.weights} is gone")
    evaluation = entry.get("evaluation")
    if evaluation is None or evaluation.get("protocol") != cell.protocol or not (cell.run / POSTERIORS).exists():
        return Step(None, True, "trained; evaluates")
    return Step(None, False, "done")


def _changes(old: dict[str, Any], new: dict[str, Any], keys: set[str]) -> str:
    shown = {"network": "the network", "init_from": "the run it starts from"}
    said = []
    for key in sorted(keys):
        if key in shown:
            said.append(f"{shown[key]} changed")
        else:
            said.append(f"{key} {_value(old.get(key))} → {_value(new.get(key))}")
    return ", ".join(said)


def _value(value: object) -> str:
    return "(not set)" if value is None else str(value)


# -- running a study ------------------------------------------------------------------------------


def run_study(config: StudyConfig) -> Report:
    """Train and evaluate every cell that needs it, one after another, then write STUDY/results.csv,
    STUDY/tables.md and STUDY/error-vs-gflops.png; returns the report. One line per cell, and the trainer's own
    progress; the rest of train's and evaluate's notes are kept quiet."""
    notes: list[str] = []
    cells = plan_cells(config, notes)
    study = Path(config.out)
    given = {**config.recipe}
    if not Path(config.data).is_dir():  # said before the study's folder is made (train would say it in its cell)
        from ..data.folders import LAYOUT_HINT

        raise SpecError(f"the data directory {config.data} does not exist or is not a directory", hint=LAYOUT_HINT)
    with runs.held(study):  # one study in a folder at a time; a killed one leaves nothing that stops the next
        state = StudyState.load(study)
        for note in notes:
            log.info(note)
        for cell in cells:
            step = next_step(cell, state)
            log.info(f"[{cell.index}/{len(cells)}] {cell.name}, {_s(cell.scale)} ({cell.run}): {step.said}")
            _run_cell(cell, step, state, given, config.data)
        fusions = _fusions(cells, state)
        evaluated = [cell_results(cell, state) for cell in cells]
        notes = list(dict.fromkeys([*notes, *(note for result in evaluated for note in result.notes)]))
        report = Report(study, config.data, evaluated, fusions, notes)
        report.write()
    return report


def _run_cell(cell: Cell, step: Step, state: StudyState, given: dict[str, Any], data: str) -> None:
    if step.train is not None:
        if step.train == "anew" and cell.run.exists():
            shutil.rmtree(cell.run)
        state.cells[cell.key] = {"recipe": cell.recipe, "trained": False}  # before the run: a kill resumes it
        state.save()
        from .train import train

        with _trainer_progress_only():
            train(cell.train_config(given, data, resume=step.train in ("resume", "continue")))
        state.cells[cell.key]["trained"] = True
        state.save()
    if step.evaluate:
        state.cells[cell.key]["evaluation"] = _evaluate(cell, data, gpus=int(given.get("gpus") or 0))
        state.save()


def _evaluate(cell: Cell, data: str, *, gpus: int) -> dict[str, Any]:
    """Table 3's evaluation (dense, at Q = S) and Table 4's and 5's (dense, multi-crop and both at three scales,
    the posteriors kept for Table 6), in this process (on one GPU with --gpus): the results come back here and
    nothing else prints. evaluate()'s notes are kept for the tables, said once."""
    from .config import EvaluateConfig
    from .evaluate import evaluate

    notes: list[str] = []
    common = {"checkpoints": [str(cell.weights)], "data": data, "split": cell.recipe["val_split"], "progress": False,
              "gpus": min(gpus, 1)}  # fmt: skip
    with _collected(notes), redirect_stdout(io.StringIO()):  # evaluate prints its table: the study prints its own
        single = evaluate(EvaluateConfig(**common, scales=_scales_text(cell.single_scales), method="dense"))
        multi = evaluate(
            EvaluateConfig(**common, scales=_scales_text(cell.multi_scales), method="all",
                           save_probs=str(cell.run / POSTERIORS))
        )  # fmt: skip
    assert single is not None and multi is not None  # one process: the results are here
    rows = [_row(SINGLE_SCALE, row) for row in single.rows] + [_row(MULTI_SCALE, row) for row in multi.rows]
    return {"protocol": cell.protocol, "rows": rows, "images": len(multi.paths), "classes": len(multi.classes),
            "notes": list(dict.fromkeys(notes))}  # fmt: skip


def cell_results(cell: Cell, state: StudyState) -> CellResults:
    """A finished cell's network and evaluation, as the report shows them."""
    evaluation = state.cells[cell.key]["evaluation"]
    layers = sum(1 for layer in analyze(cell.spec).layers if layer.kind in ("conv", "fc"))
    return CellResults(
        cell.key, cell.name, layers, cell.params, cell.forward_flops, cell.scale, cell.run,
        evaluation["rows"], evaluation["images"], evaluation["classes"], evaluation["notes"],
    )  # fmt: skip


def _s(scale: TrainingScale) -> str:
    """S = 256, or S ∈ [256;512]: as the paper says which S a net was trained at."""
    return f"S ∈ {scale_text(scale)}" if scale.jittered else f"S = {scale}"


def _scales_text(scales: Sequence[int]) -> str:
    return ",".join(map(str, scales))


def _row(protocol: str, row: Any) -> dict[str, Any]:
    return {"protocol": protocol, "method": row.method, "test_scales": list(row.scales), "flip": row.flip,
            "top1_err": row.top1_err, "top5_err": row.top5_err}  # fmt: skip


@contextmanager
def _trainer_progress_only() -> Iterator[None]:
    """While a cell trains: its warnings and its progress (a line per epoch, the bars), not its configuration,
    data and summary, which its run folder keeps (config.json, metrics.jsonl)."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or bool(_EPOCH_LINE.match(record.getMessage()))

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


@contextmanager
def _collected(notes: list[str]) -> Iterator[None]:
    """While a cell is evaluated: its notes and warnings kept in ``notes`` (for the tables), none printed."""

    def collect(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and UNUSED_PIXELS not in message:  # said once a network: the plan's
            notes.append(message)
        return False

    log.addFilter(collect)
    try:
        yield
    finally:
        log.removeFilter(collect)


# -- Table 6: fusions ---------------------------------------------------------------------------


def _fusions(cells: Sequence[Cell], state: StudyState) -> list[FusionResult]:
    """Table 6's rows: from the cells' saved posteriors, once (kept in the study's record by who was fused)."""
    by_key = {cell.key: cell for cell in cells}
    fusions, kept = [], {}
    for group in fusion_groups([cell_results(cell, state) for cell in cells]):
        members = [by_key[result.key] for result in group]
        key = " + ".join(f"{c.key}@{c.recipe_hash}:{recipe_hash(c.protocol)}" for c in members)
        rows = state.fusions.get(key) or _fused_rows(members)
        kept[key] = rows
        fusions.append(FusionResult(group, rows))
    if kept != state.fusions:
        state.fusions = kept
        state.save()
    return fusions


def _fused_rows(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Top-1 and top-5 error of the cells' posteriors averaged, for each method (Section 3.2: 'fusion')."""
    import torch

    from .evaluate import Results
    from .metrics import top_errors

    loaded = [Results.load([cell.run / POSTERIORS]) for cell in cells]
    for cell, results in zip(cells[1:], loaded[1:]):
        if results.paths != loaded[0].paths:
            raise SpecError(
                f"{cell.run / POSTERIORS} holds other images than {cells[0].run / POSTERIORS}: they cannot be fused",
                hint="the data changed between their evaluations: run the study again to evaluate them anew",
            )
    rows = []
    for method in METHODS:
        probs = torch.stack([next(iter(r.probs.values()))[method] for r in loaded]).mean(dim=0)
        top1, top5 = top_errors(probs, loaded[0].labels)
        rows.append({"method": method, "top1_err": top1, "top5_err": top5})
    return rows


# -- the plan, shown (--dry-run) -------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCell:
    """A cell as the plan shows it: what it is, what a training step of it costs, and what the study would do."""

    cell: Cell
    step: Step
    step_memory: int  # bytes: the peak of one training step of one process
    batch: int
    time_at_least: float  # seconds for its epochs: FLOPs at the device's peak rates

    def to_dict(self) -> dict[str, Any]:
        cell = self.cell
        return {
            "cell": cell.key,
            "network": cell.name,
            "spec": str(cell.spec_file),
            "params": cell.params,
            "forward_flops": cell.forward_flops,
            "train_scale": str(cell.scale),
            "test_scales_single": cell.single_scales,
            "test_scales_multi": cell.multi_scales,
            "init_from": cell.init_from.key if cell.init_from else None,
            "run": str(cell.run),
            "batch": self.batch,
            "step_memory_bytes": self.step_memory,
            "time_at_least_seconds": self.time_at_least,
            "action": "nothing" if self.step.done else (self.step.train or "evaluate"),
            "status": self.step.said,
        }


@dataclass
class StudyPlan:
    cells: list[PlannedCell]
    device: str  # the time bound's rates, in words
    train_images: int
    val_images: int
    classes: int
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "device": self.device, "train_images": self.train_images,
                "val_images": self.val_images, "classes": self.classes, "cells": [c.to_dict() for c in self.cells],
                "notes": self.notes}  # fmt: skip

    def text(self) -> str:
        from ..plan.report import render_table

        header = ["cell", "network", "params", "forward FLOPs", "S", "Q (Table 3)", "Q (Table 4)", "init from",
                  "step memory", "time at least", "status"]  # fmt: skip
        rows = []
        for planned in self.cells:
            cell = planned.cell
            rows.append([
                cell.key, cell.name, f"{cell.params:,}", human_count(cell.forward_flops), scale_text(cell.scale),
                _scales_text(cell.single_scales), _scales_text(cell.multi_scales),
                cell.init_from.key if cell.init_from else "-", human_bytes(planned.step_memory),
                human_duration(planned.time_at_least), planned.step.said,
            ])  # fmt: skip
        count = len(self.cells)
        epochs = self.cells[0].cell.recipe["epochs"] if self.cells else 0
        lines = [
            f"{count} cell{'s' if count != 1 else ''} on {self.train_images:,} training images in {self.classes} "
            f"classes ({self.val_images:,} validation images); nothing trained (--dry-run)",
            "",
            render_table(header, rows, "llrrllllrrl"),
            "",
            f"step memory: one training step of one process at batch {self.cells[0].batch if self.cells else 0} "
            "(analyze --train); time: the FLOPs of "
            f"{epochs} epoch{'s' if epochs != 1 else ''} at {self.device}, a lower bound (memory traffic, the data, "
            "communication and evaluation add)",
            *self.notes,
        ]
        return "\n".join(lines)


def plan_study(config: StudyConfig) -> StudyPlan:
    """The study's plan without running anything: each cell's network, parameters, FLOPs, training step's memory
    and a lower bound on its time (:mod:`vggspec.plan.budget`), and what the study would do with it."""
    from ..data.folders import scan
    from ..plan.batch import default_batch
    from ..plan.budget import TrainSettings, time_bound, train_budget
    from ..plan.gpus import gpu, rates

    notes: list[str] = []
    cells = plan_cells(config, notes)
    base = validated(TrainConfig, {**config.recipe, "data": config.data}, "training")
    train_folder = scan(config.data, base.train_split, say=False)
    val_folder = scan(config.data, base.val_split, classes=train_folder.classes, say=False)
    images = len(train_folder.samples)
    world = base.gpus or base.nproc
    batch = base.batch_size or default_batch(images, world)
    micro = base.micro_batch if isinstance(base.micro_batch, int) else None
    settings = TrainSettings(batch=batch, processes=world, micro_batch=micro, amp=base.amp,
                             channels_last=base.channels_last, device="cuda" if base.gpus else "cpu")  # fmt: skip
    if config.device_flops is not None:
        conv = fc = config.device_flops
        device = f"{human_count(conv)}FLOP/s (--device-flops)"
    else:
        known = gpu(config.device or DEFAULT_DEVICE)
        conv, fc = rates(known, base.amp)
        device = (
            f"{known.name}'s peak rates ({'--device' if config.device else 'by default; --device, --device-flops'})"
        )
    state = StudyState.load(Path(config.out))
    planned = []
    checked: set[Path] = set()
    for cell in cells:
        step = next_step(cell, state)
        if step.train in ("new", "anew") and cell.spec_file not in checked:  # a resumed run's classes are its own
            checked.add(cell.spec_file)
            _check_classes(cell, config, train_folder, notes)
        budget = train_budget(cell.spec, settings)
        bound = time_bound(budget, conv, fc, device=device, images=images)
        planned.append(PlannedCell(cell, step, budget.peak_bytes, batch, bound.epoch_seconds * base.epochs))
    return StudyPlan(planned, device, images, len(val_folder.samples), len(train_folder.classes), notes)


def _check_classes(cell: Cell, config: StudyConfig, train: ImageFolder, notes: list[str]) -> None:
    """The classes ``cell``'s run will train for, checked against the training split as the run checks them at its
    start (:mod:`.classes`): a SpecError now, not the same one when the study reaches the cell. What
    ``--num-classes`` makes of the network goes to ``notes``."""

    def keep(record: logging.LogRecord) -> bool:
        notes.append(record.getMessage())
        return False

    run_config = cell.train_config(config.recipe, config.data, resume=False)
    log.addFilter(keep)
    try:
        spec = with_classes(run_config, cell.spec)
    finally:
        log.removeFilter(keep)
    check_classes(run_config, spec, train)
