"""A study's results, for scripts and for people (:mod:`vggspec.run.study` makes them).

* ``STUDY/results.csv``: one row per network × training scale × test protocol, and one per fusion and method,
  with the network's parameters and forward GFLOPs (timm's ``results/*.csv``: a flat table to sort and plot);
* ``STUDY/tables.md``: the paper's Tables 3–6 in its layout (Table 3: config, train S, test Q, top-1 and top-5
  error; Table 5: an evaluation method a row; Table 6: the combined models a row), the best of each column bold;
* ``STUDY/error-vs-gflops.png``: each network's best top-1 error against its forward GFLOPs: what depth buys.

Torch-free: the numbers come from the study's record.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import files
from ..data.scales import TrainingScale

SINGLE_SCALE, MULTI_SCALE, FUSION = "single-scale", "multi-scale", "fusion"  # the test protocols
RESULTS, TABLES, PLOT = "results.csv", "tables.md", "error-vs-gflops.png"
CSV_COLUMNS = (
    "network", "params", "forward_gflops", "train_scale", "test_scales", "protocol", "method", "top1_err_percent",
    "top5_err_percent", "run",
)  # fmt: skip
METHOD_NAMES = {"dense": "dense", "multi-crop": "multi-crop", "both": "multi-crop & dense"}  # the paper's words


@dataclass(frozen=True)
class CellResults:
    """One cell's network and its evaluation: the rows of Tables 3–5 (``rows``: protocol, method, test scales,
    top-1 and top-5 error as fractions) and evaluate's notes."""

    key: str  # the cell's folder under STUDY
    network: str
    weight_layers: int
    params: int
    forward_flops: int  # of one image at the network's input (2 × MACs)
    train_scale: TrainingScale
    run: Path
    rows: list[dict[str, Any]]
    images: int  # validation images
    classes: int
    notes: list[str] = field(default_factory=list)

    def row(self, protocol: str, method: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["protocol"] == protocol and r["method"] == method)

    @property
    def score(self) -> tuple[float, float]:
        """What makes one run better than another: top-1, then top-5 error of 'both' at Table 4's scales."""
        best = self.row(MULTI_SCALE, "both")
        return best["top1_err"], best["top5_err"]

    @property
    def label(self) -> str:
        """The paper's way to name a net in a fusion: (D/[256;512]/256,384,512)."""
        scales = ",".join(map(str, self.row(MULTI_SCALE, "both")["test_scales"]))
        return f"({self.network}/{scale_text(self.train_scale)}/{scales})"


@dataclass(frozen=True)
class FusionResult:
    """Several cells' posteriors averaged: a row per method (method, top-1 and top-5 error as fractions)."""

    members: list[CellResults]
    rows: list[dict[str, Any]]


def fusion_groups(results: Sequence[CellResults]) -> list[list[CellResults]]:
    """Table 6's fusions: the two best networks (each by its best run, :attr:`CellResults.score`), and all of them
    when there are more; with one network, its runs at several scales (the paper fused nets of one config too)."""
    best: dict[str, CellResults] = {}
    for result in results:
        if result.network not in best or result.score < best[result.network].score:
            best[result.network] = result
    candidates = sorted(best.values() if len(best) >= 2 else results, key=lambda r: r.score)
    groups = [candidates[:2]] if len(candidates) >= 2 else []
    if len(candidates) > 2:
        groups.append(candidates)
    return groups


def scale_text(scale: TrainingScale) -> str:
    """S as the paper writes it: 256, or [256;512] for a jittered one."""
    return f"[{scale.low};{scale.high}]" if scale.jittered else str(scale.low)


def _percent(error: float) -> str:
    return f"{100 * error:.1f}"


@dataclass
class Report:
    """The study's results and the files made of them."""

    study: Path
    data: str
    cells: list[CellResults]
    fusions: list[FusionResult]
    notes: list[str]

    # -- the flat table ------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """results.csv's rows: errors in percent, GFLOPs of one image's forward pass."""
        out = []
        for cell in self.cells:
            for row in cell.rows:
                out.append(self._csv_row(cell.network, cell.params, cell.forward_flops, str(cell.train_scale),
                                         " ".join(map(str, row["test_scales"])), row, str(cell.run)))  # fmt: skip
        for fusion in self.fusions:
            members = fusion.members
            for row in fusion.rows:
                out.append(self._csv_row(
                    " + ".join(m.network for m in members), sum(m.params for m in members),
                    sum(m.forward_flops for m in members), " + ".join(str(m.train_scale) for m in members),
                    " + ".join(" ".join(map(str, m.row(MULTI_SCALE, "both")["test_scales"])) for m in members),
                    {**row, "protocol": FUSION}, " + ".join(str(m.run) for m in members),
                ))  # fmt: skip
        return out

    @staticmethod
    def _csv_row(network, params, flops, train_scale, test_scales, row, run) -> dict[str, Any]:
        return {
            "network": network,
            "params": params,
            "forward_gflops": float(f"{flops / 1e9:.6g}"),
            "train_scale": train_scale,
            "test_scales": test_scales,
            "protocol": row["protocol"],
            "method": row["method"],
            "top1_err_percent": round(100 * row["top1_err"], 3),
            "top5_err_percent": round(100 * row["top5_err"], 3),
            "run": run,
        }

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """``vggspec study --format json``: the CSV's rows, the cells, the notes and where the files are."""
        return {
            "study": str(self.study),
            "data": self.data,
            "images": self.cells[0].images if self.cells else 0,
            "cells": [
                {
                    "cell": c.key,
                    "network": c.network,
                    "params": c.params,
                    "forward_flops": c.forward_flops,
                    "train_scale": str(c.train_scale),
                    "run": str(c.run),
                }
                for c in self.cells
            ],  # fmt: skip
            "rows": self.rows(),
            "notes": self.notes,
            "files": {name: str(self.study / name) for name in (RESULTS, TABLES, PLOT)},
        }

    def json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # -- the paper's tables ---------------------------------------------------------------------------
    def markdown(self) -> str:
        images, classes = (self.cells[0].images, self.cells[0].classes) if self.cells else (0, 0)
        networks = list(dict.fromkeys(c.network for c in self.cells))
        chance = f"{100 * (1 - 1 / classes):.1f} and {100 * max(0.0, 1 - 5 / classes):.1f}" if classes else "-"
        lines = [
            f"# A study of {len(networks)} network{'s' if len(networks) != 1 else ''} on {self.data}",
            "",
            f"Top-1 and top-5 error (%) on the {images:,} validation images in {classes} classes (chance: {chance}), "
            "each network as training left it (RUN/last.pt); the best of each column in bold. Every row is also in "
            "results.csv.",
            "",
            "## The networks",
            "",
            *_pipe_table(
                ["ConvNet config.", "weight layers", "params", "forward GFLOPs"],
                [
                    [c.network, str(c.weight_layers), f"{c.params:,}", f"{c.forward_flops / 1e9:.3g}"]
                    for c in {c.network: c for c in self.cells}.values()
                ],  # fmt: skip
                "lrrr",
            ),
            "",
            "## Table 3: single test scale (dense; Q = S, or ½(S_min + S_max) for a jittered S)",
            "",
            *self._scale_table(SINGLE_SCALE),
            "",
            "## Table 4: three test scales (dense; Q = S−32, S, S+32, or S_min, ½(S_min + S_max), S_max)",
            "",
            *self._scale_table(MULTI_SCALE),
            "",
            "## Table 5: dense and multi-crop evaluation (Table 4's test scales; 50 crops a scale)",
            "",
            *self._method_table(),
            "",
            "## Table 6: fusion (posteriors averaged; Table 4's test scales)",
            "",
            *self._fusion_table(),
        ]
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {note.removeprefix('note: ')}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    def _scale_table(self, protocol: str) -> list[str]:
        rows, errors, previous = [], [], None
        for cell in self.cells:
            row = cell.row(protocol, "dense")
            rows.append([cell.network if cell.network != previous else "", scale_text(cell.train_scale),
                         ",".join(map(str, row["test_scales"]))])  # fmt: skip
            previous = cell.network
            errors.append((row["top1_err"], row["top5_err"]))
        return _pipe_table(
            ["ConvNet config.", "train (S)", "test (Q)", "top-1 val. error (%)", "top-5 val. error (%)"],
            _with_errors(rows, errors),
            "lllrr",
        )

    def _method_table(self) -> list[str]:
        rows, errors, previous = [], [], None
        for cell in self.cells:
            for number, method in enumerate(METHOD_NAMES):
                row = cell.row(MULTI_SCALE, method)
                shown = number == 0
                first = [cell.network if cell.network != previous else "", scale_text(cell.train_scale),
                         ",".join(map(str, row["test_scales"]))]  # fmt: skip
                rows.append([*(first if shown else ["", "", ""]), METHOD_NAMES[method]])
                errors.append((row["top1_err"], row["top5_err"]))
            previous = cell.network
        return _pipe_table(
            [
                "ConvNet config.",
                "train (S)",
                "test (Q)",
                "evaluation method",
                "top-1 val. error (%)",
                "top-5 val. error (%)",
            ],  # fmt: skip
            _with_errors(rows, errors),
            "llllrr",
        )

    def _fusion_table(self) -> list[str]:
        if not self.fusions:
            return ["(one network trained at one scale: nothing to fuse)"]
        rows, errors = [], []
        for fusion in self.fusions:
            for number, row in enumerate(fusion.rows):
                rows.append([", ".join(m.label for m in fusion.members) if number == 0 else "",
                             METHOD_NAMES[row["method"]]])  # fmt: skip
                errors.append((row["top1_err"], row["top5_err"]))
        return _pipe_table(
            ["Combined ConvNet models", "evaluation method", "top-1 val. error (%)", "top-5 val. error (%)"],
            _with_errors(rows, errors),
            "llrr",
        )

    # -- the plot -------------------------------------------------------------------------------------
    def best_by_network(self) -> list[tuple[CellResults, float]]:
        """Each network (its best run) and its lowest top-1 error in % (any run, any protocol), in the study's order."""
        best: dict[str, tuple[CellResults, float]] = {}
        for cell in self.cells:
            top1 = 100 * min(row["top1_err"] for row in cell.rows)
            if cell.network not in best or top1 < best[cell.network][1]:
                best[cell.network] = (cell, top1)
        return list(best.values())

    def plot(self, path: str | Path) -> bool:
        """Each network's best top-1 error against its forward GFLOPs, labelled; False without matplotlib."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return False
        points = [(c.network, c.weight_layers, c.forward_flops / 1e9, top1) for c, top1 in self.best_by_network()]
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.scatter([p[2] for p in points], [p[3] for p in points], zorder=3)
        flops = [p[2] for p in points if p[2] > 0]
        if flops and max(flops) / min(flops) > 10:
            ax.set_xscale("log")
        middle = (min(flops) * max(flops)) ** 0.5 if flops else 0  # labels of the points right of it go to their left
        for name, layers, gflops, top1 in points:
            left = gflops > middle
            ax.annotate(f"{name}, {layers} layers: {top1:.1f}%", (gflops, top1), textcoords="offset points",
                        xytext=(-6 if left else 6, 5), ha="right" if left else "left")  # fmt: skip
        ax.set(xlabel="forward GFLOPs per image", ylabel="best top-1 val. error (%)",
               title="what depth buys: error against compute")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.margins(x=0.3, y=0.2)
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, -0.04 * (high - low)), high)  # no room for errors below 0, but for a point at 0
        fig.tight_layout()
        with files.writing(path) as f:
            fig.savefig(f, format="png", dpi=100)
        return True

    def write(self) -> None:
        """STUDY/results.csv, STUDY/tables.md and STUDY/error-vs-gflops.png, each written whole; the plot only when
        the results changed (or it is missing): drawing it takes longer than a finished study's whole run."""
        table, unchanged = self.csv(), False
        try:
            unchanged = (self.study / RESULTS).read_text(encoding="utf-8") == table and (self.study / PLOT).exists()
        except OSError:
            pass
        files.write_text(self.study / RESULTS, table)
        files.write_text(self.study / TABLES, self.markdown())
        if not unchanged:
            self.plot(self.study / PLOT)


def _with_errors(rows: list[list[str]], errors: list[tuple[float, float]]) -> list[list[str]]:
    """``rows`` with their top-1 and top-5 errors, the lowest of each column (as shown) in bold."""
    shown = [(_percent(top1), _percent(top5)) for top1, top5 in errors]
    best1 = min((float(s[0]) for s in shown), default=None)
    best5 = min((float(s[1]) for s in shown), default=None)
    return [
        [*row, f"**{top1}**" if float(top1) == best1 else top1, f"**{top5}**" if float(top5) == best5 else top5]
        for row, (top1, top5) in zip(rows, shown)
    ]


def _pipe_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in (header, rule, *rows)]
