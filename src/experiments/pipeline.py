"""One run, as a short sequence of named steps.

data → embed → index → mine (train only) → fine-tuning set → fit reranker → evaluate (with and without the
reranker, on the eval split only) → package the categoriser → write the run folder → track (the package is
logged as the run's model). Each step takes and returns plain records, so
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from experiments.datasets.base import Dataset
from experiments.datasets.splits import eval_groups_in_train, holdout
from experiments.embedders.base import Embedder
from experiments.errors import ConfigError, UserError
from experiments.evaluation.evaluate import QueryResult, Summary, run_queries, summarize
from experiments.evaluation.metrics import METRIC_NAMES
from experiments.miners.base import Miner, MiningContext, check_knobs
from experiments.records import DatasetSplits, FinetuneSet, sha256_json
from experiments.report import format_table
from experiments.rerankers.base import FitContext, FitResult, Reranker, Validation
from experiments.rerankers.cached import CachedScores
from experiments.retrieval.base import Retriever
from experiments.secrets import redact
from experiments.serving.package import CategoriserPackage
from experiments.tracking.base import FailedRun, TrackedRun, metric_key, run_metrics, tracked_params
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
    #: Package the categoriser and log it as the run's model (``log_model=false`` skips it).
    log_model: bool = True
    #: Share of train (whole groups) held out for every choice a reranker makes; 0 = no validation split.
    validation_fraction: float = 0.2
    #: Mine-fit-evaluate under this many seeds (seed, seed + 1, ...); the run folder is the first seed's.
    replicates: int = 1

    def seeds(self) -> list[int]:
        return [self.seed + offset for offset in range(self.replicates)]


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
    categoriser: CategoriserPackage | None = None
    #: With ``replicates > 1``: ``{"n", "seeds", <metric>: {"mean", "sd", "values"}}`` of the reranked metrics.
    replicates: dict[str, Any] | None = None

    @property
    def summary(self) -> Summary:
        return self.evaluation.summary

    def metric(self, name: str) -> float:
        """The reranker's ``name`` (``mrr@1``): its mean over seeds when the run has replicates."""
        if self.replicates:
            return float(self.replicates[name]["mean"])
        return self.summary.systems["reranker"][name].mean


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
    if not 0 <= knobs.validation_fraction < 1:
        raise ConfigError(f"validation_fraction={knobs.validation_fraction} must be in [0, 1); 0 turns it off.")
    if knobs.replicates < 1:
        raise ConfigError(f"replicates={knobs.replicates} must be at least 1.")
    splits = parts.dataset.load()
    check_knobs(knobs.k, knobs.duplication, len(splits.categories))
    parts.embedder.identity()  # a bad model path fails here
    leaked = eval_in_train(splits)
    if leaked:
        log.warning("%d eval queries also appear in the train split; their scores are optimistic", leaked)
    shared = eval_groups_in_train(splits)
    if shared:
        log.warning(
            "%d of %d eval queries share a %s with the train split; their scores are optimistic for unseen %ss",
            shared,
            len(splits.eval),
            splits.group_key,
            splits.group_key,
        )
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


def mine(
    miner: Miner, splits: DatasetSplits, vectors: Embeddings, knobs: Knobs, keep: Sequence[int] | None = None
) -> FinetuneSet:
    """Hard negatives for the *train* split only (only the train positions ``keep``, when given)."""
    rows = range(len(splits.train)) if keep is None else keep
    context = MiningContext(
        examples=[splits.train[row] for row in rows],
        labels=splits.category_names,
        documents=vectors.documents,
        category_vectors=vectors.categories,
        query_vectors=vectors.train[list(rows)],
    )
    return miner.mine(context, knobs.k, knobs.duplication, knobs.seed)


def fit_context(
    miner: Miner, splits: DatasetSplits, vectors: Embeddings, knobs: Knobs, held_out: set[int]
) -> FitContext:
    """The train examples, the category documents and the validation holdout (mined like the run's set)."""
    validation = None
    if held_out:
        keep = [row for row in range(len(splits.train)) if row not in held_out]
        validation = Validation(
            fit_examples=[splits.train[row] for row in keep],
            fit_set=mine(miner, splits, vectors, knobs, keep),
            examples=[splits.train[row] for row in sorted(held_out)],
        )
    documents = dict(zip(splits.category_names, vectors.documents, strict=True))
    return FitContext(examples=list(splits.train), documents=documents, validation=validation)


def validation_holdout(splits: DatasetSplits, knobs: Knobs) -> set[int]:
    """Train positions held out for choices: whole groups, ``validation_fraction`` of train, seeded by the run."""
    if knobs.validation_fraction <= 0:
        return set()
    return holdout(splits.train, splits.group_key, knobs.validation_fraction, knobs.seed)


def evaluate(
    parts: Components, splits: DatasetSplits, vectors: Embeddings, fit: FitResult | None, folders: Folders, knobs: Knobs
) -> Evaluation:
    """Score the eval split: the baseline and the reranked ranking of the same retrieved candidates."""
    reranker = parts.reranker
    key = reranker.score_key() or (fit.finetune_id if fit else None)
    scorer = CachedScores(reranker, key, folders.scores_dir) if key and reranker.reorders else reranker
    results = run_queries(
        splits.eval, vectors.eval, parts.retrieval, scorer if reranker.reorders else None, progress=knobs.progress
    )
    summary = summarize(results, resamples=knobs.bootstrap_resamples, seed=knobs.seed)
    if isinstance(scorer, CachedScores):
        scorer.flush()
        return Evaluation(results, summary, scored_pairs=scorer.misses, cached_pairs=scorer.hits)
    return Evaluation(results, summary)


def package(
    parts: Components, splits: DatasetSplits, vectors: Embeddings, fit: FitResult | None
) -> CategoriserPackage | None:
    """The categoriser the evaluation measured, ready to ship: the categories and the vectors the index held,
    ``top_k``, and how to rebuild the embedder and the (fitted) reranker. None when a part cannot be shipped."""
    if splits.query_fields is not None:
        # The served categoriser formats transaction rows with all seven lines; it cannot yet apply a subset.
        log.warning("dataset.query_fields=%s cannot be shipped as a model: no model is logged", splits.query_fields)
        return None
    embedder, reranker = parts.embedder.portable(), parts.reranker.portable()
    if embedder is None or reranker is None:
        log.warning("%s cannot be shipped as a model: no model is logged for this run", parts.reranker.name)
        return None
    return CategoriserPackage(
        categories=splits.categories,
        documents=vectors.documents,
        vectors=vectors.categories,
        top_k=parts.retrieval.top_k,
        embedder=embedder,
        reranker=reranker,
        finetune_id=fit.finetune_id if fit else None,
    )


def run_experiment(
    parts: Components,
    knobs: Knobs,
    folders: Folders,
    config: Mapping[str, Any],
    choices: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Run one experiment, write its folder, then record it in every tracker.

    Args:
        config: the resolved config with secrets removed; saved as ``config.json``.
        choices: the option chosen per config group (``{"miner": "kmeans"}``), for short tracked params.

    Raises:
        UserError: a bad file or option; raised before anything is written or recorded.
    """
    watch = _Stopwatch()
    started = time.perf_counter()
    splits = load_data(parts, knobs)
    watch.lap("load", started)
    name = run_name(parts, knobs)
    params = {
        **tracked_params(config, choices),
        "embedder.weights_sha256": str(parts.embedder.identity().get("weights_sha256") or "")[:16] or None,
        "eval_in_train": eval_in_train(splits),
        "eval_groups_in_train": eval_groups_in_train(splits),
    }
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

    held_out = validation_holdout(splits, knobs)
    # The run's own seed goes last, so the reranker is left holding the model the run folder reports; the stage
    # timings are that seed's too (the other seeds' laps go to a throwaway stopwatch).
    replicates = [
        _replicate(parts, splits, vectors, folders, replace(knobs, seed=seed), held_out, _Stopwatch())
        for seed in knobs.seeds()[:0:-1]
    ]
    finetune_set, fit, evaluation = _replicate(parts, splits, vectors, folders, knobs, held_out, watch)
    write_atomic(folders.output_dir / "finetune.jsonl", finetune_set.to_jsonl())
    evaluations = [evaluation, *(replicate[2] for replicate in reversed(replicates))]

    categoriser = package(parts, splits, vectors, fit) if knobs.log_model else None
    table = format_table(evaluation.summary, reranker_label=parts.reranker.name)
    outcome = RunOutcome(
        name, folders.output_dir, params, splits, finetune_set, fit, evaluation, table, watch.timings, categoriser
    )
    if knobs.replicates > 1:
        outcome.replicates = replicate_summary(knobs.seeds(), evaluations)
    _write_outputs(outcome)
    return outcome


def _replicate(
    parts: Components,
    splits: DatasetSplits,
    vectors: Embeddings,
    folders: Folders,
    knobs: Knobs,
    held_out: set[int],
    watch: _Stopwatch,
) -> tuple[FinetuneSet, FitResult | None, Evaluation]:
    """Mine, fit and evaluate under ``knobs.seed`` (the validation holdout is the run's, the same for every seed)."""
    started = time.perf_counter()
    finetune_set = mine(parts.miner, splits, vectors, knobs)
    context = fit_context(parts.miner, splits, vectors, knobs, held_out)
    watch.lap("mine", started)
    started = time.perf_counter()
    fit = parts.reranker.fit(finetune_set, folders.models_dir, knobs.seed, context)
    watch.lap("fit", started)
    started = time.perf_counter()
    evaluation = evaluate(parts, splits, vectors, fit, folders, knobs)
    watch.lap("evaluate", started)
    return finetune_set, fit, evaluation


def replicate_summary(seeds: Sequence[int], evaluations: Sequence[Evaluation]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of every reranked metric, with the per-seed values."""
    block: dict[str, Any] = {"n": len(seeds), "seeds": list(seeds)}
    for name in METRIC_NAMES:
        values = [evaluation.summary.systems["reranker"][name].mean for evaluation in evaluations]
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        block[name] = {"mean": float(np.mean(values)), "sd": sd, "values": values}
    return block


def validation_block(selection: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The chosen setting's validation scores (``{"reranker": {"mrr@1": {"mean": ...}}, ...}``), when the
    reranker chose on the validation split (a model trained without it); what a sweep's report picks winners by."""
    if not selection or not selection.get("curve") or not selection.get("criterion"):
        return None
    chosen = selection.get("epochs", selection.get("weight"))
    for point in selection["curve"]:
        if point[0] == chosen:
            scores = dict(zip(selection["criterion"], point[1:], strict=True))
            return {
                "reranker": {name: {"mean": float(value)} for name, value in scores.items()},
                "queries": selection.get("validation_queries"),
                "chosen": chosen,
            }
    return None


def _write_outputs(outcome: RunOutcome) -> None:
    folder, fit, splits, evaluation = outcome.output_dir, outcome.fit, outcome.splits, outcome.evaluation
    validation = validation_block(fit.selection) if fit else None
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
            "selection": fit.selection,
        },
        "metrics": evaluation.summary.as_dict(),
        **({"validation": validation} if validation else {}),
        **({"replicates": outcome.replicates} if outcome.replicates else {}),
        "scored_pairs": evaluation.scored_pairs,
        "cached_pairs": evaluation.cached_pairs,
        "timings": outcome.timings,
    }
    # Last, so a run folder with metrics.json is a complete one.
    write_atomic(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")


# Tracking: the one place that talks to the trackers.


def _track(trackers: Trackers, outcome: RunOutcome) -> None:
    """Record a finished run: params, inputs, metrics, per-query rows, the fine-tune id, the run folder, and the
    categoriser as the run's model."""
    fit, finetune_set = outcome.fit, outcome.finetune_set
    extras = {
        **({"train_seconds": fit.train_seconds} if fit and not fit.reused else {}),
        **replicate_metrics(outcome.replicates),
    }
    tags = {
        "finetune_items": str(len(finetune_set)),
        **{key: str(value) for key, value in finetune_set.fill_notes.items()},
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
        loss_history=list(fit.loss_history) if fit else [],
        categoriser=outcome.categoriser,
    )
    trackers.log_run(run)


def replicate_metrics(replicates: Mapping[str, Any] | None) -> dict[str, float]:
    """``replicates_mrr_at_1_mean`` / ``_sd`` per metric, for trackers (empty without replicates)."""
    if not replicates:
        return {}
    return {
        f"replicates_{metric_key(name)}_{stat}": float(replicates[name][stat])
        for name in METRIC_NAMES
        for stat in ("mean", "sd")
    }


def _track_failure(trackers: Trackers, name: str, params: Mapping[str, object], error: BaseException) -> None:
    """Record a run that failed after validation, with its params and the reason, as FAILED (KILLED when it was
    stopped: SIGTERM or Ctrl-C)."""
    status = "FAILED" if isinstance(error, Exception) else "KILLED"
    reason = redact(f"{type(error).__name__}: {error}")
    trackers.log_failure(FailedRun(name=name, params=params, error=reason, status=status))
