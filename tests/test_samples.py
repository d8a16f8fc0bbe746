"""vggspec.samples: generated shape folders in the layout the trainer reads, the same for a seed."""

import subprocess
import sys

import pytest

pytest.importorskip("PIL", reason="needs the torch extra: pip install -e '.[torch]'")

from vggspec.data import samples  # noqa: E402

from .conftest import ROOT  # noqa: E402


def test_a_folder_has_a_class_per_shape_and_the_images_asked_for(tmp_path):
    root = samples.image_folder(tmp_path / "shapes", classes=4, train=3, val=2, size=16, suffix=".jpg")
    assert root == tmp_path / "shapes"
    for split, count in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(samples.SHAPES)
        assert all(len(list((root / split / shape).glob("*.jpg"))) == count for shape in samples.SHAPES)


def test_the_same_seed_draws_the_same_images(tmp_path):
    a, b, c = (samples.image_folder(tmp_path / name, train=2, val=1, seed=seed) for name, seed in zip("abc", (0, 0, 1)))
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 9
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_requests_it_cannot_draw_are_refused():
    with pytest.raises(ValueError, match="1 to 4 shapes"):
        samples.image_folder("unused", classes=5)
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        samples.shape_image("star", 16, None)
    with pytest.raises(ValueError, match="too small"):
        samples.shape_image("cross", 4, None)


def test_samples_need_no_torch_and_import_vggspec_does_not_import_them():
    code = "import sys, vggspec; before = 'vggspec.data.samples' in sys.modules; import vggspec.data.samples\n"
    code += "print(before, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
