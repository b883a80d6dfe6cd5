"""The seed notebook's retrieval metrics, exactly as docs/metrics.md defines them.

For predictions = the ranked label list cut at k:

- ``recall@k`` = fraction of the expected labels that appear in the top k;
- ``mrr@k`` = max over expected labels found in the top k of 1 / (1-based rank), 0 if none is found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

CUTOFFS: tuple[int, ...] = (1, 3, 5)


def recall_at(predictions: Sequence[str], expected: Sequence[str], k: int) -> float:
    """Fraction of ``expected`` labels found among the first ``k`` predictions."""
    top = set(predictions[:k])
    return sum(1 for label in expected if label in top) / len(expected)


def mrr_at(predictions: Sequence[str], expected: Sequence[str], k: int) -> float:
    """Reciprocal 1-based rank of the best-placed expected label within the first ``k`` predictions, else 0."""
    best = 0.0
    for rank, label in enumerate(predictions[:k], start=1):
        if label in expected:
            best = max(best, 1.0 / rank)
    return best


METRIC_FUNCTIONS: dict[str, Callable[[Sequence[str], Sequence[str], int], float]] = {
    "recall": recall_at,
    "mrr": mrr_at,
}

#: Stable, lower-case metric names, in the order of every table: recall@1, recall@3, recall@5, mrr@1, ...
METRIC_NAMES: tuple[str, ...] = tuple(f"{metric}@{k}" for metric in METRIC_FUNCTIONS for k in CUTOFFS)

#: The metric a run returns and a sweep picks its winner by when ``optimized_metric`` is not set.
DEFAULT_METRIC = "mrr@1"


def metric_key(name: str) -> str:
    """MLflow forbids ``@`` in metric names: ``recall@1`` is tracked (and names plot files) as ``recall_at_1``."""
    return name.replace("@", "_at_")


def score_query(predictions: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    """Every metric in ``METRIC_NAMES`` for one query."""
    return {
        f"{metric}@{k}": function(predictions, expected, k)
        for metric, function in METRIC_FUNCTIONS.items()
        for k in CUTOFFS
    }
