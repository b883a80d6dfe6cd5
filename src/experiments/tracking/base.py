"""The tracker contract, the records every tracker receives, and the helpers they share.

A run is recorded by a list of trackers (``trackers:`` in the config; ``experiments.tracking.trackers.Trackers``
calls each in turn). Each tracker gets the same two records: ``TrackedRun`` for a finished run and ``FailedRun``
for one that failed after validation. Both are already scrubbed of secrets, and the metric names are computed
once from the run's ``RunRecord`` (``run_metrics``), so every tracker logs the same numbers under the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from experiments.metrics import METRIC_NAMES, metric_key
from experiments.secrets import REDACTED, scrub

if TYPE_CHECKING:
    from experiments.evaluation.evaluate import QueryResult
    from experiments.records import DatasetSplits, FinetuneSet
    from experiments.records.run import Summary
    from experiments.records.sweep import SweepRecord
    from experiments.run_folder import RunRecord
    from experiments.serving.package import CategoriserPackage

__all__ = [
    "REDACTED",
    "FailedRun",
    "TrackedRun",
    "Tracker",
    "diagnostic_tags",
    "flatten",
    "headline_metrics",
    "metric_key",
    "run_metrics",
    "scrub",
    "tracked_params",
    "validation_key",
]


@dataclass(frozen=True)
class TrackedRun:
    """A finished run, as every tracker receives it.

    Attributes:
        name: the run's name from the chosen options (``cosine-k2-d2-bi_encoder_finetuned``), the same in every
            tracker.
        params: the knobs and the chosen options' own knobs (``tracked_params``), secrets removed: what the run
            computes, nothing else.
        tags: diagnostics, not knobs: digests of the data and the fine-tuning set, the embedder's weights digest,
            leakage counts (``eval_in_train``), data paths, the fine-tune id when the reranker trained, and
            ``experiments.run_uid`` (unique per run: what ``python -m experiments.sync`` finds a resent run by).
        metrics: every number to track, under MLflow-safe names (``recall_at_1``, ``delta_mrr_at_5_ci_low``...).
        summary: the aggregates behind ``metrics`` (for a metric table).
        results: one record per eval query (rankings before and after reranking, per-query metrics).
        run_folder: the run's own folder (complete: ``metrics.json`` is there).
        artifacts: a copy of the run folder with secret values redacted: what trackers may upload.
        loss_history: ``(step, training loss)`` of the fine-tune, when the reranker trained in this run.
        categoriser: the run's categoriser, ready to ship as a model (None when a part cannot be shipped).
        started_at: when the run started (seconds since the epoch); None: when the tracker records it.
        ended_at: when the run folder was complete (seconds since the epoch); None: when the tracker records it.
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
    loss_history: Sequence[tuple[int, float]] = ()
    categoriser: CategoriserPackage | None = None
    started_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class FailedRun:
    """A run that failed after its inputs were validated: its params and diagnostic tags, the reason, ``FAILED``
    or ``KILLED`` (stopped by SIGTERM or Ctrl-C), and when it started (seconds since the epoch, when known)."""

    name: str
    params: Mapping[str, object]
    error: str
    status: str = "FAILED"
    tags: Mapping[str, str] = field(default_factory=dict)
    started_at: float | None = None


class Tracker(Protocol):
    """Records runs somewhere (MLflow, Braintrust, ...).

    Attributes:
        strict: when True a failure of this tracker fails the run; otherwise it is reported in one line and
            the other trackers and the run folder keep the run.
        timeout_s: how long one call may take before it counts as failed (a server that never answers).
    """

    strict: bool
    timeout_s: float

    def start_sweep(self, name: str, sweep_dir: Path) -> str | None:
        """Open the parent of the sweep writing into ``sweep_dir`` (a rerun of that folder reopens it); returns an
        id its jobs receive (or None when the tracker has no such notion)."""
        ...

    def end_sweep(self, record: SweepRecord | None, sweep_dir: Path) -> None:
        """Close the sweep's parent; ``record`` is the sweep's report (``report.json``, written in ``sweep_dir``
        with its plots), None when the sweep made none."""
        ...

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
            flat[name] = _plain(value)
    return flat


def _plain(value: Any) -> object:
    """A param value: scalars as they are, anything else (a list) as its string form."""
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


#: Config groups whose chosen option and knobs are tracked as params (``miner=kmeans``, ``miner.n_clusters=6``).
PARAM_GROUPS = ("dataset", "embedder", "retrieval", "miner", "reranker")
#: Keys that say where or how a run prints, stores or reports things, not what it computes: never params.
NOT_PARAMS = frozenset(
    {"_target_", "progress", "device", "cache_dir", "uri", "parent_run_id", "log_model", "optimized_metric"}
    | {"timeout_s", "app_url", "org_name", "base_url"}
)
#: Keys ending so name a file or a location: a diagnostic (a tag), not a knob.
LOCATION_SUFFIXES = ("_path", "_dir", "_url", "_uri")


def _is_param(key: str) -> bool:
    return key not in NOT_PARAMS and not key.endswith(LOCATION_SUFFIXES)


def tracked_params(config: Mapping[str, Any], choices: Mapping[str, str] | None = None) -> dict[str, object]:
    """Short, unique params: the top-level knobs, ``<group>=<option>`` and each chosen option's own knobs.

    ``config`` is the resolved config; ``choices`` the option chosen per group (Hydra's runtime choices). Without
    a choice the option is named by its class (``KMeansMiner``). Paths, trackers, class paths and what only says
    how a run reports (``log_model``, ``optimized_metric``) are left out (``diagnostic_tags`` has the data
    paths; ``config.json`` in the run folder holds the whole config).
    """
    params: dict[str, object] = {}
    for key, value in config.items():
        if key in PARAM_GROUPS or not _is_param(key) or key in ("paths", "trackers", "hydra"):
            continue
        if isinstance(value, Mapping):
            params.update(flatten(value, f"{key}."))
        else:
            params[key] = value
    for group in PARAM_GROUPS:
        node = config.get(group)
        if isinstance(node, Mapping):
            params.update(_option_params(group, node, (choices or {}).get(group)))
    return params


def _option_params(prefix: str, node: Mapping[str, Any], choice: str | None) -> dict[str, object]:
    target = str(node.get("_target_", ""))
    params: dict[str, object] = {prefix: choice or target.rsplit(".", 1)[-1] or "none"}
    for key, value in node.items():
        if not _is_param(key):
            continue
        if isinstance(value, Mapping) and "_target_" in value:
            params.update(_option_params(f"{prefix}.{key}", value, None))
        elif isinstance(value, Mapping):
            params.update(flatten(value, f"{prefix}.{key}."))
        else:
            params[f"{prefix}.{key}"] = (
                value if isinstance(value, int | float | str | bool) or value is None else str(value)
            )
    return params


def diagnostic_tags(config: Mapping[str, Any]) -> dict[str, str]:
    """The data locations of a run (``dataset.train_path``...) as tags: where its inputs came from, not a knob."""
    tags: dict[str, str] = {}
    for group in PARAM_GROUPS:
        node = config.get(group)
        if not isinstance(node, Mapping):
            continue
        for key, value in node.items():
            if key.endswith("_path") and value is not None:
                tags[f"{group}.{key}"] = str(value)
    return tags


def headline_metrics(record: RunRecord) -> dict[str, float]:
    """The headline numbers of a run, from its ``RunRecord``: what a run and a sweep's parent both track.

    ``validation_mrr_at_1`` ... (the objective a sweep chooses by: the chosen setting's validation score, over the
    seeds with replicates) when the run chose on validation; ``recall_at_1`` (reranker), ``baseline_recall_at_1``,
    ``delta_recall_at_1`` ..., each with ``_ci_low`` and ``_ci_high``; ``latency_rerank_p50_ms``;
    ``candidate_recall``.
    """
    summary = record.metrics
    metrics: dict[str, float] = {}
    for name in record.validation.reranker if record.validation is not None else ():
        score = record.validation_score(name)
        if score is not None:
            metrics[validation_key(name)] = score
    for prefix, estimates in (("", summary.reranker), ("baseline_", summary.baseline), ("delta_", summary.delta)):
        for name, value in estimates.items():
            key = prefix + metric_key(name)
            metrics.update({key: value.mean, f"{key}_ci_low": value.ci_low, f"{key}_ci_high": value.ci_high})
    if "rerank_p50" in summary.latency_ms:  # not measured when every score came from the score cache
        metrics["latency_rerank_p50_ms"] = float(summary.latency_ms["rerank_p50"])
    metrics["candidate_recall"] = float(summary.candidate_recall)
    return metrics


def validation_key(metric: str) -> str:
    """The objective's name: ``validation_mrr_at_1`` for ``mrr@1`` chosen on the validation split."""
    return f"validation_{metric_key(metric)}"


def run_metrics(record: RunRecord) -> dict[str, float]:
    """Every tracked number of a run under one set of names (valid in MLflow and Braintrust alike).

    The training time (when this run trained), ``replicates_<metric>_mean`` / ``_sd`` (with replicates; and
    ``replicates_validation_<metric>_...`` when every seed chose on validation), then the
    headline set (``headline_metrics``). Stage timings and the rest stay in the run folder's ``metrics.json``.
    """
    fit, replicates = record.fit, record.replicates
    extras = {"train_seconds": fit.train_seconds} if fit and not fit.reused else {}
    if replicates is not None:
        extras |= {
            f"replicates_{metric_key(name)}_{stat}": float(getattr(replicates.stat(name), stat))
            for name in METRIC_NAMES
            for stat in ("mean", "sd")
        }
        extras |= {
            f"replicates_validation_{metric_key(name)}_{stat}": float(getattr(value, stat))
            for name, value in (replicates.validation or {}).items()
            for stat in ("mean", "sd")
        }
    return {**extras, **headline_metrics(record)}
