"""Where a network's weights are on disk: a checkpoint file, or a training run's folder.

    RUN/last.pt   the latest checkpoint of a run (every epoch, every --checkpoint-every steps)
    RUN/best.pt   another name for the best epoch's last.pt

A path that names a run folder means its best checkpoint (its last before there is a best).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

LAST, BEST = "last.pt", "best.pt"


def checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or for a run folder its best checkpoint (its last before there is a best)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (BEST, LAST):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path} is a folder without a checkpoint in it ({BEST} or {LAST})",
        hint="give a checkpoint file, or the --out folder of a 'vggspec train' run that finished an epoch",
    )
