"""Mean RGB and colour PCA of the training images (vggspec/colour.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vggspec.data import folders
from vggspec.data.colour import ColourStats, colour_stats


def test_colour_stats_of_two_flat_colours(tmp_path):
    a, b = np.array([200, 60, 40]), np.array([40, 60, 200])
    for name, colour in (("red", a), ("blue", b)):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (90, 60), tuple(int(c) for c in colour)).save(tmp_path / "train" / name / f"{i}.png")
    folder = folders.scan(tmp_path, "train")
    stats = colour_stats(folder, 3)
    assert stats.images == 6 and stats.pixels == 6 * 64 * 43
    assert stats.mean == pytest.approx((a + b) / 2)
    d = (a - b) / np.linalg.norm(a - b)
    top = np.array(stats.eigenvectors)[:, 0]
    assert abs(top @ d) == pytest.approx(1.0)
    assert stats.eigenvalues[0] == pytest.approx(np.linalg.norm(a - b) ** 2 / 4)
    assert stats.eigenvalues[1] == pytest.approx(0, abs=1e-6) and stats.eigenvalues[2] == pytest.approx(0, abs=1e-6)
    vectors = np.array(stats.eigenvectors)
    assert vectors.T @ vectors == pytest.approx(np.eye(3), abs=1e-9)
    assert ColourStats.model_validate_json(stats.model_dump_json()) == stats
    # Half the pixels at a, half at b: each channel's std is half their difference (--normalise std divides by it).
    assert stats.std == pytest.approx(np.abs(a - b) / 2, abs=1e-6)
    gray = colour_stats(folder, 1)
    la, lb = (np.array([299, 587, 114]) @ c / 1000 for c in (a, b))
    assert gray.mean[0] == pytest.approx((la + lb) / 2, abs=1)
    assert gray.eigenvalues[0] == pytest.approx(((la - lb) / 2) ** 2, rel=0.05)
    assert gray.eigenvectors == [[1.0]] and gray.std == [pytest.approx(gray.eigenvalues[0] ** 0.5)]


def test_colour_stats_see_the_levels_of_sixteen_bit_images_and_transparency_as_white(tmp_path):
    """A 16-bit gradient over 0-65535 has its 8-bit levels' mean, 127.5 (clipped, it was about 254); pixels
    transparent over black count as the white a viewer shows."""
    levels = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256).astype(np.uint16)
    (tmp_path / "train" / "gradient").mkdir(parents=True)
    Image.fromarray(levels).save(tmp_path / "train" / "gradient" / "g.png")
    folder = folders.scan(tmp_path, "train")
    assert colour_stats(folder, 3).mean == pytest.approx([127.5] * 3, abs=1)
    assert colour_stats(folder, 1).mean == pytest.approx([127.5], abs=1)
    (tmp_path / "train" / "clear").mkdir()
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(tmp_path / "train" / "clear" / "c.png")
    both = colour_stats(folders.scan(tmp_path, "train"), 3)
    assert both.mean == pytest.approx([(127.5 + 255) / 2] * 3, abs=1)


def test_colour_stats_sample_is_deterministic(folder):
    one = colour_stats(folder, 3, max_images=5, seed=1)
    assert one.images == 5
    assert colour_stats(folder, 3, max_images=5, seed=1) == one
    assert colour_stats(folder, 3, max_images=5, seed=2) != one
    assert colour_stats(folder, 3, max_images=5, seed=1, workers=2) == one
