"""One run, as a short sequence of named steps.

data → embed → index → mine (train only) → fine-tuning set → fit reranker → evaluate (with and without the
reranker, on the eval split only) → write the run folder → track. Each step takes and returns plain records, so
it can be tested alone; the components arrive already built (``experiments.app`` instantiates them from
config). The trackers are called in one place, at the end (``_track``), after the run folder is complete: a run
that fails or is killed before then leaves no half-recorded tracker run, and a failing tracker never loses the
folder. The files a run writes are described in ``docs/run-folder.md``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.datasets.base import Dataset
from experiments.embedders.base import Embedder
from experiments.errors import UserError
from experiments.evaluation.evaluate import QueryResult, Summary, run_queries, summarize
from experiments.miners.base import Miner, MiningContext, check_knobs
from experiments.records import DatasetSplits, FinetuneSet, sha256_json
from experiments.report import format_table
from experiments.rerankers.base import FitResult, Reranker
from experiments.rerankers.cached import CachedScores
from experiments.retrieval.base import Retriever
from experiments.secrets import redact
from experiments.tracking.base import FailedRun, TrackedRun, flatten, run_metrics
from experiments.tracking.trackers import Trackers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Knobs:
    """The settings users type at the top level of ``conf/config.yaml``."""

    k: int = 4
    duplication: int = 2
    seed: int = 42
    bootstrap_resamples: int = 1000
    progress: bool = True


@dataclass(frozen=True)
class Components:
    """The built parts of one run (``experiments.app`` instantiates them from the config groups)."""

    dataset: Dataset
    embedder: Embedder
    retrieval: Retriever
    miner: Miner
    reranker: Reranker
    trackers: Trackers


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

    @property
    def summary(self) -> Summary:
        return self.evaluation.summary


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def lap(self, name: str, started: float) -> None:
        self.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name and rename, so a killed run never leaves a complete-looking file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def run_name(parts: Components, knobs: Knobs) -> str:
    return f"{parts.miner.name}-k{knobs.k}-d{knobs.duplication}-{parts.reranker.name}"


# The steps, in order.


def load_data(parts: Components, knobs: Knobs) -> DatasetSplits:
    """Validate every file and knob (and fingerprint the embedding model) before any work or record."""
    splits = parts.dataset.load()
    check_knobs(knobs.k, knobs.duplication, len(splits.categories))
    parts.embedder.identity()  # a bad model path fails here
    leaked = eval_in_train(splits)
    if leaked:
        log.warning("%d eval queries also appear in the train split; their scores are optimistic", leaked)
    return splits


def eval_in_train(splits: DatasetSplits) -> int:
    """How many eval queries are also train queries (their scores are optimistic)."""
    train_inputs = {example.input for example in splits.train}
    return sum(1 for example in splits.eval if example.input in train_inputs)


def embed(embedder: Embedder, retrieval: Retriever, splits: DatasetSplits) -> Embeddings:
    """Embed the category documents and both splits' queries (cached on disk by model and text)."""
    documents = retrieval.documents(splits.categories)
    return Embeddings(
        documents=documents,
        categories=embedder.encode(documents),
        train=embedder.encode([example.input for example in splits.train]),
        eval=embedder.encode([example.input for example in splits.eval]),
    )


def mine(miner: Miner, splits: DatasetSplits, vectors: Embeddings, knobs: Knobs) -> FinetuneSet:
    """Hard negatives for the *train* split only."""
    context = MiningContext(
        examples=splits.train,
        labels=splits.category_names,
        documents=vectors.documents,
        category_vectors=vectors.categories,
        query_vectors=vectors.train,
    )
    return miner.mine(context, knobs.k, knobs.duplication, knobs.seed)


def evaluate(
    parts: Components, splits: DatasetSplits, vectors: Embeddings, fit: FitResult | None, folders: Folders, knobs: Knobs
) -> Evaluation:
    """Score the eval split: the baseline and the reranked ranking of the same retrieved candidates."""
    reranker = parts.reranker
    key = fit.finetune_id if fit else reranker.score_key()
    scorer = CachedScores(reranker, key, folders.scores_dir) if key and reranker.reorders else reranker
    results = run_queries(
        splits.eval, vectors.eval, parts.retrieval, scorer if reranker.reorders else None, progress=knobs.progress
    )
    summary = summarize(results, resamples=knobs.bootstrap_resamples, seed=knobs.seed)
    if isinstance(scorer, CachedScores):
        return Evaluation(results, summary, scored_pairs=scorer.misses, cached_pairs=scorer.hits)
    return Evaluation(results, summary)


def run_experiment(parts: Components, knobs: Knobs, folders: Folders, config: Mapping[str, Any]) -> RunOutcome:
    """Run one experiment, write its folder, then record it in every tracker.

    Args:
        config: the resolved config with secrets removed; saved as ``config.json`` and tracked as params.

    Raises:
        UserError: a bad file or option; raised before anything is written or recorded.
    """
    watch = _Stopwatch()
    started = time.perf_counter()
    splits = load_data(parts, knobs)
    watch.lap("load", started)
    name = run_name(parts, knobs)
    params = flatten(
        {
            **config,
            "dataset_digest": splits.digest(),
            "embedder_identity": parts.embedder.identity(),
            "miner_config": parts.miner.config_dict(),
            "reranker_config": parts.reranker.config_dict(),
            "eval_in_train": eval_in_train(splits),
        }
    )
    try:
        outcome = _run_steps(parts, knobs, folders, config, splits, watch, name, params)
    except UserError:
        raise
    except BaseException as error:
        _track_failure(parts.trackers, name, params, error)
        raise
    _track(parts.trackers, outcome)
    return outcome


def _run_steps(
    parts: Components,
    knobs: Knobs,
    folders: Folders,
    config: Mapping[str, Any],
    splits: DatasetSplits,
    watch: _Stopwatch,
    name: str,
    params: dict[str, object],
) -> RunOutcome:
    folders.output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(folders.output_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")

    started = time.perf_counter()
    vectors = embed(parts.embedder, parts.retrieval, splits)
    watch.lap("embed", started)

    started = time.perf_counter()
    parts.retrieval.build(splits.categories, vectors.categories, model_key=sha256_json(parts.embedder.identity()))
    watch.lap("index", started)

    started = time.perf_counter()
    finetune_set = mine(parts.miner, splits, vectors, knobs)
    write_atomic(folders.output_dir / "finetune.jsonl", finetune_set.to_jsonl())
    watch.lap("mine", started)

    started = time.perf_counter()
    fit = parts.reranker.fit(finetune_set, folders.models_dir, knobs.seed)
    watch.lap("fit", started)

    started = time.perf_counter()
    evaluation = evaluate(parts, splits, vectors, fit, folders, knobs)
    watch.lap("evaluate", started)

    table = format_table(evaluation.summary, reranker_label=parts.reranker.name)
    outcome = RunOutcome(name, folders.output_dir, params, splits, finetune_set, fit, evaluation, table, watch.timings)
    _write_outputs(outcome)
    return outcome


def _write_outputs(outcome: RunOutcome) -> None:
    folder, fit, splits, evaluation = outcome.output_dir, outcome.fit, outcome.splits, outcome.evaluation
    write_atomic(folder / "per_query.jsonl", "".join(json.dumps(r.row()) + "\n" for r in evaluation.results))
    write_atomic(folder / "table.txt", outcome.table + "\n")
    metrics = {
        "dataset": {
            "name": splits.name,
            "digest": splits.digest(),
            "train": len(splits.train),
            "eval": len(splits.eval),
            "categories": len(splits.categories),
        },
        "finetune_set": {
            "items": len(outcome.finetune_set),
            "digest": outcome.finetune_set.digest(),
            "fill_notes": outcome.finetune_set.fill_notes,
        },
        "finetune_id": fit.finetune_id if fit else None,
        "fit": None
        if fit is None
        else {
            "reused": fit.reused,
            "train_seconds": fit.train_seconds,
            "train_pairs": fit.train_pairs,
            **fit.extra,
            "loss_history": fit.loss_history,
        },
        "metrics": evaluation.summary.as_dict(),
        "scored_pairs": evaluation.scored_pairs,
        "cached_pairs": evaluation.cached_pairs,
        "timings": outcome.timings,
    }
    # Last, so a run folder with metrics.json is a complete one.
    write_atomic(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")


# Tracking: the one place that talks to the trackers.


def _track(trackers: Trackers, outcome: RunOutcome) -> None:
    """Record a finished run: params, inputs, metrics, per-query rows, the fine-tune id and the run folder."""
    fit, finetune_set = outcome.fit, outcome.finetune_set
    extras = {
        "finetune_items": float(len(finetune_set)),
        **{key: float(value) for key, value in finetune_set.fill_notes.items()},
        **{key: float(value) for key, value in outcome.timings.items()},
    }
    tags = {
        "experiments.run_uid": uuid.uuid4().hex,
        "finetune_set_digest": finetune_set.digest(),
        "dataset_digest": outcome.splits.digest(),
        **({"finetune_id": fit.finetune_id} if fit else {}),
    }
    run = TrackedRun(
        name=outcome.run_name,
        params=outcome.params,
        tags=tags,
        metrics=run_metrics(outcome.summary, extras),
        splits=outcome.splits,
        finetune_set=finetune_set,
        summary=outcome.summary,
        results=outcome.evaluation.results,
        finetune_id=fit.finetune_id if fit else None,
        run_folder=outcome.output_dir,
        artifacts=outcome.output_dir,
    )
    trackers.log_run(run)


def _track_failure(trackers: Trackers, name: str, params: Mapping[str, object], error: BaseException) -> None:
    """Record a run that failed after validation, with its params and the reason, as FAILED (KILLED when it was
    stopped: SIGTERM or Ctrl-C)."""
    status = "FAILED" if isinstance(error, Exception) else "KILLED"
    reason = redact(f"{type(error).__name__}: {error}")
    trackers.log_failure(FailedRun(name=name, params=params, error=reason, status=status))
