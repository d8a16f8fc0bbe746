"""Analyses → text: per-layer tables (plain, markdown, CSV, HTML), specs side by side, the bundled
specs' catalogue, and Table 1 as markdown.

Plain text with aligned columns, so the output reads the same in a terminal, a pipe or a log
file; the other formats share its columns (:func:`layer_table`). Every number says its unit and
convention (MACs vs FLOPs, parameters with biases).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..spec.analysis import (
    EXPLODING_SCALE,
    FADING_SCALE,
    PIXEL_RMS,
    STANDARDISED_RMS,
    WIDE,
    Analysis,
    LayerAnalysis,
    auto_input_rms,
    initial_rms,
    resolve_init,
    scale_trouble,
)
from ..spec.formatter import format_layer
from ..spec.layers import MaxPool
from ..spec.spec import Spec
from ..units import human_bytes, human_count, human_duration
from .batch import shares_text
from .budget import PLANNING_MARGIN, Plan, TimeBound, TrainBudget


@dataclass(frozen=True)
class Columns:
    """Which groups of numbers to show; all when none is chosen."""

    shapes: bool = False
    params: bool = False
    flops: bool = False
    memory: bool = False
    receptive_field: bool = False
    init: str | None = None  # also each layer's output RMS in a network so initialised

    def resolved(self) -> Columns:
        if any((self.shapes, self.params, self.flops, self.memory, self.receptive_field)):
            return self
        return Columns(True, True, True, True, True, self.init)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """Columns padded to width; ``align`` has one 'l' or 'r' per column (numbers right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape)


class _Column(NamedTuple):
    """One column of the per-layer table: its title, alignment, a layer's value and the total's."""

    title: str
    align: str
    value: Callable[[LayerAnalysis], int | float | str]
    total: int | str = ""
    grouped: bool = False  # a count: thousands separated in text (15,470,264,320)


def _layer_columns(analysis: Analysis, columns: Columns) -> list[_Column]:
    """The per-layer table's columns, for every format (text, markdown, CSV, HTML)."""
    spec = analysis.spec
    table = [
        _Column("#", "r", lambda la: la.index),
        _Column("name", "l", lambda la: la.name, "total"),
        _Column(
            "layer", "l", lambda la: format_layer(spec.layers[la.index]), f"{analysis.weight_layers} weight layers"
        ),
        _Column("line", "r", lambda la: la.line),
    ]
    if columns.shapes:
        table.append(_Column("output (C×H×W)", "r", lambda la: shape_text(la.output_shape)))
    if columns.params:
        table.append(_Column("params", "r", lambda la: la.params, analysis.params, grouped=True))
    if columns.flops:
        table.append(_Column("MACs", "r", lambda la: la.macs, analysis.macs, grouped=True))
    if columns.memory:
        table.append(_Column("activations", "r", lambda la: la.activations, analysis.activations, grouped=True))
    if columns.receptive_field:
        table.append(_Column("RF", "r", lambda la: la.receptive_field))
        table.append(_Column("stride", "r", lambda la: la.effective_stride))
        table.append(_Column("padding", "r", lambda la: la.effective_padding))
    if columns.init:
        rms = dict(zip(analysis.layers, rms_at_init(spec, columns.init)[0]))
        table.append(_Column("RMS at init", "r", lambda la: rms[la]))
    return table


def _text(value: int | float | str, grouped: bool) -> str:
    if grouped and isinstance(value, int):
        return f"{value:,}"
    return f"{value:.2g}" if isinstance(value, float) else str(value)


def layer_table(analysis: Analysis, columns: Columns) -> tuple[list[str], list[list[str]], str]:
    """(header, a row per layer then the totals row, alignment) as text cells."""
    table = _layer_columns(analysis, columns.resolved())
    rows = [[_text(c.value(la), c.grouped) for c in table] for la in analysis.layers]
    rows.append([_text(c.total, c.grouped) for c in table])
    return [c.title for c in table], rows, "".join(c.align for c in table)


def _title(analysis: Analysis) -> str:
    spec = analysis.spec
    title = f"{spec.display_name}" + (f" ({spec.source})" if spec.source else "")
    return title + f": input {shape_text(analysis.input_shape)}"


def per_layer(analysis: Analysis, columns: Columns) -> str:
    """One spec: a row per layer, totals last."""
    columns = columns.resolved()
    lines = [_title(analysis), "", render_table(*layer_table(analysis, columns)), ""]
    lines += _totals(analysis, columns)
    return "\n".join(lines)


def per_layer_markdown(analysis: Analysis, columns: Columns) -> str:
    """One spec as a markdown pipe table (a row per layer, totals last in bold), for reports."""
    return "\n".join([f"### {_title(analysis)}", "", *_pipe_table(*layer_table(analysis, columns))]) + "\n"


def _pipe_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """A markdown pipe table's lines: the header, the alignment rule, the rows, the last (the totals) in bold."""
    *layers, totals = rows
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    bold = [f"**{cell}**" if cell else "" for cell in totals]
    return [_pipe_row(header), rule, *(_pipe_row(row) for row in [*layers, bold])]


def _pipe_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def per_layer_csv(analyses: Sequence[Analysis], columns: Columns) -> str:
    """A row per layer per spec, the spec's name first; plain numbers (no separators), no totals
    row (a column's sum is its total), so that a spreadsheet or pandas reads it as it is."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for i, analysis in enumerate(analyses):
        table = _layer_columns(analysis, columns.resolved())
        if i == 0:
            writer.writerow(["spec", *(c.title for c in table)])
        writer.writerows([analysis.spec.display_name, *(c.value(la) for c in table)] for la in analysis.layers)
    return out.getvalue()


NOTEBOOK_COLUMNS = Columns(shapes=True, params=True, flops=True, receptive_field=True)
"""What a spec or an analysis shows in Jupyter: shapes, parameters, MACs, receptive fields."""


def per_layer_html(analysis: Analysis, columns: Columns = NOTEBOOK_COLUMNS) -> str:
    """One spec as an HTML table (a row per layer, totals last), for Jupyter's ``_repr_html_``."""
    header, rows, align = layer_table(analysis, columns)
    *layers, totals = rows
    marked = [*(HtmlRow(cells) for cells in layers), HtmlRow(totals, "font-weight:bold")]
    return html_table(_title(analysis), header, marked, align)


class HtmlRow(NamedTuple):
    """A row of :func:`html_table`: its cells' texts, a style for each cell, a class for the row."""

    cells: Sequence[str]
    style: str = ""
    kind: str = ""  # the ``class`` attribute: a notebook's stylesheet may colour the row by it


def html_table(caption: str, header: Sequence[str], rows: Sequence[HtmlRow], align: str) -> str:
    """An HTML table with every text escaped, numbers right-aligned as ``align`` says (one 'l' or 'r' a column)."""

    def row(cells: Sequence[str], tag: str = "td", style: str = "", kind: str = "") -> str:
        opening = f'<tr class="{html.escape(kind)}">' if kind else "<tr>"
        return (
            opening
            + "".join(
                f'<{tag} style="text-align:{"right" if a == "r" else "left"}{";" + style if style else ""}">'
                f"{html.escape(c)}</{tag}>"
                for c, a in zip(cells, align)
            )
            + "</tr>"
        )

    body = [row(header, "th"), *(row(r.cells, style=r.style, kind=r.kind) for r in rows)]
    return f"<table><caption>{html.escape(caption)}</caption>" + "".join(body) + "</table>"


def _totals(analysis: Analysis, columns: Columns) -> list[str]:
    out = []
    if columns.params:
        out.append(f"parameters:  {analysis.params:,} ({_millions(analysis.params)} million; weights and biases)")
    if columns.flops:
        out.append(
            f"compute:     {human_count(analysis.macs)}MACs = {human_count(analysis.flops)}FLOPs per image "
            "(MACs: multiply-accumulates of conv and FC layers, biases excluded, as fvcore counts; FLOPs = 2 × MACs)"
        )
    if columns.memory:
        out.append(
            f"activations: {analysis.activations:,} values = {human_bytes(analysis.activation_bytes)} per image "
            "in float32 (every layer's output, forward pass)"
        )
    if columns.receptive_field:
        last = _last_feature_layer(analysis)
        if last is not None:
            out.append(
                f"receptive field at {last.name}: {last.receptive_field} px, effective stride "
                f"{last.effective_stride}, effective padding {last.effective_padding}"
            )
    if columns.init:
        layers, pixels = rms_at_init(analysis.spec, columns.init)
        out.append(
            f"at init:     with --init {_init_named(analysis.spec, columns.init)}, class scores of RMS "
            f"{layers[-1]:.1g} for {_inputs_of_rms(pixels)}, in training mode ({_verdict(layers[-1])})"
        )
    if columns.shapes:
        out.append(
            f"input size:  smallest valid {analysis.min_input_size}×{analysis.min_input_size} "
            f"(analysed at {analysis.input_shape[1]}×{analysis.input_shape[2]})"
        )
    return out


def rms_at_init(spec: Spec, init: str) -> tuple[tuple[float, ...], float]:
    """Every layer's output RMS in a network freshly drawn by ``init``, on the inputs a run gives it by default
    (``--normalise auto``), and those inputs' RMS: what training meets at its first step."""
    pixels = auto_input_rms(spec, init)
    return initial_rms(spec, init, pixels), pixels


def _inputs_of_rms(rms: float) -> str:
    return f"inputs divided by their std (RMS {rms:g})" if rms == STANDARDISED_RMS else f"pixels of RMS {rms:g}"


def _verdict(scale: float) -> str:
    bounds = f"{FADING_SCALE:g} to {EXPLODING_SCALE:g}"
    trouble = scale_trouble(scale)
    return f"outside {bounds}: {trouble}" if trouble else f"within {bounds}: trainable"


def _last_feature_layer(analysis: Analysis):
    feature = [la for la in analysis.layers if analysis.spec.layers[la.index].SPATIAL]
    return feature[-1] if feature else None


def side_by_side(analyses: Sequence[Analysis], columns: Columns) -> str:
    """Several specs: a column per spec, a row per number (``--params`` gives Table 2's row)."""
    columns = columns.resolved()
    header = ["", *(a.spec.display_name for a in analyses)]
    rows: list[list[str]] = [["weight layers", *(str(a.weight_layers) for a in analyses)]]
    if columns.shapes:
        rows.append(["input", *(shape_text(a.input_shape) for a in analyses)])
        rows.append(["smallest valid input", *(f"{a.min_input_size}×{a.min_input_size}" for a in analyses)])
    if columns.params:
        rows.append(["params (millions)", *(_millions(a.params) for a in analyses)])
        rows.append(["params", *(f"{a.params:,}" for a in analyses)])
    if columns.flops:
        rows.append(["MACs", *(human_count(a.macs) for a in analyses)])
        rows.append(["FLOPs (2 × MACs)", *(human_count(a.flops) for a in analyses)])
    if columns.memory:
        rows.append(["activations", *(human_count(a.activations) for a in analyses)])
        rows.append(["activation memory (fp32)", *(human_bytes(a.activation_bytes) for a in analyses)])
    if columns.receptive_field:
        lasts = [_last_feature_layer(a) for a in analyses]
        rows.append(["last feature layer", *(la.name if la else "-" for la in lasts)])
        rows.append(["  receptive field (px)", *(str(la.receptive_field) if la else "-" for la in lasts)])
        rows.append(["  effective stride", *(str(la.effective_stride) if la else "-" for la in lasts)])
        rows.append(["  effective padding", *(str(la.effective_padding) if la else "-" for la in lasts)])
    if columns.init:
        scales = [rms_at_init(a.spec, columns.init)[0][-1] for a in analyses]
        rows.append([f"class-score RMS at init ({columns.init})", *(f"{s:.1g}" for s in scales)])
    notes = []
    if columns.init:
        notes.append(
            "class-score RMS at init: a fresh network in training mode, on the inputs --normalise auto gives it: "
            f"{_inputs_of_rms(PIXEL_RMS)}, or {_inputs_of_rms(STANDARDISED_RMS)} from Glorot's or Kaiming's "
            f"start on a network {WIDE} channels wide. Over {EXPLODING_SCALE:g} training diverges, under "
            f"{FADING_SCALE:g} it stalls."
        )
    if columns.params:
        notes.append("params: weights and biases.")
    if columns.flops:
        notes.append("MACs: multiply-accumulates of conv and FC layers per image, biases excluded (fvcore's count).")
    if columns.memory:
        notes.append("activations: every layer's output per image.")
    return render_table(header, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def catalogue(entries: Sequence[tuple[str, Analysis]]) -> str:
    """The bundled specs, one row each: the name other commands take, and what the network is."""
    header = ["name", "display name", "input", "classes", "params", "MACs"]
    rows = [
        [name, a.spec.display_name, input_text(a.spec), str(classes(a)), f"{a.params:,}", human_count(a.macs)]
        for name, a in entries
    ]
    return render_table(header, rows, "lllrrr")


def input_text(spec: Spec) -> str:
    """``224×224 RGB``, ``28×28 gray``."""
    return f"{spec.input.size}×{spec.input.size} {_colour(spec)}"


def classes(analysis: Analysis) -> int:
    """The number of class scores: the last layer's channels."""
    return analysis.layers[-1].output_shape[0]


def _init_named(spec: Spec, init: str) -> str:
    """``init`` as asked, and for ``auto`` what it chose for ``spec``: ``auto (glorot)``."""
    return f"auto ({resolve_init(spec, init)})" if init == "auto" else init


def _millions(n: int) -> str:
    """Table 2's rounding (133, 138, 144); small networks keep three significant digits."""
    return f"{n / 1e6:.0f}" if n >= 10_000_000 else f"{n / 1e6:.3g}"


def table1(specs: Sequence[Spec], bold: Sequence[set[int]] = ()) -> str:
    """Table 1 of the paper, from spec files: one column per spec, one row per layer, aligned by stage.

    ``bold``: for each column, the indices of its layers to set in bold (``**conv3-256**``), as the
    paper marks the layers each configuration adds (:func:`vggspec.plan.diff.new_layers`).
    """
    stages = [_stages(spec) for spec in specs]
    marked = [set(bold[k]) if k < len(bold) else set() for k in range(len(specs))]

    def cell(column: int, index: int | None) -> str:
        if index is None:
            return ""
        text = format_layer(specs[column].layers[index])
        return f"**{text}**" if index in marked[column] else text

    depth = max(len(s) for s in stages)
    header = [spec.display_name for spec in specs]
    weight_layers = [sum(1 for layer in spec.layers if layer.kind in ("conv", "fc")) for spec in specs]
    rows: list[list[str]] = [[f"{n} weight layers" for n in weight_layers]]
    inputs = [f"input ({s.input.size} × {s.input.size} {_colour(s)} image)" for s in specs]
    rows.append(inputs)
    for k in range(depth):
        layers_k = [s[k][0] if k < len(s) else [] for s in stages]
        for r in range(max(len(layers) for layers in layers_k)):
            rows.append([cell(c, layers[r] if r < len(layers) else None) for c, layers in enumerate(layers_k)])
        pools = [s[k][1] if k < len(s) else None for s in stages]
        if any(p is not None for p in pools):
            rows.append([cell(c, p) for c, p in enumerate(pools)])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _colour(spec: Spec) -> str:
    return {3: "RGB", 1: "gray"}.get(spec.input.channels, f"{spec.input.channels}-channel")


def _stages(spec: Spec) -> list[tuple[list[int], int | None]]:
    """The indices of the layers between pools, each stage with its pool's (the last has none)."""
    stages: list[tuple[list[int], int | None]] = []
    current: list[int] = []
    for index, layer in enumerate(spec.layers):
        if isinstance(layer, MaxPool):
            stages.append((current, index))
            current = []
        else:
            current.append(index)
    stages.append((current, None))
    return stages


# -- a training step's budget (analyze --train) ----------------------------------------------------


_STEP_HEADER = (
    *("#", "name", "layer", "output (C×H×W)"),
    *("weights", "kept for backward", "forward FLOPs", "backward FLOPs"),
)
_STEP_ALIGN = "rllrrrrr"


def _step_rows(budget: TrainBudget, shown: Callable[[int], str], flops: Callable[[int], str]) -> list[list[str]]:
    """A row per layer of one process's training step, then the totals: bytes ``shown`` and FLOPs as asked."""
    spec = budget.spec
    rows = [
        [
            str(la.index),
            la.name,
            format_layer(spec.layers[la.index]),
            shape_text(la.output_shape),
            shown(la.weights_bytes),
            shown(la.saved_bytes),
            flops(la.forward_flops),
            flops(la.backward_flops),
        ]
        for la in budget.layers
    ]
    saved_by_layers = sum(la.saved_bytes for la in budget.layers)
    totals = [shown(budget.weights_bytes), shown(saved_by_layers), flops(budget.forward_flops)]
    return [*rows, ["", "total", "", "", *totals, flops(budget.backward_flops)]]


def _bytes_or_blank(count: int) -> str:
    return human_bytes(count) if count else ""


def _step_title(budget: TrainBudget) -> str:
    spec = budget.spec
    return f"{spec.display_name}" + (f" ({spec.source})" if spec.source else "") + f": {step_setting(budget)}"


def _step_summary(budget: TrainBudget) -> list[str]:
    """The step's memory by kind, its peak and its compute: a line each."""
    s = budget.settings
    lines = [
        f"peak memory:  {human_bytes(budget.peak_bytes)} ({budget.peak_bytes:,} bytes), in the {budget.peak_at}",
        f"  weights     {human_bytes(budget.weights_bytes)} (float32)",
        f"  gradients   {human_bytes(budget.gradients_bytes)} (float32)",
        f"  momentum    {human_bytes(budget.optimizer_bytes)} (SGD's, one buffer per parameter)",
        f"  activations {human_bytes(budget.activations_bytes)} kept by the forward pass for the backward"
        + (" (autocast's half copies of the weights included)" if s.amp else ""),
        f"  input       {human_bytes(budget.inputs_bytes)} (a micro-batch of float32 images and their labels)",
    ]
    if budget.buffers_bytes:
        lines.append(f"  buffers     {human_bytes(budget.buffers_bytes)} (batch norm's running statistics)")
    if budget.ddp_buckets_bytes:
        lines.append(f"  DDP buckets {human_bytes(budget.ddp_buckets_bytes)} (DistributedDataParallel's gradient copy)")
    lines.append(
        f"compute:      {human_count(budget.forward_flops)}FLOPs forward + "
        f"{human_count(budget.backward_flops)}FLOPs backward = "
        f"{human_count(budget.flops)}FLOPs a step of one process (conv and FC layers, as FlopCounterMode counts)"
    )
    return lines


def training_step(budget: TrainBudget) -> str:
    """One process's training step: a row per layer (its weights, what it keeps for the backward pass,
    its FLOPs), then the step's memory by kind, its peak and its compute."""
    table = render_table(_STEP_HEADER, _step_rows(budget, _bytes_or_blank, human_count), _STEP_ALIGN)
    return "\n".join([_step_title(budget), "", table, "", *_step_summary(budget)])


def training_step_markdown(budget: TrainBudget, notes: Sequence[str] = ()) -> str:
    """:func:`training_step` for reports: a ``###`` heading, a pipe table (totals in bold), the summary as a
    list, and ``notes`` (the plan, the time bound) after it."""
    table = _pipe_table(_STEP_HEADER, _step_rows(budget, _bytes_or_blank, human_count), _STEP_ALIGN)
    lines = [f"### {_step_title(budget)}", "", *table]
    lines += ["", *(f"- {' '.join(line.split())}" for line in [*_step_summary(budget), *notes])]
    return "\n".join(lines) + "\n"


def training_step_csv(budgets: Sequence[TrainBudget]) -> str:
    """A row per layer per spec of the training step, the spec's name first; plain numbers (bytes, FLOPs), no
    totals row, as :func:`per_layer_csv`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["spec", *_STEP_HEADER])
    for budget in budgets:
        writer.writerows([budget.spec.display_name, *row] for row in _step_rows(budget, str, str)[:-1])
    return out.getvalue()


def step_setting(budget: TrainBudget) -> str:
    """What step the budget is of: 'batch 256 over 4 GPUs: 64 images a process, in 2 passes of 32 (bf16 autocast)'."""
    s = budget.settings
    where = f"over {s.processes} processes" if s.processes > 1 else "in one process"
    passes = "in one pass" if s.accumulation == 1 else f"in {s.accumulation} accumulated passes of at most {s.micro}"
    precision = f"{s.amp} autocast" if s.amp else "float32"
    layout = ", channels-last" if s.channels_last else ""
    return (
        f"one training step (SGD with momentum) of batch {s.batch} {where}: {shares_text(s.batch, s.processes)} "
        f"images {passes} ({precision}{layout}; {s.device} allocation rules)"
        + ("; the budget is of a process that takes the most" if s.batch % s.processes else "")
    )


def plan_text(found: Plan) -> str:
    """What the planner found, in a sentence or two."""
    margin = (
        f"{human_bytes(found.usable)} of {human_bytes(found.memory)} planned, {PLANNING_MARGIN:.0%} left for "
        "the CUDA context, cuDNN's workspaces and fragmentation"
    )
    if found.budget is None:
        return (
            f"does not fit: even one image a pass needs {human_bytes(found.needed * (1 - PLANNING_MARGIN))} at its "
            f"peak ({margin}); the smallest memory that would do is {human_bytes(found.needed)}"
        )
    s = found.budget.settings
    if s.accumulation == 1:
        how = f"the whole share of {s.share} images in one pass"
    else:
        how = (
            f"micro-batches of {s.micro}, {s.accumulation} accumulation steps a step ({s.share} images a process); "
            f"the largest micro-batch that fits is {found.largest}"
        )
    return f"fits: {how}; peak {human_bytes(found.budget.peak_bytes)} ({margin})"


def time_text(bound: TimeBound, rate: str) -> str:
    """The lower bound on time, said as one."""
    return (
        f"time on {bound.device} ({rate}): at least {human_duration(bound.step_seconds)} a step, "
        f"{human_duration(bound.epoch_seconds)} an epoch of {bound.images:,} images ({bound.steps_per_epoch:,} steps): "
        "a lower bound from the FLOPs at the peak rate alone (memory traffic, the data and communication add)"
    )
