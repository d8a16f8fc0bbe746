"""The image folder (vggspec/folders.py): which files are a split's samples, and their labels."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from vggspec.data import folders
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


def _class_with_links(folder: Path) -> None:
    """Two images and a sub-folder's one, a link to its own folder, and a two-link loop between x and y."""
    (folder / "x").mkdir(parents=True)
    (folder / "y").mkdir()
    for rel in ["a.png", "b.png", "x/c.png"]:
        (folder / rel).write_bytes(b"")
    (folder / "self").symlink_to(".")
    (folder / "x" / "to_y").symlink_to("../y")
    (folder / "y" / "to_x").symlink_to("../x")


def test_link_loops_are_cut_and_said_in_one_line(tmp_path, capsys):
    for name in ["cat", "dog"]:
        _class_with_links(tmp_path / "train" / name)
    start = time.perf_counter()
    capsys.readouterr()
    folder = folders.scan(tmp_path, "train")
    said = capsys.readouterr().err.splitlines()
    assert time.perf_counter() - start < 0.5  # os.walk(followlinks=True) took minutes over two loops
    rels = [(str(Path(p).relative_to(folder.root)), label) for p, label in folder.samples]
    assert rels == [("cat/a.png", 0), ("cat/b.png", 0), ("cat/x/c.png", 0)] + [
        ("dog/a.png", 1), ("dog/b.png", 1), ("dog/x/c.png", 1)
    ]  # fmt: skip
    assert len(said) == 1 and "skipped 6 linked folders already visited" in said[0], said
    assert folders.scan(tmp_path, "train") == folder  # deterministic
    assert folders.image_files(tmp_path / "train" / "cat") == ["a.png", "b.png", "x/c.png"]


def test_a_folder_linked_twice_is_listed_once(tmp_path, capsys):
    make_split(tmp_path, "train", {"cat": [(20, 20), (20, 30)]})
    elsewhere = tmp_path / "more"
    elsewhere.mkdir()
    picture(20, 20, 1).save(elsewhere / "m.jpg")
    (tmp_path / "train" / "cat" / "l1").symlink_to(elsewhere)
    (tmp_path / "train" / "cat" / "l2").symlink_to(elsewhere)
    capsys.readouterr()
    files = folders.image_files(tmp_path / "train" / "cat")
    said = capsys.readouterr().err.splitlines()
    assert len(files) == 3 and files[-1] == "l1/m.jpg"  # the first link, in sorted order
    assert len(said) == 1 and "skipped 1 linked folder already visited" in said[0], said


def test_a_file_reached_twice_counts_once(tmp_path, capsys):
    make_split(tmp_path, "train", {"cat": [(20, 20), (20, 30)], "dog": [(20, 20)]})
    cat = tmp_path / "train" / "cat"
    first = sorted(cat.iterdir())[0]
    os.link(first, cat / "zz_hard.jpg")
    (cat / "zz_soft.jpg").symlink_to(first.name)
    (cat / "zz_broken.jpg").symlink_to("nowhere.jpg")  # kept: counted unreadable when it is read
    capsys.readouterr()
    folder = folders.scan(tmp_path, "train")
    said = capsys.readouterr().err.splitlines()
    names = [Path(p).name for p, _ in folder.samples]
    dog = next((tmp_path / "train" / "dog").iterdir()).name
    assert names == [first.name, sorted(cat.iterdir())[1].name, "zz_broken.jpg", dog]  # the hard link: one file
    assert len(said) == 1 and "skipped 2 files reached a second time" in said[0], said


def test_the_same_file_in_two_classes_is_said_once_and_kept_in_both(tmp_path, capsys):
    """A hard link and a symbolic link from 'cat' into 'dog' and 'owl': each file is a sample of every class it is
    in (the folders say so), and one line says how many and where."""
    make_split(tmp_path, "train", {"cat": [(20, 20), (20, 30)], "dog": [(20, 20)], "owl": [(20, 20)]})
    first, second = sorted((tmp_path / "train" / "cat").iterdir())
    os.link(first, tmp_path / "train" / "dog" / "zz_cat.jpg")
    (tmp_path / "train" / "owl" / "zz_cat.jpg").symlink_to(first)
    (tmp_path / "train" / "owl" / "zz_cat2.jpg").symlink_to(second)
    shutil.copy(second, tmp_path / "train" / "dog" / "zz_copy.jpg")  # other bytes on disk: another file
    capsys.readouterr()
    train = folders.scan(tmp_path, "train")
    assert len(train) == 8
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: 2 files of {train.root} are in more than one class (the same file), e.g. ")
    assert f"e.g. {first} is in 'cat' and 'dog' and 'owl'" in line, line
    folders.scan(tmp_path, "train", say=False)
    assert capsys.readouterr().err == ""
    shutil.rmtree(tmp_path / "train" / "owl")
    (tmp_path / "train" / "dog" / "zz_cat.jpg").unlink()
    folders.scan(tmp_path, "train")
    assert capsys.readouterr().err == ""


def test_the_same_file_in_training_and_validation_is_said_and_kept(tmp_path, capsys):
    make_split(tmp_path, "train", {"cat": [(20, 20), (20, 30)], "dog": [(20, 20)]})
    make_split(tmp_path, "val", {"cat": [(20, 20)], "dog": [(20, 20)]})
    for name, how in [("cat", "link"), ("dog", "symlink")]:
        source = sorted((tmp_path / "train" / name).iterdir())[0]
        target = tmp_path / "val" / name / "zz_from_train.jpg"
        os.link(source, target) if how == "link" else target.symlink_to(source)
    shutil.copy(source, tmp_path / "val" / "dog" / "zz_a_copy.jpg")  # other bytes on disk: not the same file
    train = folders.scan(tmp_path, "train")
    val = folders.scan(tmp_path, "val", classes=train.classes)
    assert len(val) == 5  # counted in validation, as the folders say
    capsys.readouterr()
    shared = folders.note_shared(train, val)
    said = capsys.readouterr().err.splitlines()
    assert shared == [str(tmp_path / "val" / n / "zz_from_train.jpg") for n in ("cat", "dog")]
    [line] = said
    assert f"2 of 5 validation images are also in the training split {train.root}" in line
    assert f"e.g. {shared[0]}" in line and "counted in validation" in line and "optimistic" in line
    assert folders.note_shared(train, folders.scan(tmp_path, "train")) == [p for p, _ in train.samples]


def test_files_that_are_not_images_by_their_suffix_are_counted_in_one_note(tmp_path, capsys):
    """Every reader takes the same suffixes (a GIF too: its first frame); the others are counted, by suffix, in
    one note for the split (hidden files, such as .DS_Store, are not)."""
    make_split(tmp_path, "train", {"cat": [(20, 20)], "dog": [(20, 20)]})
    cat, dog = tmp_path / "train" / "cat", tmp_path / "train" / "dog"
    picture(20, 20, 1).save(cat / "moving.gif")
    for path in (cat / "phone.heic", dog / "phone.HEIC", dog / "notes.txt", cat / "README", cat / ".DS_Store"):
        path.write_bytes(b"")
    capsys.readouterr()
    folder = folders.scan(tmp_path, "train")
    said = capsys.readouterr().err.splitlines()
    assert [Path(p).name for p, _ in folder.samples] == ["img00.jpg", "moving.gif", "img00.jpg"]
    extensions = ", ".join(folders.IMAGE_EXTENSIONS)
    assert said == [
        f"note: {tmp_path / 'train'}: skipped 4 files whose suffix is not an image's (.heic 2, .txt 1, no suffix 1); "
        f"images end in {extensions}"
    ]
    assert ".gif" in extensions
    assert folders.image_files(dog) == ["img00.jpg"]
    assert capsys.readouterr().err.splitlines() == [
        f"note: {dog}: skipped 2 files whose suffix is not an image's (.heic 1, .txt 1); images end in {extensions}"
    ]
    folders.scan(tmp_path, "train", say=False)
    assert capsys.readouterr().err == ""
