"""Two networks compared layer by layer, as diff(1) compares lines: what was added, removed or
changed, and what that costs in parameters, MACs, activations and receptive field.

The layers are aligned by edit distance (Needleman–Wunsch): keeping a layer costs nothing,
changing one into another of its kind (a width, a kernel, ``[bn]``) costs 1, adding or removing
one costs 1. So a conv3-256 inserted in a stage is one added layer, not every later layer
changed; and where a run of equal layers grows, the new one is its last, as Table 1 bolds it.
Torch-free: only specs and their analyses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..spec.analysis import Analysis, LayerAnalysis, analyze
from ..spec.formatter import format_layer
from ..spec.layers import LayerSpec, MaxPool
from ..spec.spec import Spec
from ..units import human_count
from .report import HtmlRow, html_table, render_table

Status = Literal["same", "changed", "added", "removed"]
NUMBERS = ("params", "macs", "activations")
"""The per-layer numbers a diff weighs, as :class:`~vggspec.spec.analysis.LayerAnalysis` names them."""

_CHANGE, _GAP = 1, 1  # edit costs; keeping an equal layer costs 0


def align(old: Sequence[LayerSpec], new: Sequence[LayerSpec]) -> list[tuple[int | None, int | None]]:
    """The cheapest alignment of two layer sequences: pairs of indices, None where a layer has
    no partner (added to ``new``, or removed from ``old``). Paired layers are equal or of one kind."""
    cost = [[0] * (len(new) + 1) for _ in range(len(old) + 1)]
    for i in range(len(old) + 1):
        for j in range(len(new) + 1):
            options = []
            if i and j and _pair_cost(old[i - 1], new[j - 1]) is not None:
                options.append(cost[i - 1][j - 1] + _pair_cost(old[i - 1], new[j - 1]))
            if i:
                options.append(cost[i - 1][j] + _GAP)
            if j:
                options.append(cost[i][j - 1] + _GAP)
            cost[i][j] = min(options) if options else 0
    pairs: list[tuple[int | None, int | None]] = []
    i, j = len(old), len(new)
    while i or j:  # from the end, gaps first on ties: an added layer goes last in its run
        if j and cost[i][j] == cost[i][j - 1] + _GAP:
            j -= 1
            pairs.append((None, j))
        elif i and cost[i][j] == cost[i - 1][j] + _GAP:
            i -= 1
            pairs.append((i, None))
        else:
            i, j = i - 1, j - 1
            pairs.append((i, j))
    return pairs[::-1]


def _pair_cost(old: LayerSpec, new: LayerSpec) -> int | None:
    """0 for equal layers, the change cost for two of one kind, None for layers that cannot pair."""
    if old.same_as(new):
        return 0
    return _CHANGE if old.kind == new.kind else None


@dataclass(frozen=True)
class LayerChange:
    """One row of a diff: a layer of the old network, of the new, or of both."""

    status: Status
    old: LayerAnalysis | None
    new: LayerAnalysis | None
    old_text: str | None
    new_text: str | None
    ends_stage: bool  # a max pooling: the receptive field at a stage's end is worth showing

    def delta(self, number: str) -> int:
        """The new layer's ``number`` (params, macs, activations) less the old one's."""
        return (getattr(self.new, number) if self.new else 0) - (getattr(self.old, number) if self.old else 0)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "old": self.old_text,
            "new": self.new_text,
            "delta": {number: self.delta(number) for number in NUMBERS},
            "receptive_field": {
                "old": self.old.receptive_field if self.old else None,
                "new": self.new.receptive_field if self.new else None,
            },
        }


@dataclass(frozen=True)
class SpecDiff:
    """Two networks' layers aligned (:func:`diff`); ``str()`` is the table ``vggspec diff`` prints, and
    Jupyter shows it as an HTML table."""

    old: Analysis
    new: Analysis
    rows: tuple[LayerChange, ...]

    @property
    def same(self) -> bool:
        """The same network: equal input and layers (names, comments and spelling aside)."""
        return self.old.spec.input.same_as(self.new.spec.input) and all(row.status == "same" for row in self.rows)

    def count(self, status: Status) -> int:
        return sum(1 for row in self.rows if row.status == status)

    def total(self, number: str) -> tuple[int, int]:
        """(old, new) network totals of ``number``: params, macs or activations."""
        return getattr(self.old, number), getattr(self.new, number)

    def summary(self) -> str:
        """``B → C: 3 added, 0 removed, 0 changed; params +1.18 M (+0.9%), MACs +1.87 G (+16%), ...``"""
        names = f"{self.old.spec.display_name} → {self.new.spec.display_name}"
        if self.same:
            return f"{names}: the same network"
        counts = ", ".join(f"{self.count(status)} {status}" for status in ("added", "removed", "changed"))
        totals = ", ".join(f"{label} {_change(*self.total(n))}" for n, label in zip(NUMBERS, _LABELS))
        return f"{names}: {counts}; {totals}"

    def __str__(self) -> str:
        header, rows = self._table()
        lines = []
        if changed_input := self._input_change():
            lines += [changed_input, ""]
        lines += [render_table(header, rows, _ALIGN), "", self.summary()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """Jupyter's view: the table ``str()`` gives, the added and changed layers in bold (as Table 1
        sets the layers each configuration adds), each row's class its status (``vggspec-added``); the caption is
        the summary, after the change of input if there is one."""
        header, rows = self._table()
        caption = "; ".join(filter(None, [self._input_change(), self.summary()]))
        marked = [
            HtmlRow(cells, "font-weight:bold" if row.status in ("added", "changed") else "", f"vggspec-{row.status}")
            for row, cells in zip(self.rows, rows)
        ]
        return html_table(caption, header, marked, _ALIGN)

    def _table(self) -> tuple[list[str], list[list[str]]]:
        """(header, a row of cells per aligned pair): what the text and the HTML views show."""
        header = ["", self.old.spec.display_name, self.new.spec.display_name, *_LABELS, "RF at stage end"]
        rows = [
            [
                row.status,
                row.old_text or "",
                row.new_text or "",
                *(_signed(row.delta(n)) if row.delta(n) else "" for n in NUMBERS),
                _rf(row) if row.ends_stage else "",
            ]
            for row in self.rows
        ]
        return header, rows

    def _input_change(self) -> str:
        """``input: 224×224 RGB → 256×256 RGB``, or nothing for the same input."""
        old_input, new_input = self.old.spec.input, self.new.spec.input
        return "" if old_input.same_as(new_input) else f"input: {old_input.describe()} → {new_input.describe()}"

    def to_dict(self) -> dict:
        """What ``vggspec diff --format json`` prints."""
        return {
            "old": self.old.spec.display_name,
            "new": self.new.spec.display_name,
            "same": self.same,
            "input": {"old": self.old.spec.input.describe(), "new": self.new.spec.input.describe()},
            "layers": [row.to_dict() for row in self.rows],
            "total": {
                number: {"old": old, "new": new, "delta": new - old}
                for number in NUMBERS
                for old, new in [self.total(number)]
            },
        }


_LABELS = ("params", "MACs", "activations")
_ALIGN = "lll" + "r" * (len(_LABELS) + 1)  # status and the two layers, then the numbers


def diff(old: Spec, new: Spec) -> SpecDiff:
    """``old``'s and ``new``'s layers aligned (:func:`align`), each row with its analysis."""
    old_analysis, new_analysis = analyze(old), analyze(new)
    old_stats = {layer.index: layer for layer in old_analysis.layers}
    new_stats = {layer.index: layer for layer in new_analysis.layers}
    rows = []
    for i, j in align(old.layers, new.layers):
        old_layer = old.layers[i] if i is not None else None
        new_layer = new.layers[j] if j is not None else None
        rows.append(
            LayerChange(
                status=_status(old_layer, new_layer),
                old=old_stats[i] if i is not None else None,
                new=new_stats[j] if j is not None else None,
                old_text=format_layer(old_layer) if old_layer is not None else None,
                new_text=format_layer(new_layer) if new_layer is not None else None,
                ends_stage=isinstance(old_layer, MaxPool) or isinstance(new_layer, MaxPool),
            )
        )
    return SpecDiff(old_analysis, new_analysis, tuple(rows))


def new_layers(specs: Sequence[Spec]) -> list[set[int]]:
    """For each spec, the indices of its layers added or changed against the spec before it (none
    for the first): what Table 1 sets in bold, and ``vggspec table --mark-added`` too."""
    marks: list[set[int]] = [set() for _ in specs]
    for k, (before, after) in enumerate(zip(specs, specs[1:]), start=1):
        for i, j in align(before.layers, after.layers):
            if j is not None and _status(before.layers[i] if i is not None else None, after.layers[j]) != "same":
                marks[k].add(j)
    return marks


def _status(old: LayerSpec | None, new: LayerSpec | None) -> Status:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    return "same" if old.same_as(new) else "changed"


def _rf(row: LayerChange) -> str:
    old = str(row.old.receptive_field) if row.old else "-"
    new = str(row.new.receptive_field) if row.new else "-"
    return old if old == new else f"{old} → {new}"


def _signed(n: int) -> str:
    return f"{n:+,}"


def _change(old: int, new: int) -> str:
    """``+1.18 M (+0.9%)``: a total's change, with its share of the old total."""
    delta = new - old
    if not delta:
        return "±0"
    text = ("+" if delta > 0 else "") + human_count(delta)
    return f"{text} ({100 * delta / old:+.2g}%)" if old else text
