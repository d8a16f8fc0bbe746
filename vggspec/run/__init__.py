"""Running: training and evaluation, on one process or many, on one machine or several.

    config.py          ``TrainConfig`` and ``EvaluateConfig``: every setting, a flag each
    flags.py           how a setting shows on the command line
    rendezvous.py      the machines of one run: --nnodes, --rdzv-endpoint, --rdzv-timeout (no torch)
    launch.py          what train and evaluate check before their processes start, and the start
    train.py           the trainer: train(), each process's run_worker(), then the epoch loop
    startup.py         a run's settings, spec and S, read once and checked before any process starts
    training_data.py   the trainer's folders, batch, colour statistics, datasets and share of each step
    training_model.py  the network it trains: built, preprocessing, frozen layers, DDP; init advice
    optimizer.py       SGD, the plateau schedule, the AMP scaler, and ``TrainingState``
    checkpointing.py   saving, resuming, and what a stopped run leaves
    faults.py          failures at known steps, for the tests of restarts (VGGSPEC_TEST_FAULT_AT)
    evaluate.py        Section 3.2's evaluation: dense, multi-crop, scales, fusion; predict
    distributed.py     the processes and machines of one run, and what they tell each other
    runs.py            a run folder's files by name
    runlog.py          progress, metrics, events, TensorBoard and curves of a run
    metrics.py         top-1 and top-5 error

Importing this package imports no torch.
"""

import importlib

_API = {"TrainConfig": "config", "EvaluateConfig": "config"}  # train() and evaluate(): run.train, run.evaluate


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'vggspec.run' has no attribute '{name}'")


__all__ = sorted(_API)
