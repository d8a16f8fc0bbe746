"""Specs and analyses in Jupyter: each shows as its per-layer table (:func:`report.per_layer_html`).

Jupyter looks for a ``_repr_html_`` method on the object's class. ``Spec`` and ``Analysis`` sit
below the analysis and the report (which import them), so they cannot call the report
themselves; this module gives them the method, and ``import vggspec`` imports it. The layer
graph's drawing needs nothing of the kind: :func:`vggspec.plan.drawing.to_dot` returns a
``graphviz.Digraph``, which Jupyter renders as SVG (with Graphviz's ``dot`` installed).
"""

from __future__ import annotations

import html

from ..errors import SpecError
from ..spec.analysis import Analysis, analyze
from ..spec.spec import Spec
from .report import per_layer_html


def analysis_html(analysis: Analysis) -> str:
    return per_layer_html(analysis)


def spec_html(spec: Spec) -> str:
    """The spec's analysis at its declared input; a spec that does not fit it shows the error."""
    try:
        return per_layer_html(analyze(spec))
    except SpecError as err:
        return f"<pre>{html.escape(str(err))}</pre>"


Analysis._repr_html_ = analysis_html  # type: ignore[attr-defined]
Spec._repr_html_ = spec_html  # type: ignore[attr-defined]
