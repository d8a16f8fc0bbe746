"""Specs and analyses in Jupyter and at the prompt: each shows as its per-layer table.

Jupyter looks for a ``_repr_html_`` method on the object's class, ``print()`` for ``__str__``.
``Spec`` and ``Analysis`` sit below the analysis and the report (which import them), so they
cannot call the report themselves; this module gives them the methods, and ``import vggspec``
imports it: ``print(vggspec.analyze(spec))`` prints what ``vggspec analyze SPEC`` prints
(:func:`report.per_layer`), a notebook shows :func:`report.per_layer_html`. (An analysis's short
``repr`` is its own, in spec/analysis.py: it needs no report.) A diff's views are
:class:`vggspec.plan.diff.SpecDiff`'s own. The layer graph's drawing needs nothing of the kind:
:func:`vggspec.plan.drawing.to_dot` returns a ``graphviz.Digraph``, which Jupyter renders as SVG
(with Graphviz's ``dot`` installed).
"""

from __future__ import annotations

import html

from ..errors import SpecError
from ..spec.analysis import Analysis, analyze
from ..spec.spec import Spec
from .report import Columns, per_layer, per_layer_html


def analysis_html(analysis: Analysis) -> str:
    return per_layer_html(analysis)


def analysis_text(analysis: Analysis) -> str:
    """The per-layer table with every column and the totals, as ``vggspec analyze SPEC`` prints it."""
    return per_layer(analysis, Columns())


def spec_html(spec: Spec) -> str:
    """The spec's analysis at its declared input; a spec that does not fit it shows the error."""
    try:
        return per_layer_html(analyze(spec))
    except SpecError as err:
        return f"<pre>{html.escape(str(err))}</pre>"


Analysis._repr_html_ = analysis_html  # type: ignore[attr-defined]
Analysis.__str__ = analysis_text  # type: ignore[method-assign]
Spec._repr_html_ = spec_html  # type: ignore[attr-defined]
