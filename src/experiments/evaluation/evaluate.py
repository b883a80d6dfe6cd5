"""Score eval queries with and without the reranker and aggregate with bootstrap intervals.

Every eval query is retrieved once by vector search; that candidate list in retrieval order is the embedding
baseline, and the reranker rescores exactly those candidates. So every run reports its delta against the
baseline on the same queries and the same candidates, and the rerank latency is the rescoring alone. When the
retriever has no first stage (``Retriever.limit`` is None: the candidates are every document), the search
returns every document for the baseline and the reranker scores every document in catalogue order, exactly as
the served categoriser does (it never embeds the query with the embedder then).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from experiments.evaluation.bootstrap import bootstrap_indices, estimate
from experiments.metrics import METRIC_NAMES, recall_at, score_query
from experiments.records import Example, RankedList, ranked_by
from experiments.records.run import QueryRecord, Summary

if TYPE_CHECKING:
    from experiments.rerankers.base import Reranker
    from experiments.retrieval.base import Retriever

SYSTEMS = ("baseline", "reranker")


@dataclass(frozen=True)
class QueryResult:
    """One eval query: both rankings, their metrics and the reranking latency (None when a cache answered)."""

    example: Example
    baseline: RankedList
    reranked: RankedList
    rerank_ms: float | None

    def metrics(self, system: str) -> dict[str, float]:
        ranking = self.baseline if system == "baseline" else self.reranked
        return score_query(ranking.labels, self.example.expected)

    def record(self, cut: int = 5) -> QueryRecord:
        """The query's row of ``per_query.jsonl``."""
        return QueryRecord(
            query=self.example.input,
            expected=self.example.expected,
            baseline_top=self.baseline.labels[:cut],
            baseline_scores=[round(score, 6) for score in self.baseline.scores[:cut]],
            reranked_top=self.reranked.labels[:cut],
            reranked_scores=[round(score, 6) for score in self.reranked.scores[:cut]],
            baseline=self.metrics("baseline"),
            reranker=self.metrics("reranker"),
            rerank_ms=None if self.rerank_ms is None else round(self.rerank_ms, 3),
        )


def run_queries(
    examples: Sequence[Example],
    vectors: np.ndarray,
    retriever: Retriever,
    reranker: Reranker | None,
    progress: bool = True,
) -> list[QueryResult]:
    """Retrieve every eval query once and, when ``reranker`` is given, rescore its candidates.

    All queries are retrieved first, so the reranker learns the whole workload (``Reranker.prepare``) before
    the first score: a paid service states and caps its requests before spending any.

    Baseline scores are cosine similarities; reranked scores are the reranker's. ``rerank_ms`` times the
    rescoring of one query's candidates (the search is not counted); it is None when any of the query's scores
    came from the score cache (a rerun of the same model): that timing measured a look-up, not the model.
    """
    found = [retriever.search(vector) for vector in vectors]
    # No first stage: the reranker reads every document in catalogue order, not in the baseline's order, so
    # its ties break as in the served categoriser (which has no query vector to order them by).
    pools = (
        [(c.labels, c.texts) for c in found] if retriever.limit is not None else [retriever.catalogue()] * len(found)
    )
    if reranker is not None:
        reranker.prepare([(example.input, texts) for example, (_, texts) in zip(examples, pools, strict=True)])
    results: list[QueryResult] = []
    for example, candidates, (labels, texts) in tqdm(
        list(zip(examples, found, pools, strict=True)), desc="evaluate", disable=not progress, leave=False
    ):
        baseline = candidates.ranked()
        if reranker is None:
            results.append(QueryResult(example, baseline, baseline, 0.0))
            continue
        started = time.perf_counter()
        scores = reranker.score(example.input, texts)
        reranked = ranked_by(labels, scores)
        elapsed = (time.perf_counter() - started) * 1000.0
        results.append(QueryResult(example, baseline, reranked, None if reranker.last_cached else elapsed))
    return results


def rerank_latency(timings: Sequence[float | None]) -> dict[str, float]:
    """p50, p95 and mean of the timed rescorings, and how many were timed (``measured_queries``); without one
    timed (every score came from the cache) only the count, 0: a look-up is no latency of the model."""
    timed = np.array([ms for ms in timings if ms is not None])
    latency: dict[str, float] = {"measured_queries": len(timed)}
    if len(timed):
        latency.update(
            rerank_p50=float(np.percentile(timed, 50)),
            rerank_p95=float(np.percentile(timed, 95)),
            rerank_mean=float(timed.mean()),
        )
    return latency


def summarize(results: Sequence[QueryResult], resamples: int = 1000, seed: int = 0) -> Summary:
    """Means with percentile-bootstrap 95% intervals; the delta is paired (same resampled queries)."""
    indices = bootstrap_indices(len(results), resamples, seed)
    table = {}
    for system in SYSTEMS:
        scored = [result.metrics(system) for result in results]  # once per query, not once per metric
        table[system] = {name: np.array([metrics[name] for metrics in scored]) for name in METRIC_NAMES}
    systems = {
        system: {name: estimate(values, indices) for name, values in columns.items()}
        for system, columns in table.items()
    }
    delta = {name: estimate(table["reranker"][name] - table["baseline"][name], indices) for name in METRIC_NAMES}
    latency = rerank_latency([result.rerank_ms for result in results])
    ceiling = [recall_at(r.baseline.labels, r.example.expected, len(r.baseline.labels)) for r in results]
    return Summary(
        n_queries=len(results),
        baseline=systems["baseline"],
        reranker=systems["reranker"],
        delta=delta,
        latency_ms=latency,
        candidate_recall=float(np.mean(ceiling)) if ceiling else float("nan"),
    )
