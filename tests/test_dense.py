"""Dense evaluation (Section 3.2): the converted network, its score map, and the analyzer's view."""

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.nn.dense import class_scores, posteriors, to_dense  # noqa: E402
from vggspec.nn.verify import verify  # noqa: E402

from . import images  # noqa: E402
from .conftest import SPECS  # noqa: E402


@pytest.fixture(scope="module")
def narrow_d():
    return vggspec.build(vggspec.load(SPECS / "small" / "D-narrow-32-bn.vgg"), init="kaiming", seed=0).eval()


def test_dense_equals_the_classifier_at_the_training_size(narrow_d):
    dense = to_dense(narrow_d)
    x = images.batch(32, count=4)
    with torch.inference_mode():
        expected = narrow_d(x)
        score_map = dense(x)
    assert score_map.shape == (4, 10, 1, 1)
    torch.testing.assert_close(score_map.flatten(1), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(dense.classifier.fc6.fc, torch.nn.Conv2d)
    assert dense.classifier.fc6.fc.kernel_size == (1, 1)  # 32 / 2^5 = 1: the map reaching fc6


def test_first_fc_becomes_a_conv_with_the_map_size_at_that_point():
    spec = vggspec.parse("input: 28x28 gray\nconv3-4\nmaxpool\nconv3-8\nmaxpool\nFC-16\nFC-12\nFC-3")
    model = vggspec.build(spec, init="kaiming", seed=1).eval()
    dense = to_dense(model)
    assert dense.classifier.fc3.fc.kernel_size == (7, 7)  # 28 → 14 → 7
    assert dense.classifier.fc4.fc.kernel_size == (1, 1)
    x = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(dense(x).flatten(1), model(x), rtol=1e-5, atol=1e-6)
        # a larger image: a score map, each position the classifier applied to one 28×28 window
        big = torch.randn(1, 1, 44, 36)
        score_map = dense(big)
        assert score_map.shape == (1, 3, 5, 3)  # (44/4 − 7 + 1, 36/4 − 7 + 1)
        window = big[:, :, 8:36, 4:32]  # position (2, 1): offset 4 px per step
        torch.testing.assert_close(score_map[:, :, 2, 1], model(window), rtol=1e-3, atol=1e-4)


def test_d_at_384_gives_a_6x6_score_map(paper_specs):
    dense = to_dense(vggspec.build(paper_specs["D"], device="meta"))
    result = verify(dense, 384)
    assert result.ok, result.mismatches()
    assert result.output_shape == (1000, 6, 6)
    assert sum(p.numel() for p in dense.parameters()) == 138_357_544  # nothing retrained, nothing added


def test_the_analyzer_knows_the_dense_network(paper_specs):
    analysis = vggspec.analyze(paper_specs["D"], input_size=384, dense=True)
    assert analysis.layer("fc8").output_shape == (1000, 6, 6)
    assert analysis.layer("fc6").receptive_field == 404  # FC6 as a 7×7 conv on pool5 (212 + 6·32)
    assert analysis.layer("fc6").macs == 512 * 7 * 7 * 4096 * 36
    assert analysis.params == 138_357_544
    assert analysis.min_input_size == 224  # the 7×7 kernel must fit
    assert analysis.to_dict()["dense"] is True
    with pytest.raises(vggspec.ShapeError, match="fc6"):
        vggspec.analyze(paper_specs["D"], input_size=200, dense=True)


def test_dense_refuses_images_smaller_than_the_training_size(narrow_d):
    dense = to_dense(narrow_d)
    with pytest.raises(vggspec.InputSizeError, match="H, W ≥ 32"):
        dense(torch.zeros(1, 3, 31, 40))


def test_spatial_and_flip_averaging(narrow_d):
    dense = to_dense(narrow_d)
    x = images.batch(48, count=3)
    with torch.inference_mode():
        scores = class_scores(dense, x)
        torch.testing.assert_close(scores, dense(x).mean(dim=(2, 3)))
        probs = posteriors(dense, x)
        flipped = class_scores(dense, x.flip(3)).softmax(1)
        torch.testing.assert_close(probs, (scores.softmax(1) + flipped) / 2)
        torch.testing.assert_close(probs.sum(1), torch.ones(3))
        torch.testing.assert_close(posteriors(dense, x, flip=False), scores.softmax(1))
