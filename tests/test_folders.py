"""The image folder (vggspec/folders.py): which files are a split's samples, and their labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from vggspec import folders
from vggspec.errors import SpecError

from .images import make_split, picture


def test_scan_lists_sorted_samples_with_labels(tmp_path):
    for rel in ["b/z.JPG", "b/a.png", "b/sub/m.jpeg", "a/x.jpg", "a/.hidden.jpg", "a/notes.txt"]:
        path = tmp_path / "train" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "train" / ".cache").mkdir()
    folder = folders.scan(tmp_path, "train")
    assert folder.classes == ("a", "b")
    assert folder.root == tmp_path / "train"
    rels = [(str(Path(p).relative_to(folder.root)), label) for p, label in folder.samples]
    assert rels == [("a/x.jpg", 0), ("b/a.png", 1), ("b/sub/m.jpeg", 1), ("b/z.JPG", 1)]
    assert folders.scan(tmp_path, "train") == folder  # deterministic


def test_scan_missing_directory_and_split(tmp_path):
    with pytest.raises(SpecError, match="does not exist") as err:
        folders.scan(tmp_path / "nowhere", "train")
    assert err.value.hint and "DIR/<split>/<class>" in err.value.hint
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(SpecError, match="no 'val' split") as err:
        folders.scan(tmp_path, "val")
    assert "'test', 'train'" in str(err.value)


def test_scan_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    picture(20, 20, 0).save(tmp_path / "train" / "loose.jpg")
    with pytest.raises(SpecError, match="1 image but no class folders") as err:
        folders.scan(tmp_path, "train")
    assert "folder of its own" in err.value.hint


def test_scan_empty_class_folder(tmp_path):
    make_split(tmp_path, "train", {"cat": [(20, 20)]})
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / "readme.txt").write_text("x")
    with pytest.raises(SpecError, match="dog holds no images") as err:
        folders.scan(tmp_path, "train")
    assert "readme.txt" in str(err.value) and ".jpg" in err.value.hint


def test_scan_val_classes_must_be_training_classes_and_keep_their_labels(tmp_path):
    make_split(tmp_path, "train", {"cat": [(20, 20)], "dog": [(20, 20)]})
    make_split(tmp_path, "val", {"cat": [(20, 20)], "cow": [(20, 20)]})
    train = folders.scan(tmp_path, "train")
    with pytest.raises(SpecError, match="has class folders the training split has not: 'cow'"):
        folders.scan(tmp_path, "val", classes=train.classes)
    assert folders.scan(tmp_path, "train", classes=["cat", "dog"]).classes == ("cat", "dog")
    # A test set without some classes: its labels are still the training classes' indices.
    make_split(tmp_path, "test", {"dog": [(20, 20), (30, 20)]})
    test = folders.scan(tmp_path, "test", classes=train.classes)
    assert test.classes == ("cat", "dog") and [label for _, label in test.samples] == [1, 1]
