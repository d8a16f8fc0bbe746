"""Plans and pictures of a network, before anything runs. No torch.

    batch.py     the global batch and how it splits over processes and micro-batches
    budget.py    a training step's memory and time (``analyze --train``), the micro-batch that fits
    gpus.py      GPUs' peak rates, for the time bound
    report.py    tables of analyses and budgets: text, markdown, CSV, HTML
    drawing.py   graphviz drawings (``vggspec graph``)
    diff.py      two specs' layers aligned (``vggspec diff``)
    notebook.py  how a Spec and an Analysis show in Jupyter and print() as their per-layer tables
"""

from . import notebook  # noqa: F401  (Spec and Analysis get their Jupyter view)
from .budget import TrainBudget, TrainSettings, train_budget
from .diff import SpecDiff, diff
from .drawing import to_dot

__all__ = ["SpecDiff", "TrainBudget", "TrainSettings", "diff", "to_dot", "train_budget"]
