"""End to end over the real configs: every miner × every reranker, tracking, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONF, SERVICES, TRAINED

from experiments import app
from experiments.errors import UserError

MINERS = sorted(path.stem for path in (CONF / "miner").glob("*.yaml"))
#: Rerankers that call a paid service run against local fake servers in test_services.py.
RERANKERS = sorted(path.stem for path in (CONF / "reranker").glob("*.yaml") if path.stem not in SERVICES)


def run_dir(tmp_path: Path, name: str = "run") -> Path:
    return tmp_path / "outputs" / "runs" / name


@pytest.mark.parametrize("reranker", RERANKERS)
@pytest.mark.parametrize("miner", MINERS)
def test_every_miner_with_every_reranker(make_cfg, tmp_path, miner, reranker):
    # Every reranker's categoriser is packaged and logged once (with the first miner); tests/test_serving.py checks it.
    log_model = f"log_model={miner == MINERS[0]}"
    outcome = app.run(make_cfg(f"miner={miner}", log_model, reranker=reranker), run_dir(tmp_path))
    folder = outcome.output_dir
    for name in ("config.json", "finetune.jsonl", "metrics.json", "per_query.jsonl", "table.txt"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["finetune_set"]["items"] == 90 * 2
    assert metrics["metrics"]["n_queries"] == 30
    for system in ("baseline", "reranker"):
        for name in ("recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5"):
            value = metrics["metrics"][system][name]
            assert 0.0 <= value["ci_low"] <= value["mean"] <= value["ci_high"] <= 1.0
    assert (metrics["finetune_id"] is not None) == (reranker in TRAINED)
    rows = [json.loads(line) for line in (folder / "per_query.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and len(rows[0]["reranked_top"]) == 5
    for line in (folder / "finetune.jsonl").read_text().splitlines():
        item = json.loads(line)
        assert len(item["hard_negatives"]) == 3
        assert not set(item["hard_negatives"]) & set(item["relevant_passages"])


def test_baseline_matches_an_independent_ranking(make_cfg, tmp_path, tiny_model_dir, small_data):
    """The baseline (LanceDB search + metrics) agrees with plain numpy cosine ranking of the same embeddings."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    outcome = app.run(make_cfg(), run_dir(tmp_path))
    categories = json.loads(Path(small_data["categories.json"]).read_text())
    documents = [f"{c['category']}: {c['description']}" if c.get("description") else c["category"] for c in categories]
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    queries = [example.input for example in outcome.splits.eval]
    similarity = model.encode(queries, normalize_embeddings=True) @ model.encode(documents, normalize_embeddings=True).T
    hits = [
        categories[int(np.argmax(row))]["category"] in example.expected
        for row, example in zip(similarity, outcome.splits.eval, strict=True)
    ]
    assert outcome.summary.baseline["mrr@1"].mean == pytest.approx(np.mean(hits), abs=1e-9)
    # reranker=none reports that same ranking as the "reranker" row
    assert outcome.summary.reranker["mrr@1"].mean == pytest.approx(np.mean(hits), abs=1e-9)


def test_same_seed_same_finetune_set_and_metrics_without_caches(make_cfg, tmp_path):
    """Determinism, not caching: the second run trains its own model from scratch in an empty cache."""
    first = app.run(make_cfg("miner=random", reranker="cross_encoder_finetuned"), run_dir(tmp_path, "a"))
    second = app.run(
        make_cfg("miner=random", f"paths.cache_dir={tmp_path / 'other-cache'}", reranker="cross_encoder_finetuned"),
        run_dir(tmp_path, "b"),
    )
    assert second.fit is not None and not second.fit.reused
    assert second.evaluation.cached_pairs == 0
    assert first.finetune_set.digest() == second.finetune_set.digest()
    assert first.fit is not None and first.fit.finetune_id == second.fit.finetune_id
    assert (first.summary.baseline, first.summary.reranker) == (second.summary.baseline, second.summary.reranker)
    assert first.summary.delta == second.summary.delta
    other = app.run(make_cfg("miner=random", "seed=7"), run_dir(tmp_path, "c"))
    assert other.finetune_set.digest() != first.finetune_set.digest()


def test_mlflow_run_holds_params_inputs_metrics_and_table(make_cfg, tmp_path):
    import mlflow

    outcome = app.run(make_cfg("miner=cosine", reranker="cross_encoder_finetuned"), run_dir(tmp_path))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    [run] = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.params["k"] == "3"
    params = run.data.params
    assert params["miner"] == "CosineMiner" and params["miner.rank_min"] == "1"  # (under Hydra: "cosine")
    assert params["reranker"] == "FinetunedCrossEncoder" and params["reranker.loss"] == "bce"
    assert not [
        key for key in params if "_target_" in key or "_config." in key or key.startswith(("paths", "trackers"))
    ]
    assert len(params) < 45
    metric_history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [point.step for point in metric_history] == [step for step, _ in outcome.fit.loss_history]
    assert len(run.data.metrics) <= 60 and "load_s" not in run.data.metrics
    experiment = mlflow.get_experiment_by_name("reranker-finetuning")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.experiment.primaryMetric.name"] == "mrr_at_1"
    view = json.loads(experiment.tags["mlflow.sharedViewState.headline"])
    assert view["orderByKey"] == "metrics.`mrr_at_1`" and "params.`miner`" in view["selectedColumns"]
    assert run.data.tags["finetune_id"] == outcome.fit.finetune_id
    for name in ("recall_at_1", "mrr_at_5", "baseline_mrr_at_1", "delta_mrr_at_1_ci_low", "mrr_at_1_ci_high"):
        assert name in run.data.metrics, name
    assert run.data.metrics["mrr_at_1"] == pytest.approx(outcome.summary.reranker["mrr@1"].mean)
    contexts = {dataset_input.tags[0].value for dataset_input in run.inputs.dataset_inputs}
    assert contexts == {"train", "eval", "training"}
    digests = {dataset_input.dataset.name: dataset_input.dataset.digest for dataset_input in run.inputs.dataset_inputs}
    assert digests["finetune-set"] == outcome.finetune_set.digest()[:32]
    artifacts = {artifact.path for artifact in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"metric_table.json", "metrics.json", "finetune.jsonl", "per_query.jsonl"} <= artifacts


def test_a_failing_run_is_marked_failed(make_cfg, tmp_path, monkeypatch):
    import mlflow

    from experiments.miners.cosine import CosineMiner

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(CosineMiner, "mine", explode)
    with pytest.raises(RuntimeError, match="boom"):
        app.run(make_cfg("miner=cosine"), run_dir(tmp_path))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    [run] = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    assert run.info.status == "FAILED"
    assert not (run_dir(tmp_path) / "metrics.json").exists()


def test_bad_file_stops_before_any_run_is_recorded(make_cfg, tmp_path, small_data):
    Path(small_data["train.jsonl"]).write_text('{"input": "q", "expected": []}\n')
    with pytest.raises(UserError, match=r"train.jsonl:1: expected:"):
        app.run(make_cfg(), run_dir(tmp_path))
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [("k=-1", "k=-1"), ("k=99", "k=99"), ("duplication=0", "duplication=0"), ("miner.rank_min=0", "rank_min")],
)
def test_bad_knobs_are_user_errors(make_cfg, tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        app.run(make_cfg("miner=cosine", override), run_dir(tmp_path))
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_a_small_candidate_pool_caps_recall_and_says_so(make_cfg, tmp_path):
    outcome = app.run(
        make_cfg("retrieval.top_k=3", "retrieval.search_above=0", reranker="bi_encoder_finetuned"), run_dir(tmp_path)
    )
    ceiling = outcome.summary.candidate_recall
    assert ceiling < 1.0
    assert outcome.summary.reranker["recall@5"].mean <= ceiling + 1e-9
    assert "raise retrieval.top_k" in outcome.table
    rows = [json.loads(line) for line in (outcome.output_dir / "per_query.jsonl").read_text().splitlines()]
    assert all(len(row["baseline_top"]) == 3 for row in rows)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("k=abc", "k='abc': Input should be a valid integer"),
        ("k=2.5", "k=2.5: Input should be a valid integer, got a number with a fractional part"),
        ("duplication=abc", "duplication='abc'"),
        ("seed=abc", "seed='abc'"),
        ("evaluation.bootstrap_resamples=0", "evaluation.bootstrap_resamples=0: Input should be greater than"),
        ("evaluation.bootstrap_resamples=abc", "evaluation.bootstrap_resamples='abc'"),
        ("optimized_metric=ndcg@10", "optimized_metric='ndcg@10'"),
        ("reranker.learning_rate=abc", "reranker.learning_rate='abc': Input should be a valid number"),
        ("reranker.batch_size=2.5", "reranker.batch_size=2.5"),
        ("miner.n_clusters=many", "miner.n_clusters='many'"),
    ],
)
def test_mistyped_knobs_are_one_line_errors_before_anything_is_made(make_cfg, tmp_path, override, message):
    with pytest.raises(UserError) as caught:
        app.run(make_cfg(override, reranker="bi_encoder_finetuned"), run_dir(tmp_path))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not (tmp_path / "outputs" / "cache").exists()
    assert not run_dir(tmp_path).exists()


def test_a_warm_rerun_loads_neither_torch_nor_lancedb_nor_scikit_learn(make_cfg, tmp_path):
    """Everything cached (model, embeddings, scores, clustering): the rerun, tracked in MLflow and logging its model,
    imports none of the three (about 4 s of an 9 s warm rerun on two cores before), and reports the same table."""
    import subprocess
    import sys

    from omegaconf import OmegaConf

    cfg = make_cfg("miner=kmeans", reranker="bi_encoder_finetuned")
    first = app.run(cfg, run_dir(tmp_path, "a"))
    OmegaConf.save(cfg, tmp_path / "config.yaml")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from omegaconf import OmegaConf\n"
        "from experiments import app\n"
        "app.main(OmegaConf.load(sys.argv[1]), Path(sys.argv[2]))\n"
        "print('loaded:', sorted({'torch', 'lancedb', 'sklearn'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "config.yaml"), str(run_dir(tmp_path, "b"))],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    metrics = "\n".join(first.table.splitlines()[:8])  # the table less its latency line
    assert "(reused)" in done.stdout and metrics in done.stdout
    assert done.stdout.strip().endswith("loaded: []")


def test_a_warm_rerun_takes_every_score_from_the_cache(make_cfg, tmp_path):
    first = app.run(make_cfg("trackers=none", reranker="bi_encoder_finetuned"), run_dir(tmp_path, "a"))
    second = app.run(make_cfg("trackers=none", reranker="bi_encoder_finetuned"), run_dir(tmp_path, "b"))
    assert first.evaluation.scored_pairs and first.evaluation.cached_pairs == 0
    assert second.evaluation.scored_pairs == 0 and second.evaluation.cached_pairs == first.evaluation.scored_pairs
    assert (second.summary.baseline, second.summary.reranker) == (first.summary.baseline, first.summary.reranker)
