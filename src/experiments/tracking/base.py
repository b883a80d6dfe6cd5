"""The tracker contract, the records every tracker receives, and the helpers they share.

A run is recorded by a list of trackers (``trackers:`` in the config; ``experiments.tracking.trackers.Trackers``
calls each in turn). Each tracker gets the same two records: ``TrackedRun`` for a finished run and ``FailedRun``
for one that failed after validation. Both are already scrubbed of secrets, and the metric names are computed
once (``run_metrics``), so every tracker logs the same numbers under the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from experiments.secrets import REDACTED, scrub

if TYPE_CHECKING:
    from experiments.evaluation.evaluate import QueryResult, Summary
    from experiments.records import DatasetSplits, FinetuneSet

__all__ = ["REDACTED", "FailedRun", "TrackedRun", "Tracker", "flatten", "metric_key", "run_metrics", "scrub"]


@dataclass(frozen=True)
class TrackedRun:
    """A finished run, as every tracker receives it.

    Attributes:
        name: the run's name (``<miner>-k<k>-d<duplication>-<reranker>``), the same in every tracker.
        params: the flattened config and component settings, secrets removed.
        tags: digests of the data and the fine-tuning set, the fine-tune id when the reranker trained, and
            ``experiments.run_uid`` (unique per run: what ``python -m experiments.sync`` finds a resent run by).
        metrics: every number to track, under MLflow-safe names (``recall_at_1``, ``delta_mrr_at_5_ci_low``...).
        summary: the aggregates behind ``metrics`` (for a metric table).
        results: one record per eval query (rankings before and after reranking, per-query metrics).
        run_folder: the run's own folder (complete: ``metrics.json`` is there).
        artifacts: a copy of the run folder with secret values redacted: what trackers may upload.
    """

    name: str
    params: Mapping[str, object]
    tags: Mapping[str, str]
    metrics: Mapping[str, float]
    splits: DatasetSplits
    finetune_set: FinetuneSet
    summary: Summary
    results: Sequence[QueryResult]
    finetune_id: str | None
    run_folder: Path
    artifacts: Path


@dataclass(frozen=True)
class FailedRun:
    """A run that failed after its inputs were validated: its params, the reason, and ``FAILED`` or ``KILLED``
    (stopped by SIGTERM or Ctrl-C)."""

    name: str
    params: Mapping[str, object]
    error: str
    status: str = "FAILED"


class Tracker(Protocol):
    """Records runs somewhere (MLflow, Braintrust, ...).

    Attributes:
        strict: when True a failure of this tracker fails the run; otherwise it is reported in one line and
            the other trackers and the run folder keep the run.
        timeout_s: how long one call may take before it counts as failed (a server that never answers).
    """

    strict: bool
    timeout_s: float

    def start_sweep(self, name: str) -> str | None:
        """Open a sweep's parent; returns an id its jobs receive (or None when the tracker has no such notion)."""
        ...

    def end_sweep(self) -> None: ...

    def log_run(self, run: TrackedRun) -> None: ...

    def log_failure(self, run: FailedRun) -> None: ...


# Optional tracker methods, called when present:
#   abort() -> None: the process is being stopped (SIGTERM, Ctrl-C) while log_run runs: end the open run KILLED.
#   discard(run_uid: str) -> None: delete what an interrupted attempt recorded of a run, before it is resent.


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become their string form."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, int | float | str | bool) or value is None else str(value)
    return flat


def metric_key(name: str) -> str:
    """MLflow forbids ``@`` in metric names: ``recall@1`` is tracked as ``recall_at_1``."""
    return name.replace("@", "_at_")


def run_metrics(summary: Summary, extra: Mapping[str, float]) -> dict[str, float]:
    """Every tracked number of a run under one set of names (valid in MLflow and Braintrust alike).

    ``recall_at_1`` (reranker), ``baseline_recall_at_1``, ``delta_recall_at_1``, each with ``_ci_low`` and
    ``_ci_high``; ``latency_rerank_p50_ms`` ...; ``candidate_recall``; plus ``extra`` as given.
    """
    metrics: dict[str, float] = dict(extra)
    columns = [(prefix, summary.systems[system]) for system, prefix in (("reranker", ""), ("baseline", "baseline_"))]
    for prefix, values in [*columns, ("delta_", summary.delta)]:
        for name, value in values.items():
            key = prefix + metric_key(name)
            metrics.update({key: value.mean, f"{key}_ci_low": value.low, f"{key}_ci_high": value.high})
    metrics.update({f"latency_{key}_ms": value for key, value in summary.latency_ms.items()})
    metrics["candidate_recall"] = summary.candidate_recall
    return metrics
