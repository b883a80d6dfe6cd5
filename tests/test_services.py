"""Whole runs with the services: Cohere and Braintrust over real HTTP (local fake servers), trackers as a list,
failing trackers, and a canary key that must appear nowhere a run writes or sends."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from test_cli import run_cli, shrunk
from test_pipeline import run_dir

from experiments import app
from experiments.errors import UserError
from experiments.tracking.braintrust_tracker import ROWS_FILE
from experiments.tracking.trackers import TrackerFailed

CO_KEY = "co-canary-0d9be53a7e11"
BT_KEY = "bt-canary-6a41c2f08e93"
METRICS = {"recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5"}


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", CO_KEY)
    monkeypatch.setenv("BRAINTRUST_API_KEY", BT_KEY)


def mlflow_runs(tmp_path: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")


def assert_nowhere(secret: str, tmp_path: Path, texts: list[str]) -> None:
    """The secret is in no file under outputs/ (MLflow's store and artifacts included) and in none of ``texts``."""
    files = [path for path in (tmp_path / "outputs").rglob("*") if path.is_file()]
    assert len(files) > 10
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    for text in texts:
        assert secret not in text


def test_cohere_runs_tracked_in_mlflow_and_braintrust_leak_no_key(
    make_cfg, tmp_path, keys, fake_cohere, fake_braintrust, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    trackers = ["trackers=[mlflow,braintrust]", f"trackers.braintrust.app_url={fake_braintrust.url}"]
    cohere = [f"reranker.base_url={fake_cohere.url}"]
    outcome = app.run(make_cfg(*trackers, *cohere, reranker="cohere"), run_dir(tmp_path, "a"))
    first_requests = len(fake_cohere.calls("POST", "/v2/rerank"))
    assert first_requests == 30  # one per eval query (25 candidates fit one request)
    again = app.run(make_cfg(*trackers, *cohere, reranker="cohere"), run_dir(tmp_path, "b"))
    assert len(fake_cohere.calls("POST", "/v2/rerank")) == first_requests  # the rerun paid nothing
    assert (again.summary.baseline, again.summary.reranker) == (outcome.summary.baseline, outcome.summary.reranker)
    finetuned = app.run(
        make_cfg(*trackers, *cohere, "duplication=3", "reranker.poll_interval_s=0.01", reranker="cohere_finetuned"),
        run_dir(tmp_path, "c"),
    )
    assert finetuned.fit is not None and finetuned.fit.finetune_id in fake_cohere.finetunes

    # Braintrust received one experiment per run, one row per eval query
    assert [experiment["name"] for experiment in fake_braintrust.experiments] == [outcome.run_name] * 2 + [
        finetuned.run_name
    ]
    metadata = fake_braintrust.experiments[2]["metadata"]
    assert metadata["finetune_set_digest"] == finetuned.finetune_set.digest()
    assert metadata["dataset_digest"] == finetuned.splits.digest()
    assert metadata["params"]["reranker"] == "CohereFinetunedReranker"
    rows = [row for row in fake_braintrust.rows if row.get("experiment_id") == fake_braintrust.experiments[0]["id"]]
    per_query = [json.loads(line) for line in (outcome.output_dir / "per_query.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    by_input = {row["input"]: row for row in rows}
    for expected in per_query:
        row = by_input[expected["query"]]
        assert row["output"] == expected["reranked_top"] and row["expected"] == expected["expected"]
        assert row["scores"] == expected["reranker"] and set(row["scores"]) == METRICS
        assert row["metadata"] == {"baseline_top": expected["baseline_top"], "finetune_id": None}

    # MLflow has all three runs, complete
    runs = mlflow_runs(tmp_path)
    assert len(runs) == 3 and all(run.info.status == "FINISHED" for run in runs)

    # the canary keys are nowhere: files, MLflow params/tags, Braintrust payloads, logs, console
    captured = capsys.readouterr()
    payloads = [request.body.decode("utf-8", "replace") for request in fake_braintrust.requests]
    mlflow_values = [json.dumps({**run.data.params, **run.data.tags}) for run in runs]
    for secret in (CO_KEY, BT_KEY):
        assert_nowhere(secret, tmp_path, [*payloads, *mlflow_values, caplog.text, captured.out, captured.err])
    assert fake_cohere.calls("POST", "/v2/rerank")[0].headers["Authorization"] == f"Bearer {CO_KEY}"  # it was used


def test_without_a_key_braintrust_writes_its_rows_to_the_run_folder(make_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BRAINTRUST_API_KEY", raising=False)
    outcome = app.run(make_cfg("trackers=[braintrust]"), run_dir(tmp_path))
    rows = [json.loads(line) for line in (outcome.output_dir / ROWS_FILE).read_text().splitlines()]
    assert len(rows) == 30
    assert rows[0]["input"] == outcome.splits.eval[0].input and set(rows[0]["scores"]) == METRICS
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Braintrust")]
    assert "no BRAINTRUST_API_KEY" in line and str(outcome.output_dir / ROWS_FILE) in line
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # trackers=[braintrust]: MLflow is off


def test_no_trackers_record_nothing_but_the_folder(make_cfg, tmp_path):
    outcome = app.run(make_cfg("trackers=none"), run_dir(tmp_path))
    assert (outcome.output_dir / "metrics.json").is_file() and not (outcome.output_dir / ROWS_FILE).exists()
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_a_silent_braintrust_costs_its_timeout_and_mlflow_is_complete(make_cfg, tmp_path, keys, silent_server, capsys):
    cfg = make_cfg(
        "trackers=[braintrust,mlflow]",
        f"trackers.braintrust.app_url={silent_server.url}",
        "trackers.braintrust.timeout_s=2",
    )
    started = time.perf_counter()
    app.run(cfg, run_dir(tmp_path))
    assert time.perf_counter() - started < 60
    assert "warning: tracker braintrust failed (no answer within 2 s" in capsys.readouterr().err
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED" and "mrr_at_1" in run.data.metrics


def test_a_strict_tracker_fails_the_run_after_the_others_recorded_it(make_cfg, tmp_path, keys, silent_server):
    cfg = make_cfg(
        "trackers=[braintrust,mlflow]",
        f"trackers.braintrust.app_url={silent_server.url}",
        "trackers.braintrust.timeout_s=1",
        "trackers.braintrust.strict=true",
    )
    with pytest.raises(TrackerFailed, match=r"tracker braintrust failed .*trackers.braintrust.strict=true"):
        app.run(cfg, run_dir(tmp_path))
    assert (run_dir(tmp_path) / "metrics.json").is_file()
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED"


def test_a_broken_mlflow_loses_neither_the_folder_nor_braintrust(make_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BRAINTRUST_API_KEY", raising=False)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    cfg = make_cfg("trackers=[mlflow,braintrust]", f"trackers.mlflow.tracking_uri=sqlite:///{blocked}/mlflow.db")
    outcome = app.run(cfg, run_dir(tmp_path))
    assert "warning: tracker mlflow failed" in capsys.readouterr().err
    assert (outcome.output_dir / "metrics.json").is_file() and (outcome.output_dir / ROWS_FILE).is_file()


def test_braintrust_dataset_splits_rows_by_metadata_split(make_cfg, tmp_path, keys, fake_braintrust, small_data):
    for split, name in (("train", "train.jsonl"), ("eval", "eval.jsonl")):
        for number, line in enumerate(Path(small_data[name]).read_text().splitlines()):
            row = json.loads(line)
            example = {"input": f"{row['merchant_name']} {row['department']}", "expected": [row["expense_category"]]}
            fake_braintrust.dataset_events.append({"id": f"{split}-{number}", **example, "metadata": {"split": split}})
    fake_braintrust.dataset_events.append({"id": "x", "input": "q", "expected": ["Lodging"], "metadata": {}})
    dataset = [
        "dataset.project=fine-tuning",
        "dataset.name=Synthetic Transactions",
        f"dataset.app_url={fake_braintrust.url}",
        f"dataset.categories_path={small_data['categories.json']}",
    ]
    outcome = app.run(make_cfg("trackers=none", *dataset, dataset="braintrust"), run_dir(tmp_path))
    assert (len(outcome.splits.train), len(outcome.splits.eval)) == (90, 30)
    assert outcome.splits.name == "braintrust" and outcome.summary.n_queries == 30


def test_a_braintrust_dataset_without_the_split_is_a_user_error(make_cfg, tmp_path, keys, fake_braintrust):
    fake_braintrust.dataset_events = [{"id": "1", "input": "q", "expected": ["a"], "metadata": {"split": "test"}}]
    cfg = make_cfg(
        "dataset.project=p", "dataset.name=d", f"dataset.app_url={fake_braintrust.url}", dataset="braintrust"
    )
    with pytest.raises(UserError, match=r"braintrust:p/d: no rows with metadata.split='train'"):
        app.run(cfg, run_dir(tmp_path))


# --- the command line ---


def test_cohere_without_a_key_fails_before_any_work(tmp_path, tiny_model_dir, monkeypatch):
    for name in ("CO_API_KEY", "COHERE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), "reranker=cohere")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: reranker: reranker=cohere needs an API key: export CO_API_KEY=<your key> (or COHERE_API_KEY); "
        "keys are read from the environment only."
    ]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not list((tmp_path / "outputs").glob("runs/*/*/config.json"))
    assert not (tmp_path / "outputs" / "cache").exists()  # nothing embedded, no model loaded


@pytest.mark.parametrize("override", ["reranker.api_key=sk-live-123456", "+trackers.braintrust.api_key=sk-live-123456"])
def test_a_key_on_the_command_line_is_refused(tmp_path, override):
    completed = run_cli(f"paths.outputs_dir={tmp_path}", override)
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert "API keys are never taken from the config or the command line" in line and "export the key" in line
    assert not list(tmp_path.rglob("*"))  # not even Hydra's record of the overrides


def test_a_sweep_opens_its_parent_in_every_tracker(tmp_path, monkeypatch):
    import os

    from hydra import compose, initialize_config_dir
    from test_pipeline import CONF

    from experiments.tracking.sweep import SweepParents

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = [f"paths.outputs_dir={tmp_path / 'outputs'}", "trackers=[mlflow,braintrust]"]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    parents = SweepParents()
    parents.open(cfg)
    try:
        assert os.environ["EXPERIMENTS_PARENT_BRAINTRUST"].startswith("sweep ")
        parent_id = os.environ["EXPERIMENTS_PARENT_MLFLOW"]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            job = compose("config", overrides=overrides)
        assert job.trackers.mlflow.parent_run_id == parent_id
        assert job.trackers.braintrust.sweep == os.environ["EXPERIMENTS_PARENT_BRAINTRUST"]
    finally:
        parents.close(None, tmp_path)
    assert "EXPERIMENTS_PARENT_MLFLOW" not in os.environ and "EXPERIMENTS_PARENT_BRAINTRUST" not in os.environ
    [parent] = mlflow_runs(tmp_path)
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
