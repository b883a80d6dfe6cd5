"""A sweep's rows: one completed job each, read from its run folder through ``experiments.run_folder``.

The report ranks and tests them (``sweeps.report``) and the figures draw them (``sweeps.plots``); both import this
module, neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from experiments import run_folder
from experiments.errors import UserError
from experiments.metrics import METRIC_NAMES
from experiments.records import sha256_json
from experiments.records.run import Estimate
from experiments.run_folder import Fit, RunRecord
from experiments.sweeps.jobs import Job
from experiments.sweeps.labels import shown


@dataclass(frozen=True)
class Row:
    """One completed configuration of the sweep."""

    job: Job
    knobs: dict[str, str]
    choices: dict[str, str]
    metrics: dict[str, Estimate]
    delta_baseline: dict[str, Estimate]
    selection_value: float
    per_query: dict[str, np.ndarray]
    queries: list[str]
    #: The eval examples apart from their text layout (``eval_set``): rows with the same one pair query by query.
    eval_set: str = ""
    vs_best: Estimate | None = None
    p_value: float | None = None
    p_adjusted: float | None = None

    @property
    def label(self) -> str:
        # Display only (floats to 3 significant digits); the job's folder and overrides keep the values as given.
        return ",".join(f"{key}={shown(value)}" for key, value in sorted(self.knobs.items())) or self.job.folder.name

    @property
    def record(self) -> RunRecord:
        """The job's ``metrics.json`` (a row is only made for a completed job)."""
        assert self.job.record is not None
        return self.job.record

    @property
    def fit(self) -> Fit | None:
        return self.record.fit

    @property
    def training(self) -> Training | None:
        """What training took; for a reused model, what the stored model took when it was trained."""
        return training(self.job.folder, self.record)


@dataclass(frozen=True)
class Training:
    """A row's training: ``seconds`` is None when a reused model's stored record is gone."""

    reused: bool
    seconds: float | None
    loss_history: list[tuple[int, float]]

    @property
    def cell(self) -> str:
        """``12.3`` (trained in this run), ``reused, 12.3`` (a stored model, trained earlier in 12.3 s)."""
        seconds = "" if self.seconds is None else f"{self.seconds:.1f}"
        if self.reused:
            return f"reused, {seconds}" if seconds else "reused"
        return seconds or "—"


def training(folder: Path, record: RunRecord) -> Training | None:
    """The run's training; when it reused a stored model, that model's training time and loss history (its
    ``COMPLETE.json`` in ``<paths.models_dir>/<finetune id>``, found through the run's ``config.json``), not the
    reuse's zero seconds."""
    from experiments.store import read_marker

    fit = record.fit
    if fit is None:
        return None
    history = [(int(step), float(loss)) for step, loss in fit.loss_history]
    if not fit.reused:
        return Training(False, float(fit.train_seconds), history)
    config = run_folder.read_config(folder) if record.finetune_id else None
    models_dir = config.models_dir if config is not None else None
    stored = read_marker(Path(models_dir) / record.finetune_id) if models_dir and record.finetune_id else None
    if not stored:
        return Training(True, None, history)
    kept = [(int(step), float(loss)) for step, loss in stored.get("loss_history") or []]
    seconds = stored.get("train_seconds")
    return Training(True, None if seconds is None else float(seconds), kept if len(kept) > len(history) else history)


def _choices(folder: Path) -> dict[str, str]:
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return {}
    choices = yaml.safe_load(hydra_file.read_text("utf-8"))["hydra"]["runtime"]["choices"]
    return {str(key): str(value) for key, value in choices.items() if not str(key).startswith("hydra")}


def validation_score(job: Job, metric: str) -> float | None:
    """The run's ``metric`` on its validation split (a model trained without it), when it reports one."""
    return job.record.validation_score(metric) if job.record is not None else None


def read_row(job: Job, swept: list[str], metric: str, on_validation: bool) -> Row:
    """A completed job's row: its knobs and choices, eval metrics with intervals and per-query scores, and the value
    it is ranked by (validation when ``on_validation``, else eval)."""
    record = job.record
    if record is None:
        raise UserError(f"{job.folder}: not a completed job (no {run_folder.METRICS_FILE}).")
    summary = record.metrics
    validation = validation_score(job, metric) if on_validation else None
    selection = validation if validation is not None else summary.reranker[metric].mean
    queries = run_folder.read_queries(job.folder)
    return Row(
        job=job,
        knobs={key: job.overrides[key] for key in swept if key in job.overrides},
        choices=_choices(job.folder),
        metrics={name: summary.reranker[name] for name in METRIC_NAMES},
        delta_baseline={name: summary.delta[name] for name in METRIC_NAMES},
        selection_value=float(selection),
        per_query={name: np.array([q.reranker[name] for q in queries], dtype=float) for name in METRIC_NAMES},
        queries=[q.query for q in queries],
        eval_set=eval_set(job.folder, [q.expected for q in queries]),
    )


def eval_set(folder: Path, expected: list[list[str]]) -> str:
    """The identity of a run's eval examples apart from their text layout: its data set's config less
    ``query_fields``, and every query's expected labels in order ("" when the run folder has no ``config.json``).

    The same transactions formatted with other query lines (a sweep over ``dataset.query_fields``) come in the same
    order with the same labels, so their per-query scores pair although the texts differ.
    """
    config = run_folder.read_config(folder)
    dataset = config.dataset if config is not None else None
    if dataset is None:
        return ""
    source = {key: value for key, value in dataset.items() if key != "query_fields"}
    return sha256_json({"dataset": source, "expected": expected})
