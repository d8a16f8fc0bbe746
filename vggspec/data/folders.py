"""The image folder: which files of ``DIR/<split>/<class>/*`` are the samples, and their labels.

Its own module because training, the colour statistics, evaluation and prediction all list images
the same way and need nothing else of the pipeline: :func:`scan` lists a split into an
:class:`ImageFolder` (sorted, so the same files always get the same indices and labels), and
:func:`image_files` the images under any folder. Links are followed, but each real folder is
entered once and each real file listed once (a warning says what was skipped), so a link loop
costs nothing. Nothing here imports torch or decodes a pixel.
"""

from __future__ import annotations

import os
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import SpecError
from ..logs import log

__all__ = ["IMAGE_EXTENSIONS", "LAYOUT_HINT", "ImageFolder", "image_files", "note_shared", "scan", "shared_files"]

# The suffixes of the files every reader takes for images (training, validation, the colour statistics, a folder
# given to predict): the formats the decoder (vggspec.data.decoding, through PIL) reads. A GIF is its first frame.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff", ".gif")

LAYOUT_HINT = "the layout is DIR/<split>/<class>/<image>, e.g. DIR/train/dog/0001.jpg and DIR/val/dog/0042.jpg"


@dataclass(frozen=True)
class ImageFolder:
    """The images of one split: ``root`` = DIR/<split>, a class per sub-folder.

    ``classes`` are the sub-folders' names, sorted; ``samples`` are ``(path, class index)``
    sorted by class, then by path relative to the class folder (sub-folders included), so that
    the same files always give the same indices.
    """

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]
    # (st_dev, st_ino) of each sample's real file, (0, 0) if unknown: what :func:`shared_files` compares.
    # Two flat arrays, not a tuple per sample: ImageNet's 1.28 million pairs would cost ~140 MB of objects.
    files: tuple[array, array] = field(default_factory=lambda: (array("Q"), array("Q")), compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.samples)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _suffix(name: str) -> str:
    """A file's suffix as the scan compares it (lower case), or "no suffix"."""
    return os.path.splitext(name)[1].lower() or "no suffix"


class _Found(NamedTuple):
    """What one walk found: image files as sorted relative paths, each real file once, and what it skipped."""

    files: list[str]
    keys: list[tuple[int, int]]  # (st_dev, st_ino) of each file; (0, 0) when it cannot be stat'ed
    loops: int  # linked folders not followed again: a loop, or a second link to one folder
    duplicates: int  # files reached a second time (a link, a hard link)
    not_images: Counter[str]  # files left out for their suffix (not IMAGE_EXTENSIONS), by suffix; hidden ones uncounted


def _key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _walk(folder: Path) -> _Found:
    """Image files under ``folder``, following links, each real folder entered once and each real file kept once.

    ``os.walk(followlinks=True)`` re-enters a folder through every link to it, so a link to its own
    folder repeats the class ~40 times (until paths grow too long) and two such links take minutes;
    here a folder already visited (by its (st_dev, st_ino)) is cut, so the walk is linear in the folders.
    Of the files reached twice (links, hard links), the first in sorted order is kept.
    """
    try:
        visited = {_key(os.stat(folder))}
    except OSError:
        return _Found([], [], 0, 0, Counter())
    found: list[tuple[str, tuple[int, int]]] = []
    not_images: Counter[str] = Counter()
    loops = 0
    pending = [""]
    while pending:
        rel = pending.pop()
        here = os.path.join(folder, rel) if rel else str(folder)
        try:
            with os.scandir(here) as listing:
                entries = sorted(listing, key=lambda e: e.name)
            device = os.stat(here).st_dev
        except OSError:  # vanished or unreadable while walking: as os.walk, nothing from it
            continue
        subfolders = []
        for entry in entries:
            path = entry.name if not rel else os.path.join(rel, entry.name)
            try:
                is_dir = entry.is_dir()  # follows links; a broken link is a file (it is counted unreadable later)
            except OSError:
                is_dir = False
            if is_dir:
                if entry.name.startswith("."):
                    continue
                try:
                    key = _key(entry.stat())
                except OSError:
                    continue
                if key in visited:
                    loops += 1
                    continue
                visited.add(key)
                subfolders.append(path)
            elif _is_image(entry.name):
                if not entry.is_symlink():  # d_ino from the listing: no stat per file (hard links share it)
                    found.append((path, (device, entry.inode())))
                    continue
                try:
                    found.append((path, _key(entry.stat())))
                except OSError:
                    found.append((path, (0, 0)))
            elif not entry.name.startswith("."):
                not_images[_suffix(entry.name)] += 1
        pending.extend(reversed(subfolders))
    found.sort()
    files, keys, seen, duplicates = [], [], set(), 0
    for path, key in found:
        if key != (0, 0):
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
        files.append(path)
        keys.append(key)
    return _Found(files, keys, loops, duplicates, not_images)


def _skipped(where: object, loops: int, duplicates: int, not_images: Counter[str]) -> None:
    """Say in one line what a walk left out (nothing when it left nothing), and in another the files it
    did not take for images by their suffix."""
    if not_images:
        n = sum(not_images.values())
        common = sorted(not_images.items(), key=lambda item: (-item[1], item[0]))[:5]  # the most, then by name
        counts = ", ".join(f"{suffix} {count}" for suffix, count in common)
        more = f", ... ({len(not_images)} suffixes)" if len(not_images) > 5 else ""
        log.info(
            f"note: {where}: skipped {n} file{'s' if n != 1 else ''} whose suffix is not an image's ({counts}{more}); "
            f"images end in {', '.join(IMAGE_EXTENSIONS)}"
        )
    parts = []
    if loops:
        parts.append(f"{loops} linked folder{'s' if loops != 1 else ''} already visited (a link loop or a second link)")
    if duplicates:
        parts.append(f"{duplicates} file{'s' if duplicates != 1 else ''} reached a second time (a link or hard link)")
    if parts:
        log.warning(f"warning: {where}: skipped {' and '.join(parts)}; each real folder and file counts once")


def image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively, following links), as sorted relative paths, each real file once.

    Link loops are cut and duplicates skipped; a warning on the ``vggspec`` logger says how many, and a note
    how many files were not taken for images by their suffix.
    """
    found = _walk(Path(folder))
    _skipped(folder, found.loops, found.duplicates, found.not_images)
    return found.files


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{n}'" for n in list(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def is_wordnet_id(name: str) -> bool:
    """An ImageNet class folder's name: a WordNet noun ID such as n01440764."""
    return re.fullmatch(r"n\d{8}", name) is not None


def _named_by_wordnet_id(found: Sequence[str], classes: Sequence[str]) -> bool:
    """Folders named by WordNet ID for a network whose as many classes have names in ImageNet's order
    (torchvision's weights: "tench", "goldfish", ...): ImageNet numbers its classes in the IDs' sorted order.
    Names in sorted order are a folder's (a run trained on named folders): the IDs' order says nothing of theirs."""
    return (
        len(found) == len(classes)
        and all(map(is_wordnet_id, found))
        and not any(map(is_wordnet_id, classes))
        and list(classes) != sorted(classes)
    )


def scan(data_dir: str | Path, split: str, classes: Sequence[str] | None = None, *, say: bool = True) -> ImageFolder:
    """List the images of ``data_dir/split/<class>/*``.

    ``classes``: the training split's classes, when scanning the validation split or a test set:
    its class folders must be among them (a label is the index of its name in ``classes``), and
    may be fewer (a test set without some classes). Folders named by WordNet ID (ImageNet's
    n01440764, ...) for as many named ``classes`` are taken in sorted order, ImageNet's numbering.
    ``say``: whether to note that, and what the walk skipped (one process of several says it for its machine):
    linked folders and files reached again, and files that are not images by their suffix (:data:`IMAGE_EXTENSIONS`).
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise SpecError(f"the data directory {data_dir} does not exist", hint=LAYOUT_HINT)
    if not data_dir.is_dir():
        raise SpecError(f"the data directory {data_dir} is not a directory", hint=LAYOUT_HINT)
    root = data_dir / split
    if not root.is_dir():
        splits = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        holds = f"it holds {_listing(splits)}" if splits else "it holds no folders"
        raise SpecError(
            f"{data_dir} has no '{split}' split ({root} is not a directory; {holds})",
            hint=LAYOUT_HINT + (f"; or choose one of {_listing(splits)} as the split" if splits else ""),
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        images_here = [p.name for p in root.iterdir() if p.is_file() and _is_image(p.name)]
        n = len(images_here)
        what = f"{n} image{'s' if n != 1 else ''} but no class folders" if n else "no class folders"
        raise SpecError(
            f"{root} holds {what}",
            hint="put each class's images in a folder of its own: " + LAYOUT_HINT,
        )
    if classes is not None and set(found) - set(classes) and _named_by_wordnet_id(found, classes):
        if say:
            log.info(
                f"note: {root}'s {len(found)} class folders are WordNet IDs ({found[0]}, ...) and the network's "
                f"classes names ({classes[0]}, ...): folder i in sorted order is taken as class i, ImageNet's numbering"
            )
        classes = None
    if classes is not None and (extra := sorted(set(found) - set(classes))):
        raise SpecError(
            f"{root} has class folders the training split has not: {_listing(extra)} "
            f"({len(found)} here, {len(classes)} in training)",
            hint="a label means a training class: name the folders as the training split does",
        )
    labels = {name: i for i, name in enumerate(classes if classes is not None else found)}
    samples: list[tuple[str, int]] = []
    devices, inodes = array("Q"), array("Q")
    loops = duplicates = 0
    not_images: Counter[str] = Counter()
    for name in found:
        walked = _walk(root / name)
        files, loops, duplicates = walked.files, loops + walked.loops, duplicates + walked.duplicates
        not_images += walked.not_images
        if not files:
            others = sorted(p.name for p in (root / name).iterdir() if not p.name.startswith("."))
            holds = f"it holds {_listing(others)}" if others else "it is empty"
            raise SpecError(
                f"the class folder {root / name} holds no images ({holds})",
                hint=f"image files end in {', '.join(IMAGE_EXTENSIONS)}; add images or remove the folder",
            )
        samples.extend((str(root / name / f), labels[name]) for f in files)
        devices.extend(device for device, _ in walked.keys)
        inodes.extend(inode for _, inode in walked.keys)
    if say:
        _skipped(root, loops, duplicates, not_images)
        _note_in_several_classes(root, samples, devices, inodes, tuple(labels))
    return ImageFolder(root=root, classes=tuple(labels), samples=tuple(samples), files=(devices, inodes))


def _note_in_several_classes(
    root: Path, samples: Sequence[tuple[str, int]], devices: array, inodes: array, classes: Sequence[str]
) -> None:
    """Warn, in one line, of files that are in two classes or more of one split (the same real file, through
    a link or a hard link): each is a sample of every class it is in, and teaches the network both labels."""
    labels_of: dict[tuple[int, int], set[int]] = defaultdict(set)
    for (_, label), key in zip(samples, zip(devices, inodes)):
        if key != (0, 0):
            labels_of[key].add(label)
    doubled = {key for key, labels in labels_of.items() if len(labels) > 1}
    if not doubled:
        return
    first_path, first_key = next((path, key) for (path, _), key in zip(samples, zip(devices, inodes)) if key in doubled)
    where = " and ".join(f"'{classes[label]}'" for label in sorted(labels_of[first_key]))
    n = len(doubled)
    log.warning(
        f"warning: {n} file{'s' if n != 1 else ''} of {root} {'are' if n != 1 else 'is'} in more than one class (the "
        f"same file), e.g. {first_path} is in {where}; each is a sample of every class it is in: keep each image in "
        "one class"
    )


def shared_files(first: ImageFolder, second: ImageFolder) -> list[str]:
    """The samples of ``second`` whose real file (st_dev, st_ino) is also a sample of ``first``: a
    training image in the validation split, say. Sorted, as ``second`` lists them."""
    first_devices, first_inodes = first.files
    second_devices, second_inodes = second.files
    wanted = {key for key in zip(second_devices, second_inodes) if key != (0, 0)}
    common = {key for key in zip(first_devices, first_inodes) if key in wanted}
    return [path for (path, _), key in zip(second.samples, zip(second_devices, second_inodes)) if key in common]


def note_shared(train: ImageFolder, val: ImageFolder) -> list[str]:
    """Warn, in one line, of validation images that are training images too (the same real file); returns them.

    They stay in validation: the folders say they are validation images, and dropping them would
    change the validation set behind the user's back; the warning says the error is then optimistic.
    """
    shared = shared_files(train, val)
    if shared:
        n = len(shared)
        log.warning(
            f"warning: {n} of {len(val)} validation images {'are' if n != 1 else 'is'} also in the training split "
            f"{train.root} (the same file), e.g. {shared[0]}; counted in validation as the folders say, so the "
            "validation error is optimistic: keep each image in one split"
        )
    return shared
