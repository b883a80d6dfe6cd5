"""The Python API, and what MLflow shows of a run: its own times, knob-only params, a short name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import experiments
from experiments.errors import UserError


def small_overrides(tmp_path: Path, tiny_model_dir: Path, data: dict[str, str]) -> list[str]:
    return [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={data['train.jsonl']}",
        f"dataset.eval_path={data['eval.jsonl']}",
        f"dataset.categories_path={data['categories.json']}",
        f"embedder.model={tiny_model_dir}",
        "debug=fast",
    ]


@pytest.fixture
def api_run(tmp_path, tiny_model_dir, small_data, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EXPERIMENTS_PARENT_MLFLOW", raising=False)
    overrides = [*small_overrides(tmp_path, tiny_model_dir, small_data), "miner=cosine", "k=2", "reranker=none"]
    return experiments.run(overrides=overrides, output_dir=tmp_path / "run")


def test_the_api_returns_the_run_its_folder_and_its_model(api_run, tmp_path):
    import mlflow

    result = api_run
    assert result.run_folder == tmp_path / "run"
    record = json.loads((result.run_folder / "metrics.json").read_text())
    assert result.record.dataset.digest == record["dataset"]["digest"]
    assert result.metric == pytest.approx(record["metrics"]["reranker"]["mrr@1"]["mean"])
    assert result.metrics["mrr_at_1"] == result.metric
    assert "delta_mrr_at_1_ci_low" in result.metrics
    assert "mrr@1" in result.table
    assert result.mlflow_run_id and result.model_uri and result.model_uri.startswith("models:/")
    model = mlflow.pyfunc.load_model(result.model_uri)
    predicted = model.predict([{"input": result.outcome.splits.eval[0].input}])
    assert len(predicted["categories"][0]) == 5
    # MLflow warns once per process when it first sees the model's class: load it in a fresh one.
    load = (
        f"import mlflow; mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r}); "
        f"mlflow.pyfunc.load_model({result.model_uri!r})"
    )
    loaded = subprocess.run([sys.executable, "-W", "always", "-c", load], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "type hints" not in loaded.stderr


def test_the_api_leaves_no_hydra_state_behind(api_run):
    from hydra.core.hydra_config import HydraConfig

    assert not HydraConfig.initialized()  # a later app.run must not inherit this run's choices


def test_a_bad_option_is_a_user_error(tmp_path, tiny_model_dir, small_data):
    with pytest.raises(UserError, match=r"Could not find .miner/nope."):
        experiments.run([*small_overrides(tmp_path, tiny_model_dir, small_data), "miner=nope"])


def test_the_tracked_run_tells_the_truth(api_run):
    import mlflow

    folder = api_run.run_folder
    run = mlflow.get_run(api_run.mlflow_run_id)
    # Its name is the chosen options', not class names.
    assert run.info.run_name == "cosine-k2-d2-none"
    # Its times are the run's own: it started before its folder's first file and ended when metrics.json (the
    # folder's last file) was written, not when the recording (model upload included) finished.
    started, ended = run.info.start_time / 1000, run.info.end_time / 1000
    assert started <= (folder / "config.json").stat().st_mtime
    assert -0.002 <= ended - (folder / "metrics.json").stat().st_mtime < 0.5  # MLflow keeps milliseconds
    timings = json.loads((folder / "metrics.json").read_text())["timings"]
    assert ended - started >= sum(timings.values()) * 0.99
    # Params are exactly the knobs and the chosen options' own knobs.
    assert set(run.data.params) == {
        *("k", "duplication", "seed", "validation_fraction", "replicates", "evaluation.bootstrap_resamples"),
        *("dataset", "dataset.group_by", "dataset.query_fields"),
        *("embedder", "embedder.model", "embedder.batch_size"),
        *(
            "retrieval",
            "retrieval.top_k",
            "retrieval.with_descriptions",
            "retrieval.search_above",
            "retrieval.prototypes",
        ),
        *("miner", "miner.rank_min", "miner.rank_max", "miner.strict"),
        "reranker",
    }
    assert run.data.params["miner"] == "cosine"
    # Diagnostics are tags.
    tags = run.data.tags
    assert {"eval_in_train", "eval_groups_in_train", "embedder.weights_sha256", "dataset.train_path"} <= set(tags)
    assert tags["eval_in_train"] == "0"
    # The data's name says source, size and split.
    names = {d.tags[0].value: d.dataset.name for d in run.inputs.dataset_inputs}
    assert names["train"] == "jsonl train.jsonl 120 · train 90"
    assert names["eval"] == "jsonl eval.jsonl 120 · eval 30"


def test_a_run_name_shows_the_option_knobs_set_on_the_command_line(tmp_path):
    """Variants of one option differ in its knobs (the loss, the batches): the name shows them; paths and model
    references stay out, as they do from sweep folder names."""
    from types import SimpleNamespace

    from conftest import CONF
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from experiments.app import hydra_option_knobs
    from experiments.pipeline import run_name

    overrides = [
        "miner=kmeans",
        "reranker.in_batch_negatives=false",
        "dataset.query_fields=[name,card]",
        f"reranker.base_model={tmp_path}",
        f"embedder.model={tmp_path}",
        "evaluation.bootstrap_resamples=10",
        "k=3",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        named = hydra_option_knobs()
        assert named == ["in_batch_negatives=false", "query_fields=[name,card]"]
    finally:
        HydraConfig.instance().cfg = previous
    knobs, choices = SimpleNamespace(k=3, duplication=2), {"miner": "kmeans", "reranker": "bi_encoder_finetuned"}
    assert run_name(None, knobs, choices, named) == (  # type: ignore[arg-type]
        "kmeans-k3-d2-bi_encoder_finetuned in_batch_negatives=false query_fields=[name,card]"
    )
    assert run_name(None, knobs, choices) == "kmeans-k3-d2-bi_encoder_finetuned"  # type: ignore[arg-type]
    long = run_name(None, knobs, choices, [f"weights=[{','.join(['0.05'] * 200)}]"])  # type: ignore[arg-type]
    assert len(long) == 250 and long.startswith("kmeans-k3-d2-bi_encoder_finetuned weights=[0.05,") and long[-1] == "…"


def test_the_console_table_names_the_reranker_option_not_its_class(api_run):
    header = api_run.table.splitlines()[0].split()
    assert "none" in header and "NoReranker" not in header
