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
