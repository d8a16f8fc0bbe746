"""vggspec.samples: generated shape folders in the layout the trainer reads, the same for a seed."""

import subprocess
import sys

import pytest

pytest.importorskip("PIL", reason="needs the torch extra: pip install -e '.[torch]'")

from vggspec.cli import main  # noqa: E402
from vggspec.data import samples  # noqa: E402

from .conftest import ROOT  # noqa: E402


def test_a_folder_has_a_class_per_shape_and_the_images_asked_for(tmp_path):
    root = samples.image_folder(tmp_path / "shapes", classes=4, train=3, val=2, size=16, suffix=".jpg")
    assert root == tmp_path / "shapes"
    for split, count in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(samples.SHAPES[:4])
        assert all(len(list((root / split / shape).glob("*.jpg"))) == count for shape in samples.SHAPES[:4])


def test_the_same_seed_draws_the_same_images(tmp_path):
    a, b, c = (samples.image_folder(tmp_path / name, train=2, val=1, seed=seed) for name, seed in zip("abc", (0, 0, 1)))
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 3 * samples.DEFAULT_CLASSES
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_requests_it_cannot_draw_are_refused():
    with pytest.raises(ValueError, match="1 to 10 shapes"):
        samples.image_folder("unused", classes=11)
    with pytest.raises(ValueError, match="at least 1 of each"):
        samples.sample_files(val=0)
    with pytest.raises(ValueError, match="unknown image suffix '.xyz'"):
        samples.sample_files(suffix=".xyz")
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        samples.shape_image("star", 16, None)
    with pytest.raises(ValueError, match="too small"):
        samples.shape_image("cross", 4, None)


def test_samples_need_no_torch_and_import_vggspec_does_not_import_them():
    code = "import sys, vggspec; before = 'vggspec.data.samples' in sys.modules; import vggspec.data.samples\n"
    code += "print(before, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_ten_shapes_differ_where_everything_else_is_the_same():
    """Drawn from the same random numbers (colour, background, extent, place), any two shapes differ in at least
    a tenth of the pixels of their box, at the smallest extent a 32-pixel image gets: what a network tells apart."""
    import numpy as np

    masks = {}
    for shape in samples.SHAPES:
        rng = _SmallestExtent(np.random.default_rng(7))
        pixels = np.asarray(samples.shape_image(shape, 32, rng)).astype(int)
        masks[shape] = (pixels != pixels[0, 0]).any(axis=2)  # the corner is background: the extent leaves it
    box = 16 * 16
    for i, a in enumerate(samples.SHAPES):
        assert masks[a].sum() >= box // 8, a  # something is drawn
        for b in samples.SHAPES[i + 1 :]:
            assert (masks[a] != masks[b]).sum() >= box // 10, (a, b)


class _SmallestExtent:
    """A generator whose draw of a shape's extent gives the smallest (half the side), and the place at the middle:
    the hardest case, every other draw as the real one."""

    def __init__(self, rng) -> None:
        self.rng, self.draws = rng, 0

    def integers(self, low, high, size=None):
        self.draws += 1
        if self.draws == 3:  # background, colour, extent, place
            return low
        if self.draws == 4:
            return [(high - 1) // 2] * size
        return self.rng.integers(low, high, size)


# -- vggspec samples DIR -------------------------------------------------------------------------------------


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_command_writes_the_layout_with_the_counts_and_says_what_is_next(tmp_path, capsys):
    root = tmp_path / "shapes"
    assert main(["samples", str(root), "--classes", "3", "--train", "4", "--val", "2", "--size", "16"]) == 0
    out = capsys.readouterr().out
    for split, count in (("train", 4), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(samples.SHAPES[:3])
        assert all(len(list((root / split / shape).glob("*.png"))) == count for shape in samples.SHAPES[:3])
    assert len(_files(root)) == 18
    lines = out.splitlines()
    assert lines[0] == f"wrote 18 images of 16×16 pixels to {root}: 3 classes × (4 in {root / 'train'} + 2 in " + (
        f"{root / 'val'}), seed 0"
    )
    assert lines[1] == "classes: ellipse, rectangle, triangle"
    assert lines[2] == f"next: vggspec train small/A-narrow-32 --data {root} --num-classes auto --out {root}-run"


def test_the_command_draws_the_same_bytes_for_the_same_settings(tmp_path, capsys):
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    for root, seed in ((one, "0"), (two, "0"), (other, "1")):
        assert main(["samples", str(root), "--classes", "10", "--train", "2", "--val", "1", "--seed", seed]) == 0
    assert _files(one) == _files(two) == _files(samples.image_folder(tmp_path / "api", classes=10, train=2, val=1))
    assert len(_files(one)) == 30 and _files(one) != _files(other)
    images = list(_files(one).values())  # ten classes, every image its own
    assert len(set(images)) == len(images)


@pytest.mark.parametrize("classes", ["0", "11"])
def test_a_class_count_it_cannot_draw_is_one_line_and_exit_2(tmp_path, capsys, classes):
    assert main(["samples", str(tmp_path / "shapes"), "--classes", classes]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --classes, --train, --val, --size: {classes} classes: there are 1 to 10 shapes to draw " + (
        f"({', '.join(samples.SHAPES)})\n"
    )
    assert not (tmp_path / "shapes").exists()


def test_a_folder_that_is_not_empty_is_refused_unless_it_holds_these_samples_or_force(tmp_path, capsys):
    root = tmp_path / "shapes"
    args = ["samples", str(root), "--classes", "4", "--train", "3", "--val", "1", "--size", "16"]
    assert main(args) == 0
    written = _files(root)
    capsys.readouterr()

    assert main(args) == 0  # these very samples: the tutorial's first step runs again
    assert capsys.readouterr().out.startswith(f"{root} holds these samples already: nothing written\n")

    assert main([*args, "--seed", "1"]) == 2  # other samples: refused, nothing touched
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{root} is not empty (train, val) and holds no samples of these settings" in err
    assert "--force" in err and _files(root) == written

    (root / "notes.txt").write_text("mine")
    assert main([*args[:3], "2", *args[4:], "--force"]) == 0  # 2 classes where there were 4: none of the 4 left
    assert sorted(p.name for p in (root / "train").iterdir()) == ["ellipse", "rectangle"]
    assert (root / "notes.txt").read_text() == "mine"  # --force deletes DIR/train and DIR/val, nothing else

    (tmp_path / "file").write_text("")
    assert main(["samples", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'file'} is a file, where samples writes a folder\n"


def test_train_reads_what_the_command_writes(tmp_path, capsys):
    pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")
    import json

    data, run = tmp_path / "shapes", tmp_path / "run"
    assert main(["samples", str(data), "--classes", "3", "--train", "8", "--val", "2"]) == 0
    tutorial = ["train", "small/A-narrow-32", "--data", str(data), "--num-classes", "auto", "--out", str(run)]
    short = ["--epochs", "1", "--batch-size", "8", "--workers", "0", "--stats-images", "8", "--no-progress"]
    assert main([*tutorial, *short]) == 0
    err = capsys.readouterr().err
    assert "A narrow 32: 24 training images in 3 classes, 6 validation images" in err
    assert "FC-10 becomes FC-3 (--num-classes auto: 3 classes)" in err
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1
