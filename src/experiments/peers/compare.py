"""Run the peers on the project's own data and write the comparison: one run folder per peer, and ``table.md``.

Steps, the project's own where they exist: compose (``conf/peer_comparison.yaml``: ``config.yaml`` and the peers) →
build the dataset, embedder and retriever (``app.build``) → load and check the data (``pipeline.load_data``) →
embed train, eval and the category documents (``pipeline.embed``: the project's documents, cached vectors) →
index → per peer: learn from train (``Peer.learn``), score the eval queries through the project's evaluation loop
(``evaluation.evaluate.run_queries`` + ``summarize``: the baseline column is the same embedding ranking as in
every project run), write a run folder (``run_folder.write_run``: ``metrics.json``, ``per_query.jsonl``,
``table.txt``; ``scripts/compare_runs.py`` reads it like a project run), then record it in the trackers
(``tracking.record.track``: one MLflow run per peer, named ``peer:<name>``, metrics under the project's names).
With a project run folder to compare with (``against``), each peer is paired with it on the same eval queries.

Selection hygiene: no peer chooses anything, and nothing but the report reads the eval split.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments import run_folder
from experiments.app import GROUPS, build, resolved
from experiments.errors import ConfigError, UserError
from experiments.evaluation.evaluate import run_queries, summarize
from experiments.evaluation.table import format_table
from experiments.files import write_atomic
from experiments.outcome import Embeddings, Evaluation, RunOutcome
from experiments.peers.base import Peer, TrainingData
from experiments.peers.results import Comparison, PeerRun, ProjectRun, read_project
from experiments.peers.table import markdown
from experiments.pipeline import Components, embed, load_data
from experiments.records import DatasetSplits, FinetuneSet, sha256_json
from experiments.rerankers.base import FitResult
from experiments.schema import Knobs, check_groups, read_knobs
from experiments.secrets import redact_logs, refuse_secret_options, scrub
from experiments.sweeps.stats import holm, paired_delta, sign_flip_p_value
from experiments.tracking.base import diagnostic_tags, tracked_params
from experiments.tracking.record import track
from experiments.tracking.trackers import Trackers

log = logging.getLogger(__name__)

#: The comparison's table, beside one folder per peer.
TABLE_FILE = "table.md"
#: What a peer's params are made of besides its own settings: the data, the embedder, the documents, the knobs.
PARAM_KEYS = ("dataset", "embedder", "retrieval", "seed", "k", "duplication", "evaluation")


def check_same_data(project: ProjectRun, splits: DatasetSplits) -> None:
    """Refuse a project run evaluated on other data or other queries than the peers will be."""
    if project.record.dataset.digest != splits.digest():
        raise UserError(
            f"{project.folder}: that run read other data ({project.record.dataset.name}, digest "
            f"{project.record.dataset.digest[:12]}) than these peers ({splits.name}, {splits.digest()[:12]}): give "
            "the peers the same dataset overrides as that run."
        )
    if [row.query for row in project.queries] != [example.input for example in splits.eval]:
        raise UserError(f"{project.folder}: that run was evaluated on other queries; nothing to pair.")


def check_project(project: ProjectRun, metric: str, seed: int) -> None:
    """Refuse a project run made with another seed, or whose per-query scores lack ``metric`` or are not numbers (a
    hand-edited or damaged ``per_query.jsonl``): nothing would pair."""
    config = run_folder.read_config(project.folder)
    ran = config.seed if config is not None else None
    if ran is not None and str(ran) != str(seed):
        raise UserError(
            f"{project.folder}: that run used seed={ran} and these peers seed={seed}: give the peers the run's seed."
        )
    path = project.folder / run_folder.PER_QUERY_FILE
    for number, row in enumerate(project.queries, start=1):
        value = row.reranker.get(metric)
        if value is None:
            raise UserError(f"{path}:{number}: reranker has no {metric}; rerun the experiment to rewrite it.")
        if not math.isfinite(value):
            raise UserError(f"{path}:{number}: reranker.{metric} is {value}, not a score; rerun the experiment.")


def run(cfg: DictConfig, choices: Mapping[str, str], against: Path | None = None) -> Comparison:
    """Run every chosen peer on the config's data and write the comparison folder (``peers_dir``).

    Raises:
        UserError: a bad option, file or project run folder; raised before any folder is written.
    """
    refuse_secret_options(OmegaConf.to_container(cfg, resolve=False))
    redact_logs()
    values = resolved(cfg)
    knobs = read_knobs(values)
    check_groups(values, (*GROUPS, "peers", "trackers"))
    chosen = values.get("against") if against is None else against
    project = read_project(Path(str(chosen))) if chosen else None
    if project is not None:
        check_project(project, knobs.optimized_metric, knobs.seed)
    parts = Components(**{group: build(cfg, group) for group in GROUPS}, trackers=Trackers(build(cfg, "trackers")))
    peers = _peers(build(cfg, "peers"))
    folder = _fresh_folder(Path(str(values["peers_dir"])))
    started_at = time.time()
    started = time.perf_counter()
    splits = load_data(parts, knobs)
    if project is not None:
        check_same_data(project, splits)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    vectors = embed(parts.embedder, parts.retrieval, splits)
    embed_s = time.perf_counter() - started
    parts.retrieval.build(
        splits.categories, vectors.categories, sha256_json(parts.embedder.identity()), vectors.documents
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"peers_dir={folder}: cannot be made ({error.strerror}): choose another folder.") from None
    config = scrub(values)
    run_folder.write_config(folder, config)
    data = TrainingData(
        examples=list(splits.train),
        labels=splits.category_names,
        documents=vectors.documents,
        vectors=vectors.train,
        document_vectors=vectors.categories,
        encode=parts.embedder.encode,
        seed=knobs.seed,
    )
    shared = _Shared(parts, knobs, splits, vectors, config, choices, {"load_s": load_s, "embed_s": embed_s})
    runs = [_run_peer(name, peer, data, folder / name, shared, started_at) for name, peer in peers.items()]
    metric = knobs.optimized_metric
    comparison = Comparison(folder, str(choices.get("dataset") or splits.name), knobs.seed, metric, runs, project)
    if project is not None:
        reference = np.array([row.reranker[metric] for row in project.queries])
        scores = [run.scores(metric, run_folder.read_queries(run.folder)) for run in runs]
        comparison = replace(
            comparison,
            deltas=[paired_delta(reference, values) for values in scores],
            p_values=holm([sign_flip_p_value(reference, values) for values in scores]),
        )
    write_atomic(folder / TABLE_FILE, markdown(comparison) + "\n")
    return comparison


def _peers(built: Any) -> dict[str, Peer]:
    peers = dict(built or {})
    if not peers:
        raise ConfigError("peers=[] chooses no peer: name at least one of conf/peers/ (e.g. peers=[setfit]).")
    for name, peer in peers.items():
        if not isinstance(peer, Peer):
            raise ConfigError(f"peers.{name}: {type(peer).__name__} is not a peer (experiments.peers.base.Peer).")
    return peers


def _fresh_folder(folder: Path) -> Path:
    """``folder``, refused when it already holds files (a comparison never writes over what it did not create)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"peers_dir={folder}: a file, not a folder: choose a new folder (peers_dir=<path>).")
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"peers_dir={folder} already holds files: choose a new folder (peers_dir=<path>).")
    existing = next(parent for parent in folder.parents if parent.exists())
    if not folder.exists() and not (existing.is_dir() and os.access(existing, os.W_OK)):
        raise UserError(f"peers_dir={folder}: {existing} is not a folder this user can write: choose another.")
    return folder


@dataclass(frozen=True)
class _Shared:
    """What every peer's run shares: the built parts, the data and its vectors, the config, the first stages'
    timings."""

    parts: Components
    knobs: Knobs
    splits: DatasetSplits
    vectors: Embeddings
    config: Mapping[str, Any]
    choices: Mapping[str, str]
    timings: Mapping[str, float]


def _run_peer(name: str, peer: Peer, data: TrainingData, folder: Path, shared: _Shared, started_at: float) -> PeerRun:
    """Learn, evaluate, write the peer's run folder, then record it in the trackers."""
    knobs, splits = shared.knobs, shared.splits
    log.info("peer:%s: learning from %d train examples", name, len(data.examples))
    fit = peer.learn(data)
    log.info(
        "peer:%s: %s; scoring %d eval queries",
        name,
        f"fit in {fit.seconds:.1f} s" if fit else "nothing to learn",
        len(splits.eval),
    )
    started = time.perf_counter()
    results = run_queries(
        splits.eval, shared.vectors.eval, shared.parts.retrieval, peer if peer.reorders else None, knobs.progress
    )
    summary = summarize(results, resamples=knobs.bootstrap_resamples, seed=knobs.seed)
    evaluate_s = time.perf_counter() - started
    settings = peer.settings()
    params = {
        **tracked_params({key: shared.config[key] for key in PARAM_KEYS if key in shared.config}, shared.choices),
        "reranker": f"peer:{name}",
        "peer": name,
        **{f"peer.{key}": value for key, value in settings.items()},
    }
    fit_result = None
    if fit is not None:
        identity = {"peer": name, "settings": settings, "data": splits.digest(), "seed": knobs.seed}
        fit_result = FitResult(
            finetune_id=f"peer-{name}-{sha256_json(identity)[:12]}",
            model_path=folder,
            reused=False,
            train_seconds=round(fit.seconds, 3),
            train_pairs=fit.pairs,
            extra={"peer": name, **settings, **fit.details},
            loss_history=fit.loss_history,
        )
    outcome = RunOutcome(
        run_name=f"peer:{name}",
        output_dir=folder,
        params=params,
        splits=splits,
        finetune_set=fit.finetune_set if fit is not None else FinetuneSet(items=[]),
        fit=fit_result,
        evaluation=Evaluation(results, summary),
        table=format_table(summary, reranker_label=f"peer:{name}"),
        timings={
            **{key: round(value, 3) for key, value in shared.timings.items()},
            "fit_s": round(fit.seconds if fit else 0.0, 3),
            "evaluate_s": round(evaluate_s, 3),
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    record = run_folder.write_run(outcome)
    outcome.tags = {
        **diagnostic_tags(shared.config),
        "peer": name,
        "peers_folder": str(folder.parent.resolve()),
        "embedder.weights_sha256": str(shared.parts.embedder.identity().get("weights_sha256") or "")[:16],
    }
    outcome.started_at, outcome.ended_at = started_at, time.time()
    track(shared.parts.trackers, outcome, record)
    return PeerRun(name, folder, record, fit, settings)
