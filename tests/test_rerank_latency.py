"""The rerank latency times the model, never the score cache: a rerun that reused every score says so."""

from __future__ import annotations

import json

import pytest

from experiments import app
from experiments.evaluation.evaluate import rerank_latency


def test_a_rerun_answered_from_the_score_cache_reports_no_latency(make_cfg, tmp_path):
    runs = tmp_path / "outputs" / "runs"
    first = app.run(make_cfg("trackers=none", reranker="bi_encoder_finetuned"), runs / "a")
    second = app.run(make_cfg("trackers=none", reranker="bi_encoder_finetuned"), runs / "b")
    assert first.summary.latency_ms["measured_queries"] == first.summary.n_queries
    assert first.summary.latency_ms["rerank_p50"] > 0 and "rerank latency p50" in first.table
    # Every score of the rerun came from the cache: no 0.0 ms, the latency is said to be unmeasured.
    assert second.evaluation.scored_pairs == 0
    assert second.summary.latency_ms == {"measured_queries": 0}
    assert "rerank latency not measured" in second.table and "p50" not in second.table
    record = json.loads((second.output_dir / "metrics.json").read_text())
    assert record["metrics"]["latency_ms"] == {"measured_queries": 0}
    rows = [json.loads(line) for line in (second.output_dir / "per_query.jsonl").read_text().splitlines()]
    assert rows and all(row["rerank_ms"] is None for row in rows)


def test_the_latency_is_taken_over_the_timed_queries_only():
    latency = rerank_latency([1.0, None, 3.0, None])
    assert latency["measured_queries"] == 2
    assert latency["rerank_p50"] == pytest.approx(2.0) and latency["rerank_mean"] == pytest.approx(2.0)
