"""The console table: the embedding baseline and the reranker side by side, with deltas and intervals."""

from __future__ import annotations

from experiments.metrics import METRIC_NAMES
from experiments.records.run import Summary


def _relative(reranker: float, baseline: float) -> str:
    if baseline == 0:
        return "n/a"
    return f"{(reranker - baseline) / baseline:+.0%}"


def _latency(latency: dict[str, float], n_queries: int) -> str:
    measured = int(latency.get("measured_queries", n_queries))
    if "rerank_p50" not in latency:
        return "rerank latency not measured (every score came from the score cache)"
    timed = f" ({measured} of {n_queries} queries timed; the rest came from the score cache)"
    return f"rerank latency p50 {latency['rerank_p50']:.1f} ms, p95 {latency['rerank_p95']:.1f} ms per query" + (
        timed if measured < n_queries else ""
    )


def format_table(summary: Summary, reranker_label: str) -> str:
    """A fixed-width table, one row per metric; intervals are 95% bootstrap, the delta's is paired.

    A delta whose interval excludes 0 is marked ``*``: on this eval set the difference is unlikely to be noise.
    """
    header = ("metric", "embedding baseline", reranker_label, "delta (paired 95% CI)", "rel.")
    rows = [header]
    for name in METRIC_NAMES:
        baseline = summary.baseline[name]
        reranked = summary.reranker[name]
        delta = summary.delta[name]
        separated = "*" if delta.ci_low > 0 or delta.ci_high < 0 else " "
        rows.append(
            (
                name,
                baseline.cell(),
                reranked.cell(),
                delta.cell(signed=True) + separated,
                _relative(reranked.mean, baseline.mean),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(
        f"{summary.n_queries} eval queries; 95% bootstrap intervals; * = delta interval excludes 0; "
        + _latency(summary.latency_ms, summary.n_queries)
    )
    if summary.candidate_recall < 1.0:
        lines.append(
            f"candidates hold {summary.candidate_recall:.1%} of the expected labels: no reranker can recall more; "
            "raise retrieval.top_k (or retrieval.top_k=all: no first stage) to lift that ceiling"
        )
    return "\n".join(lines)
