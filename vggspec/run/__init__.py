"""Running: training and evaluation, on one process or many, on one machine or several.

    config.py       ``TrainConfig`` and ``EvaluateConfig``: every setting, a flag each
    train.py        the trainer: the epoch loop first, its setup in small named objects
    evaluate.py     Section 3.2's evaluation: dense, multi-crop, scales, fusion; predict
    distributed.py  the processes and machines of one run, and what they tell each other
    runs.py         a run folder's files by name
    runlog.py       progress, metrics, events, TensorBoard and curves of a run
    metrics.py      top-1 and top-5 error

Importing this package imports no torch.
"""

import importlib

_API = {"TrainConfig": "config", "EvaluateConfig": "config"}  # train() and evaluate(): run.train, run.evaluate


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'vggspec.run' has no attribute '{name}'")


__all__ = sorted(_API)
