"""The preprocessing record, without torch: how checkpoints of every age read, and how a record fits a network
made from its weights."""

import json

import pytest

from vggspec.data.preprocessing import Preprocessing

IMAGENET = Preprocessing(scale=1, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], classes=["a", "b"])


def test_checkpoints_of_every_age():
    paper = Preprocessing.paper([120.0, 110.0, 100.0], ["x", "y"])
    assert (paper.scale, paper.std, paper.channel_order, paper.is_paper) == (255, [1.0] * 3, "RGB", True)
    older = {"colour_stats": json.dumps({"mean": [120.0, 110.0, 100.0]}), "classes": ["x", "y"]}
    assert Preprocessing.from_checkpoint(older) == paper  # before the record: the paper's, from colour_stats
    assert Preprocessing.from_checkpoint({**older, "preprocessing": IMAGENET.model_dump_json()}) == IMAGENET
    assert Preprocessing.from_checkpoint({"spec": "..."}) is None  # compiled, never trained: not known
    assert not IMAGENET.is_paper


def test_a_record_fits_the_network_made_from_its_weights():
    assert IMAGENET.fitted(3, 2) == IMAGENET
    gray = IMAGENET.fitted(1, 2)
    assert gray.channel_order == "L" and gray.mean == [pytest.approx(0.449)] and gray.std == [pytest.approx(0.226)]
    four = IMAGENET.fitted(4, 5)
    assert four.mean == [0.485, 0.456, 0.406, 0.485] and four.classes == [] and four.channel_order == "4 channels"


def test_records_are_checked_and_described():
    with pytest.raises(ValueError, match="one mean and one positive std per channel"):
        Preprocessing(scale=1, mean=[0.5, 0.5], std=[0.2])
    with pytest.raises(ValueError):
        Preprocessing(scale=100, mean=[0.5], std=[1.0])
    assert IMAGENET.describe().startswith("RGB pixels, (pixel / 255 - mean) / std with mean (0.485, 0.456, 0.406)")
    assert json.loads(IMAGENET.metadata()["preprocessing_std"]) == IMAGENET.std


def test_the_normalisation_is_one_formula_on_the_pixel_scale_and_needs_no_torch():
    """Every record comes down to ``(pixel - pixel_mean) · pixel_factor`` on the 0-255 scale, applied by
    ``normalised``, which works on anything with arithmetic (here plain floats) and imports no torch."""
    import subprocess
    import sys

    from vggspec.data.preprocessing import normalised

    pixel = 200.0
    for channel in range(3):
        by_record = (pixel * IMAGENET.scale / 255 - IMAGENET.mean[channel]) / IMAGENET.std[channel]
        by_formula = normalised(pixel, IMAGENET.pixel_mean[channel], IMAGENET.pixel_factor[channel])
        assert by_formula == pytest.approx(by_record, rel=1e-12)
    paper = Preprocessing.paper([120.0, 110.0, 100.0])
    assert paper.pixel_factor == [1.0] * 3 and normalised(pixel, paper.pixel_mean[0], 1.0) == 80.0
    code = "import sys, vggspec.data.preprocessing; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
