"""Percentile bootstrap intervals for per-query metric means, single and paired.

Small eval sets are noisy: every mean the product reports comes with a 95% interval obtained by resampling
the eval queries with replacement. The paired version resamples the *same* queries for the reranker and the
baseline, so the interval of the difference accounts for their correlation (the right test for "did the
reranker help on this eval set?").
"""

from __future__ import annotations

import numpy as np

from experiments.records.run import Estimate


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` row indices drawn with replacement; shared so paired estimates use the same draws."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def estimate(values: np.ndarray, indices: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Mean of ``values`` and the percentile interval of the resampled means."""
    if values.size == 0:
        return Estimate(mean=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    means = values[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Estimate(mean=float(values.mean()), ci_low=float(low), ci_high=float(high))
