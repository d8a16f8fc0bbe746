"""A training run's folder: what ``vggspec train --out RUN`` writes there, and how a path that
names a run or a checkpoint is resolved.

    RUN/last.pt            the latest checkpoint (every epoch, every --checkpoint-every steps)
    RUN/best.pt            another name for the best epoch's last.pt
    RUN/spec.vgg           the spec the run was started with, comments kept (--resume reads it)
    RUN/config.json        the resolved training configuration
    RUN/colour_stats.json  mean RGB and colour PCA of the training images
    RUN/metrics.jsonl      one line per epoch
    RUN/events.log         resumes and restarts: when, what stopped the run, where it went on
    RUN/curves.png         loss, errors and learning rate against epochs
    RUN/tensorboard/       TensorBoard event files

Torch-free: the command line reads a run's data folder without importing torch.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..nn.weights_file import BEST, LAST, checkpoint_path  # noqa: F401  (the run folder's checkpoints)

SPEC, CONFIG = "spec.vgg", "config.json"
COLOUR_STATS, METRICS, CURVES, TENSORBOARD = "colour_stats.json", "metrics.jsonl", "curves.png", "tensorboard"
EVENTS = "events.log"  # appended to, a line at a time, as metrics.jsonl is between its rewrites
RUN_FILES = (LAST, BEST, SPEC, CONFIG, COLOUR_STATS, METRICS, CURVES)
"""The files of a run folder that are written whole (:mod:`vggspec.files`): their temporaries are ``.NAME.*.tmp``."""


def new_run_folder(spec_file: str | Path) -> Path:
    """Where a run goes when ``--out`` is not given: ``runs/<spec>-<date>-<time>``."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(spec_file).stem}-{stamp}"


def started_data(run: str | Path) -> str | None:
    """The data folder a run was started on (its ``config.json``), or None when there is no run."""
    try:
        return json.loads((Path(run) / CONFIG).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
