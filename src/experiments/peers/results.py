"""The comparison's records: the project run compared with, each peer's finished run, and the whole comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments import run_folder
from experiments.peers.base import PeerFit
from experiments.records.run import Estimate
from experiments.run_folder import QueryRecord, RunRecord


@dataclass(frozen=True)
class ProjectRun:
    """The project's run folder the peers are compared with."""

    folder: Path
    record: RunRecord
    queries: list[QueryRecord]

    @property
    def fit_seconds(self) -> float | None:
        """Mining and training (``timings.mine_s`` + ``fit.train_seconds``); None when the model was reused."""
        fit = self.record.fit
        if fit is None or fit.reused:
            return None if fit is not None else 0.0
        return float(self.record.timings.mine_s or 0.0) + float(fit.train_seconds)


@dataclass(frozen=True)
class PeerRun:
    """One peer's finished run: its folder, its record and its per-query results."""

    name: str
    folder: Path
    record: RunRecord
    fit: PeerFit | None
    settings: Mapping[str, object]

    def scores(self, metric: str, queries: Sequence[QueryRecord]) -> np.ndarray:
        return np.array([row.reranker[metric] for row in queries])


@dataclass(frozen=True)
class Comparison:
    """What the command produced: the folder, the peers' runs, the project run they were paired with."""

    folder: Path
    dataset: str
    seed: int
    metric: str
    peers: list[PeerRun]
    project: ProjectRun | None
    #: Per peer (in ``peers`` order): project − peer on ``metric``, paired bootstrap interval; None without a project.
    deltas: list[Estimate] | None = None
    #: Holm-adjusted sign-flip p-values of those differences.
    p_values: list[float] | None = None


def read_project(folder: Path) -> ProjectRun:
    """A completed project run folder, or a one-line ``UserError`` naming the file."""
    return ProjectRun(Path(folder), run_folder.read(Path(folder)), run_folder.read_queries(Path(folder)))
