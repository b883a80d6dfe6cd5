"""One run, as a short sequence of named steps.

data → embed → index → mine (train only) → fine-tuning set → fit reranker → evaluate (with and without the reranker,
on the eval split only) → package the categoriser → write the run folder (``run_folder.write_run``) → track
(``tracking.record.track``; the package is logged as the run's model). Each step takes and returns plain records
(``experiments.outcome``), so it can be tested alone; the components arrive already built (``experiments.app``
instantiates them from config). The trackers' run opens when the run starts and follows the training live
(``tracking.live``: best-effort, never waited on); the record itself is sent in one place, at the end, after the run
folder is complete, so a failing tracker never loses the folder. The files a run writes are described in
``docs/run-folder.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments import run_folder
from experiments.datasets.base import Dataset
from experiments.datasets.splits import eval_groups_in_train, eval_in_train, holdout
from experiments.embedders.base import Embedder
from experiments.errors import UserError
from experiments.evaluation.evaluate import run_queries, summarize
from experiments.evaluation.replicates import replicate_summary
from experiments.evaluation.table import format_table
from experiments.miners.base import Miner, MiningContext, check_knobs
from experiments.outcome import Embeddings, Evaluation, Folders, RunOutcome
from experiments.records import DatasetSplits, FinetuneSet, sha256_json
from experiments.rerankers.base import FitContext, FitProgress, FitResult, Holdout, Reranker
from experiments.rerankers.cached import CachedScores
from experiments.retrieval.base import Retriever
from experiments.retrieval.prototypes import category_documents
from experiments.schema import Knobs
from experiments.serving.package import CategoriserPackage
from experiments.tracking.base import diagnostic_tags, tracked_params
from experiments.tracking.live import start_live
from experiments.tracking.record import start_tags, track, track_failure
from experiments.tracking.trackers import Trackers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Components:
    """The built parts of one run (``experiments.app`` instantiates them from the config groups)."""

    dataset: Dataset
    embedder: Embedder
    retrieval: Retriever
    miner: Miner
    reranker: Reranker
    trackers: Trackers


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def lap(self, name: str, started: float) -> None:
        self.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)


#: The longest run name every MLflow store keeps (its SQL column is VARCHAR(250)).
MAX_RUN_NAME = 250


def run_name(
    parts: Components, knobs: Knobs, choices: Mapping[str, str] | None = None, option_knobs: Sequence[str] = ()
) -> str:
    """``cosine-k2-d2-bi_encoder_finetuned``: the chosen options' names (their class names without Hydra), then the
    options' own knobs set on the command line (``kmeans-k4-d2-bi_encoder_finetuned in_batch_negatives=false``)."""
    chosen = choices or {}
    miner, reranker = chosen.get("miner") or parts.miner.name, chosen.get("reranker") or parts.reranker.name
    name = " ".join([f"{miner}-k{knobs.k}-d{knobs.duplication}-{reranker}", *option_knobs])
    # MLflow's SQL stores keep a run name in 250 characters (PostgreSQL and MySQL refuse a longer one).
    return name if len(name) <= MAX_RUN_NAME else name[: MAX_RUN_NAME - 1] + "…"


# The steps, in order.


def load_data(parts: Components, knobs: Knobs) -> DatasetSplits:
    """Validate every file and the knobs bounded by the data (and fingerprint the embedding model) before any work."""
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


def embed(embedder: Embedder, retrieval: Retriever, splits: DatasetSplits) -> Embeddings:
    """Embed both splits' queries and the category documents (cached on disk by model and text)."""
    train = embedder.encode([example.input for example in splits.train])
    documents = category_documents(retrieval, splits, train, range(len(splits.train)))
    return Embeddings(
        documents=documents,
        categories=embedder.encode(documents),
        train=train,
        eval=embedder.encode([example.input for example in splits.eval]),
    )


#: Category documents and their vectors, when a validation fit has its own (``retrieval.prototypes``).
Documents = tuple[list[str], np.ndarray]


def mine(
    miner: Miner,
    splits: DatasetSplits,
    vectors: Embeddings,
    knobs: Knobs,
    keep: Sequence[int] | None = None,
    documents: Documents | None = None,
) -> FinetuneSet:
    """Hard negatives for the *train* split only (only the train positions ``keep``, when given; against
    ``documents`` instead of the run's, when given)."""
    rows = range(len(splits.train)) if keep is None else keep
    texts, category_vectors = documents or (vectors.documents, vectors.categories)
    context = MiningContext(
        examples=[splits.train[row] for row in rows],
        labels=splits.category_names,
        documents=texts,
        category_vectors=category_vectors,
        query_vectors=vectors.train[list(rows)],
    )
    return miner.mine(context, knobs.k, knobs.duplication, knobs.seed)


def fit_context(
    miner: Miner,
    splits: DatasetSplits,
    vectors: Embeddings,
    knobs: Knobs,
    held_out: set[int],
    documents: Documents | None = None,
    progress: FitProgress | None = None,
) -> FitContext:
    """The train examples, the category documents and the validation holdout (mined like the run's set, against
    ``documents`` when the validation fit has its own, built from its rows); the fit reports to ``progress``."""
    validation = None
    if held_out:
        keep = [row for row in range(len(splits.train)) if row not in held_out]
        validation = Holdout(
            fit_examples=[splits.train[row] for row in keep],
            fit_set=mine(miner, splits, vectors, knobs, keep, documents),
            examples=[splits.train[row] for row in sorted(held_out)],
            documents=dict(zip(splits.category_names, documents[0], strict=True)) if documents else None,
        )
    by_label = dict(zip(splits.category_names, vectors.documents, strict=True))
    return FitContext(examples=list(splits.train), documents=by_label, validation=validation, progress=progress)


def validation_documents(
    parts: Components, splits: DatasetSplits, vectors: Embeddings, held_out: set[int]
) -> Documents | None:
    """The validation fit's own documents and vectors when documents carry prototypes (drawn from its fit rows
    only, so no validation example appears in a document it is scored against); None: the run's."""
    if not held_out or not parts.retrieval.prototypes:
        return None
    keep = [row for row in range(len(splits.train)) if row not in held_out]
    documents = category_documents(parts.retrieval, splits, vectors.train, keep)
    return documents, parts.embedder.encode(documents)


def validation_holdout(splits: DatasetSplits, knobs: Knobs) -> set[int]:
    """Train positions held out for choices: whole groups, ``validation_fraction`` of train, seeded by the run."""
    if knobs.validation_fraction <= 0:
        return set()
    held = holdout(splits.train, splits.group_key, knobs.validation_fraction, knobs.seed)
    if not held:
        # Every label's last row must stay in the fit rows (one example per label, say): nothing can be held out.
        log.warning(
            "validation_fraction=%s holds out no train row (every label needs a row left to fit on): the reranker "
            "chooses nothing and keeps its configured setting; give it more rows per label.",
            knobs.validation_fraction,
        )
    return held


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
    embedder, reranker = parts.embedder.portable(), parts.reranker.portable()
    if embedder is None or reranker is None:
        log.warning("%s cannot be shipped as a model: no model is logged for this run", parts.reranker.name)
        return None
    return CategoriserPackage(
        categories=splits.categories,
        documents=vectors.documents,
        vectors=vectors.categories,
        top_k=parts.retrieval.limit,
        embedder=embedder,
        reranker=reranker,
        finetune_id=fit.finetune_id if fit else None,
        query_fields=splits.query_fields,
    )


def run_experiment(
    parts: Components,
    knobs: Knobs,
    folders: Folders,
    config: Mapping[str, Any],
    choices: Mapping[str, str] | None = None,
    option_knobs: Sequence[str] = (),
) -> RunOutcome:
    """Run one experiment, write its folder, then record it in every tracker.

    Args:
        config: the resolved config with secrets removed; saved as ``config.json``.
        choices: the option chosen per config group (``{"miner": "kmeans"}``), for short tracked params.
        option_knobs: the options' own knobs set on the command line (``epochs=1``), for the run's name.

    Raises:
        UserError: a bad file or option; raised before anything is written or recorded.
    """
    watch = _Stopwatch()
    started_at = time.time()
    started = time.perf_counter()
    splits = load_data(parts, knobs)
    watch.lap("load", started)
    name = run_name(parts, knobs, choices, option_knobs)
    params = tracked_params(config, choices)
    tags = {
        **diagnostic_tags(config),
        "embedder.weights_sha256": str(parts.embedder.identity().get("weights_sha256") or "")[:16],
        "eval_in_train": str(eval_in_train(splits)),
        "eval_groups_in_train": str(eval_groups_in_train(splits)),
        **start_tags(),
    }
    # The trackers' run opens now (RUNNING) and follows the training; it never waits on a tracker.
    live = start_live(parts.trackers, name, params, tags, started_at)
    try:
        outcome, record = _run_steps(parts, knobs, folders, config, splits, watch, name, params, live)
    except UserError:
        live.end("FAILED")
        raise
    except BaseException as error:
        track_failure(
            parts.trackers, name, params, error, folders.output_dir, tags=tags, started_at=started_at, live=live
        )
        raise
    outcome.tags, outcome.started_at, outcome.ended_at = tags, started_at, time.time()
    track(parts.trackers, outcome, record, live)
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
    progress: FitProgress | None = None,
) -> tuple[RunOutcome, run_folder.RunRecord]:
    folders.output_dir.mkdir(parents=True, exist_ok=True)
    run_folder.write_config(folders.output_dir, config)

    started = time.perf_counter()
    vectors = embed(parts.embedder, parts.retrieval, splits)
    watch.lap("embed", started)

    started = time.perf_counter()
    parts.retrieval.build(
        splits.categories, vectors.categories, sha256_json(parts.embedder.identity()), vectors.documents
    )
    watch.lap("index", started)

    # Carved, and given documents of its own when they carry prototypes, only when the reranker chooses on it; the
    # same for every seed.
    held_out = validation_holdout(splits, knobs) if parts.reranker.chooses_on_validation() else set()
    documents = validation_documents(parts, splits, vectors, held_out)
    # The run's own seed goes last, so the reranker is left holding the model the run folder reports; the stage
    # timings are that seed's too (the other seeds' laps go to a throwaway stopwatch).
    replicates = [
        _replicate(parts, splits, vectors, folders, knobs.model_copy(update={"seed": seed}), (held_out, documents))
        for seed in knobs.seeds()[:0:-1]
    ]
    finetune_set, fit, evaluation = _replicate(
        parts, splits, vectors, folders, knobs, (held_out, documents), watch, progress
    )
    run_folder.write_finetune_set(folders.output_dir, finetune_set)
    evaluations = [evaluation, *(replicate[2] for replicate in reversed(replicates))]
    fits = [fit, *(replicate[1] for replicate in reversed(replicates))]

    categoriser = package(parts, splits, vectors, fit) if knobs.log_model else None
    # The option as the user typed it (``bi_encoder_finetuned``), not its class (``FinetunedBiEncoder``).
    table = format_table(evaluation.summary, reranker_label=str(params.get("reranker") or parts.reranker.name))
    outcome = RunOutcome(
        name, folders.output_dir, params, splits, finetune_set, fit, evaluation, table, watch.timings, categoriser
    )
    if knobs.replicates > 1:
        outcome.replicates = replicate_summary(knobs.seeds(), [evaluation.summary for evaluation in evaluations], fits)
    return outcome, run_folder.write_run(outcome)


def _replicate(
    parts: Components,
    splits: DatasetSplits,
    vectors: Embeddings,
    folders: Folders,
    knobs: Knobs,
    validation: tuple[set[int], Documents | None],
    watch: _Stopwatch | None = None,
    progress: FitProgress | None = None,
) -> tuple[FinetuneSet, FitResult | None, Evaluation]:
    """Mine, fit and evaluate under ``knobs.seed`` (the validation holdout and its documents are the run's, the same
    for every seed; the laps go to ``watch``, the fit's loss and validation scores to ``progress``, when given:
    the run's own seed)."""
    watch = watch or _Stopwatch()
    started = time.perf_counter()
    finetune_set = mine(parts.miner, splits, vectors, knobs)
    context = fit_context(parts.miner, splits, vectors, knobs, *validation, progress=progress)
    watch.lap("mine", started)
    started = time.perf_counter()
    fit = parts.reranker.fit(finetune_set, folders.models_dir, knobs.seed, context)
    watch.lap("fit", started)
    started = time.perf_counter()
    evaluation = evaluate(parts, splits, vectors, fit, folders, knobs)
    watch.lap("evaluate", started)
    return finetune_set, fit, evaluation
