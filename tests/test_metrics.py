"""The seed's metric definitions, on hand-computed cases and against ranx (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.evaluation.bootstrap import bootstrap_indices, estimate
from experiments.metrics import METRIC_NAMES, mrr_at, recall_at, score_query


@pytest.mark.parametrize(
    ("predictions", "expected", "k", "recall", "mrr"),
    [
        (["a", "b", "c"], ["a"], 1, 1.0, 1.0),
        (["b", "a", "c"], ["a"], 1, 0.0, 0.0),
        (["b", "a", "c"], ["a"], 3, 1.0, 0.5),
        (["b", "c", "a"], ["a"], 3, 1.0, 1 / 3),
        (["b", "c", "d", "e", "a"], ["a"], 5, 1.0, 0.2),
        (["b", "c", "d", "e", "f", "a"], ["a"], 5, 0.0, 0.0),
        # two expected labels: recall counts both, mrr takes the best-placed one
        (["x", "b", "y", "a"], ["a", "b"], 3, 0.5, 0.5),
        (["x", "b", "y", "a"], ["a", "b"], 5, 1.0, 0.5),
        ([], ["a"], 5, 0.0, 0.0),
    ],
)
def test_hand_computed(predictions, expected, k, recall, mrr):
    assert recall_at(predictions, expected, k) == pytest.approx(recall)
    assert mrr_at(predictions, expected, k) == pytest.approx(mrr)


def test_matches_the_seed_notebook_implementation():
    def seed_mrr(predictions, gt):
        mrr = 0
        for label in gt:
            if label in predictions:
                mrr = max(mrr, 1 / (predictions.index(label) + 1))
        return mrr

    def seed_recall(predictions, gt):
        return len([label for label in gt if label in predictions]) / len(gt)

    rng = np.random.default_rng(1)
    labels = [f"c{i}" for i in range(12)]
    for _ in range(200):
        predictions = list(rng.permutation(labels)[:8])
        expected = list(rng.choice(labels, size=int(rng.integers(1, 3)), replace=False))
        for k in (1, 3, 5):
            assert mrr_at(predictions, expected, k) == pytest.approx(seed_mrr(predictions[:k], expected))
            assert recall_at(predictions, expected, k) == pytest.approx(seed_recall(predictions[:k], expected))


def test_agrees_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(7)
    labels = [f"c{i}" for i in range(15)]
    qrels, run, ours = {}, {}, {name: [] for name in METRIC_NAMES}
    for q in range(60):
        ranking = list(rng.permutation(labels)[:10])
        expected = list(rng.choice(labels, size=int(rng.integers(1, 3)), replace=False))
        qrels[f"q{q}"] = dict.fromkeys(expected, 1)
        run[f"q{q}"] = {label: float(10 - position) for position, label in enumerate(ranking)}
        for name, value in score_query(ranking, expected).items():
            ours[name].append(value)
    scores = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), list(METRIC_NAMES))
    for name in METRIC_NAMES:
        assert np.mean(ours[name]) == pytest.approx(scores[name], abs=1e-9), name


def test_metric_names_are_stable():
    assert METRIC_NAMES == ("recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5")


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(0).binomial(1, 0.4, size=200).astype(float)
    indices = bootstrap_indices(len(values), 1000, seed=3)
    first = estimate(values, indices)
    assert first.ci_low < first.mean < first.ci_high
    assert 0.05 < first.ci_high - first.ci_low < 0.2  # ~ 2 * 1.96 * sqrt(.24/200) = 0.136
    assert estimate(values, bootstrap_indices(len(values), 1000, seed=3)) == first


def test_constant_values_give_a_zero_width_interval():
    values = np.ones(50)
    result = estimate(values, bootstrap_indices(50, 200, seed=0))
    assert (result.mean, result.ci_low, result.ci_high) == (1.0, 1.0, 1.0)
