"""Paired comparisons of two configurations on the same eval queries, with a multiple-comparison correction."""

from __future__ import annotations

import numpy as np

from experiments.evaluation.bootstrap import Estimate, bootstrap_indices, estimate


def paired_delta(values: np.ndarray, reference: np.ndarray, resamples: int = 2000, seed: int = 0) -> Estimate:
    """Mean of ``values - reference`` (aligned per query) with its paired percentile-bootstrap 95% interval."""
    return estimate(values - reference, bootstrap_indices(len(values), resamples, seed))


def sign_flip_p_value(values: np.ndarray, reference: np.ndarray, resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of "no difference" by a paired randomisation test (random sign flips of the differences).

    Under the null, each query's difference is as likely to have either sign; the p-value is the share of flipped
    mean differences at least as far from 0 as the observed one (with the +1 correction, so it is never 0).
    """
    differences = values - reference
    observed = abs(differences.mean()) if differences.size else 0.0
    if differences.size == 0 or not np.any(differences):
        return 1.0
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, differences.size))
    flipped = np.abs((signs * differences).mean(axis=1))
    return float((1 + np.sum(flipped >= observed - 1e-12)) / (resamples + 1))


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control), in the input order."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
