"""The classes a run trains for: its spec's classifier, or ``--num-classes`` (auto: as many as the training split
has class folders; a resumed run's own, as its checkpoint holds it), and the check that the training split has
that many. Torch is imported only to read a resumed run's checkpoint: ``study --dry-run`` checks its cells here,
as their runs will check them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data import folders
from ..errors import SpecError
from ..logs import log
from ..spec.spec import Spec
from . import runs
from .config import TrainConfig


def with_classes(config: TrainConfig, spec: Spec) -> Spec:
    """The network the run trains: ``spec`` classifying into ``--num-classes``' classes (auto: as many as the
    training split has class folders; a resumed run's own, as its checkpoint holds it), the classifier's line of its
    text saying so, for RUN/spec.vgg."""
    asked = config.num_classes
    if asked is None:
        return spec
    if asked != "auto":
        classes, how = asked, f"--num-classes {asked}"
    else:
        classes = _run_classes(config) if config.resume else len(_training_classes(config))
        how = f"--num-classes auto: {classes} class{'es' if classes != 1 else ''}"
    written = spec.classifier.word() if spec.classifier is not None else None
    changed = spec.with_classes(classes, note=f"trained with {how} (the spec says {written})")
    if changed is not spec and not config.resume and os.environ.get("RANK", "0") == "0":
        log.info(f"note: {spec.display_name}'s {written} becomes {changed.classifier.word()} ({how})")
    return changed


def check_classes(config: TrainConfig, spec: Spec, train: folders.ImageFolder) -> None:
    """``spec`` (as :func:`with_classes` made it) ends in as many classes as ``train`` has class folders: else a
    SpecError that points at its classifier and says what to do."""
    classifier, found = spec.classifier, len(train.classes)
    if classifier.features == found:
        return
    network = (
        f"{config.spec} ends in {classifier.word()}"
        if config.num_classes is None
        else f"--num-classes {config.num_classes} makes the network end in {classifier.word()}"
    )
    raise SpecError(
        f"{network} ({classifier.features} classes) but {train.root} has {found} class folders",
        line=classifier.line,
        column=classifier.column,
        filename=config.spec,
        text=spec.text,
        hint=_class_hint(config, found, classifier.features),
    )


def _class_hint(config: TrainConfig, found: int, classes: int) -> str:
    """What to do about a network of ``classes`` classes for data of ``found``."""
    if config.num_classes is None:
        return (
            f"change the last FC layer to FC-{found} or give --num-classes {found} (or auto), or train on the data "
            "it was written for"
        )
    if config.resume:  # its classes are the run's
        return "resume with the data the run was started on (--data), or start a new run"
    return f"give --num-classes {found} (or auto), or train on data of {classes} classes"


def _training_classes(config: TrainConfig) -> tuple[str, ...]:
    """The class folders of the training split, which every process scans again: checked as they will be."""
    return folders.scan(config.data, config.train_split, say=False).classes


def _run_classes(config: TrainConfig) -> int:
    """The classes a resumed run trains for: its network's, as its last checkpoint holds it."""
    from ..nn.checkpoint import checkpoint_spec, read_checkpoint  # torch: only a resumed run's file is read

    path = Path(config.out) / runs.LAST
    return checkpoint_spec(read_checkpoint(path, mmap=True), path).classifier.features
