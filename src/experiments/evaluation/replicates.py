"""A run's replicates (``replicates=N``): each reranked metric over the seeds, and the chosen settings' validation
scores over the same seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.metrics import METRIC_NAMES
from experiments.records.run import Replicates, ReplicateStat, Summary

if TYPE_CHECKING:
    from experiments.rerankers.base import FitResult


def _stat(values: Sequence[float]) -> ReplicateStat:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return ReplicateStat(mean=float(np.mean(values)), sd=sd, values=list(values))


def replicate_summary(
    seeds: Sequence[int], summaries: Sequence[Summary], fits: Sequence[FitResult | None] = ()
) -> Replicates:
    """Mean and sample standard deviation over seeds of every reranked metric, with the per-seed values; and of
    the validation scores of the settings chosen, when every seed's fit chose on validation (``fits``)."""
    stats: dict[str, Any] = {
        name: _stat([summary.reranker[name].mean for summary in summaries]) for name in METRIC_NAMES
    }
    chosen = [scores for fit in fits if fit and (scores := fit.selection.scores()) is not None]
    if fits and len(chosen) == len(fits):
        names = [name for name in chosen[0].reranker if all(name in scores.reranker for scores in chosen)]
        stats["validation"] = {name: _stat([scores.reranker[name].mean for scores in chosen]) for name in names}
    return Replicates(n=len(seeds), seeds=list(seeds), **stats)
