"""One run, as a short sequence of named steps.

data → embed → index → mine (train only) → fine-tuning set → fit reranker → evaluate (with and without the
reranker, on the eval split only) → write the run folder → track. Each step takes and returns plain records, so
it can be tested alone; the components arrive already built (``run.py`` instantiates them from config).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.datasets.base import Dataset
from experiments.embedders.base import Embedder
from experiments.evaluation.evaluate import QueryResult, Summary, run_queries, summarize
from experiments.index import CategoryIndex
from experiments.miners.base import Miner, MiningContext, check_knobs
from experiments.records import DatasetSplits, FinetuneSet, sha256_json
from experiments.report import format_table
from experiments.rerankers.base import FitResult, Reranker
from experiments.rerankers.cached import CachedScores
from experiments.rerankers.lancedb_adapter import LanceDBReranker
from experiments.tracking.base import Tracker, flatten

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Knobs:
    """The settings users type at the top level of ``conf/config.yaml``."""

    k: int = 4
    duplication: int = 2
    seed: int = 42
    bootstrap_resamples: int = 1000
    progress: bool = True


@dataclass
class RunOutcome:
    """What a run produced; ``summary`` holds the numbers, ``output_dir`` the files."""

    output_dir: Path
    summary: Summary
    finetune_set: FinetuneSet
    fit: FitResult | None
    table: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def primary_metric(self) -> float:
        """What a sweeper optimises: the reranked ``mrr@1``."""
        return self.summary.systems["reranker"]["mrr@1"].mean


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def lap(self, name: str, started: float) -> None:
        self.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name and rename, so a killed run never leaves a complete-looking file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _with_score_cache(reranker: Reranker, fit: FitResult | None, cache_dir: Path) -> Reranker:
    """The reranker behind a score cache keyed by what its scores depend on, when that is known."""
    key = fit.finetune_id if fit else reranker.score_key()
    return CachedScores(reranker, key, cache_dir) if key and reranker.reorders else reranker


def _leaked(splits: DatasetSplits) -> int:
    train_inputs = {example.input for example in splits.train}
    return sum(1 for example in splits.eval if example.input in train_inputs)


@dataclass(frozen=True)
class Components:
    """The built parts of one run (``run.py`` instantiates them from the config groups)."""

    dataset: Dataset
    embedder: Embedder
    index: CategoryIndex
    miner: Miner
    reranker: Reranker
    tracker: Tracker


@dataclass(frozen=True)
class Folders:
    """Where a run writes: its own folder, and the caches shared across runs (keyed by content)."""

    output_dir: Path
    models_dir: Path
    scores_dir: Path


def run_experiment(parts: Components, knobs: Knobs, folders: Folders, config: Mapping[str, Any]) -> RunOutcome:
    """Run one experiment and write its folder (see DESIGN.md's output contract).

    Args:
        config: the resolved config with secrets removed; saved and tracked as params.

    Raises:
        UserError: a bad file or option; raised before the tracker records anything.
    """
    watch = _Stopwatch()
    folders.output_dir.mkdir(parents=True, exist_ok=True)

    # 1. Data: every file is validated and every knob checked before anything is recorded.
    started = time.perf_counter()
    splits = parts.dataset.load()
    check_knobs(knobs.k, knobs.duplication, len(splits.categories))
    parts.embedder.identity()  # resolves and fingerprints the model: a bad model path fails here, before tracking
    leaked = _leaked(splits)
    if leaked:
        log.warning("%d eval queries also appear in the train split; their scores are optimistic", leaked)
    watch.lap("load", started)

    tracker = parts.tracker
    tracker.start(run_name=f"{parts.miner.name}-k{knobs.k}-d{knobs.duplication}-{parts.reranker.name}", tags={})
    try:
        outcome = _run_steps(parts, knobs, folders, config, splits, watch, leaked)
    except BaseException:
        tracker.end(failed=True)
        raise
    tracker.end(failed=False)
    return outcome


def _run_steps(
    parts: Components,
    knobs: Knobs,
    folders: Folders,
    config: Mapping[str, Any],
    splits: DatasetSplits,
    watch: _Stopwatch,
    leaked: int,
) -> RunOutcome:
    embedder, index, miner, reranker, tracker = parts.embedder, parts.index, parts.miner, parts.reranker, parts.tracker
    output_dir = folders.output_dir
    components = {
        "dataset_digest": splits.digest(),
        "embedder_identity": embedder.identity(),
        "miner_config": miner.config_dict(),
        "reranker_config": reranker.config_dict(),
        "eval_in_train": leaked,
    }
    tracker.log_params(flatten({**config, **components}))
    (output_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    # 2. Embed categories and queries (cached on disk by model and text).
    started = time.perf_counter()
    documents = index.documents(splits.categories)
    category_vectors = embedder.encode(documents)
    train_vectors = embedder.encode([example.input for example in splits.train])
    eval_vectors = embedder.encode([example.input for example in splits.eval])
    watch.lap("embed", started)

    # 3. Index the categories in LanceDB.
    started = time.perf_counter()
    index.build(splits.categories, category_vectors, model_key=sha256_json(embedder.identity()))
    watch.lap("index", started)

    # 4-5. Mine hard negatives from the train split only, and write the fine-tuning set.
    started = time.perf_counter()
    context = MiningContext(
        examples=splits.train,
        labels=splits.category_names,
        documents=documents,
        category_vectors=category_vectors,
        query_vectors=train_vectors,
    )
    finetune_set = miner.mine(context, knobs.k, knobs.duplication, knobs.seed)
    _write_atomic(output_dir / "finetune.jsonl", finetune_set.to_jsonl())
    watch.lap("mine", started)

    # 6. Fit the reranker (or reuse the model stored under the same fine-tune id).
    started = time.perf_counter()
    fit = reranker.fit(finetune_set, folders.models_dir, knobs.seed)
    watch.lap("fit", started)

    # 7. Evaluate on the eval split: the baseline and the reranked ranking of the same queries.
    started = time.perf_counter()
    scorer = _with_score_cache(reranker, fit, folders.scores_dir)
    adapter = LanceDBReranker(scorer) if reranker.reorders else None
    results = run_queries(splits.eval, eval_vectors, index, adapter, progress=knobs.progress)
    if isinstance(scorer, CachedScores):
        watch.timings["scored_pairs"] = scorer.misses
        watch.timings["cached_pairs"] = scorer.hits
    summary = summarize(results, resamples=knobs.bootstrap_resamples, seed=knobs.seed)
    watch.lap("evaluate", started)

    table = format_table(summary, reranker_label=reranker.name)
    outcome = RunOutcome(output_dir, summary, finetune_set, fit, table, watch.timings)
    _write_outputs(outcome, results, splits)

    # 8. Track: inputs, metrics, the fine-tune id, and the whole run folder as artifacts.
    tracker.log_inputs(splits, finetune_set)
    extras = {
        "finetune_items": float(len(finetune_set)),
        **{key: float(value) for key, value in finetune_set.fill_notes.items()},
        **{key: float(value) for key, value in watch.timings.items()},
    }
    tracker.log_results(summary, extras)
    tracker.set_tags(
        {
            "finetune_set_digest": finetune_set.digest(),
            "dataset_digest": splits.digest(),
            **({"finetune_id": fit.finetune_id} if fit else {}),
        }
    )
    tracker.log_artifacts(output_dir)
    return outcome


def _write_outputs(outcome: RunOutcome, results: list[QueryResult], splits: DatasetSplits) -> None:
    folder = outcome.output_dir
    fit = outcome.fit
    _write_atomic(folder / "per_query.jsonl", "".join(json.dumps(r.row()) + "\n" for r in results))
    _write_atomic(folder / "table.txt", outcome.table + "\n")
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
        },
        "metrics": outcome.summary.as_dict(),
        "timings": outcome.timings,
    }
    # Last, so a run folder with metrics.json is a complete one.
    _write_atomic(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
