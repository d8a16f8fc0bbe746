"""Top-1 and top-5 error: the one definition the trainer and the evaluator share."""

import math

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

from vggspec.run.metrics import top_errors, top_k_correct  # noqa: E402


def test_top_k_counts_a_label_among_the_k_highest_scores():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert top_k_correct(scores, labels, ks=(1, 2, 3)).tolist() == [1, 2, 3]
    assert top_errors(scores, labels) == pytest.approx((2 / 3, 0.0))  # top-5 of 3 classes: all of them


def test_an_image_without_scores_counts_as_wrong_and_no_images_as_all_wrong():
    scores = torch.tensor([[0.9, 0.1], [math.nan, math.nan]])
    labels = torch.tensor([0, 0])
    assert top_k_correct(scores, labels).tolist() == [1, 1]
    assert top_errors(scores, labels) == (0.5, 0.5)
    assert top_errors(torch.empty(0, 2), torch.empty(0, dtype=torch.long)) == (1.0, 1.0)


def test_logits_and_posteriors_rank_alike():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    assert top_errors(logits, labels) == top_errors(logits.softmax(dim=1), labels)
