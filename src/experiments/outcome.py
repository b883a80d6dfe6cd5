"""The records between a run's steps: where it writes, the embed and evaluate steps' outputs, the whole outcome.

The pipeline builds them; the run folder (``experiments.run_folder``) and the tracker adapter
(``experiments.tracking.record``) read them, so neither needs the pipeline itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from experiments.evaluation.evaluate import QueryResult
    from experiments.records import DatasetSplits, FinetuneSet
    from experiments.records.run import Replicates, Summary
    from experiments.rerankers.base import FitResult
    from experiments.serving.package import CategoriserPackage


@dataclass(frozen=True)
class Folders:
    """Where a run writes: its own folder, and the caches shared across runs (keyed by content)."""

    output_dir: Path
    models_dir: Path
    scores_dir: Path


@dataclass(frozen=True)
class Embeddings:
    """The embed step's output: the category documents and the vectors of categories and queries."""

    documents: list[str]
    categories: np.ndarray
    train: np.ndarray
    eval: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """The evaluate step's output: per-query results, their aggregates, and how many scores were computed."""

    results: list[QueryResult]
    summary: Summary
    scored_pairs: int | None = None
    cached_pairs: int | None = None


@dataclass
class RunOutcome:
    """What a run produced: everything the run folder and the trackers receive."""

    run_name: str
    output_dir: Path
    params: dict[str, object]
    splits: DatasetSplits
    finetune_set: FinetuneSet
    fit: FitResult | None
    evaluation: Evaluation
    table: str
    timings: dict[str, float] = field(default_factory=dict)
    categoriser: CategoriserPackage | None = None
    #: With ``replicates > 1``: each reranked metric over the seeds (``evaluation.replicates``).
    replicates: Replicates | None = None
    #: Diagnostics for trackers (digests, leakage counts, data paths): tags, never params.
    tags: dict[str, str] = field(default_factory=dict)
    #: Wall-clock start and end of the run (seconds since the epoch): the tracked run's own times.
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def summary(self) -> Summary:
        return self.evaluation.summary

    def metric(self, name: str) -> float:
        """The reranker's ``name`` (``mrr@1``): its mean over seeds when the run has replicates."""
        if self.replicates:
            return self.replicates.stat(name).mean
        return self.summary.reranker[name].mean
