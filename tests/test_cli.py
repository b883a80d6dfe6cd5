"""The real command line: one-line errors for user mistakes, and a sweep grouped under one MLflow parent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def shrunk(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    from experiments.datasets.synthetic import SyntheticTransactions

    data = tmp_path / "data"
    SyntheticTransactions(seed=0).write_jsonl(data)
    return [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={data / 'train.jsonl'}",
        f"dataset.eval_path={data / 'eval.jsonl'}",
        f"dataset.categories_path={data / 'categories.json'}",
        f"embedder.model={tiny_model_dir}",
        "evaluation.bootstrap_resamples=100",
        "progress=false",
    ]


def test_malformed_file_is_one_line_exit_2_and_no_run_recorded(tmp_path, tiny_model_dir):
    overrides = shrunk(tmp_path, tiny_model_dir)
    bad = tmp_path / "data" / "train.jsonl"
    lines = bad.read_text().splitlines()
    row = json.loads(lines[2])
    row["amount"] = "twelve"
    lines[2] = json.dumps(row)
    bad.write_text("\n".join(lines) + "\n")
    completed = run_cli(*overrides, "reranker=none")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        f"error: {bad}:3: amount: Input should be a valid number, unable to parse string as a number"
    )
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not list((tmp_path / "outputs").glob("runs/*/*/metrics.json"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("k=0", "error: k=0: the number of negatives per item must be at least 1"),
        ("miner.rank_min=9", "error: miner: CosineMiner: rank_min=9"),
        ("reranker.learning_rate=-1", "error: reranker: FinetunedBiEncoder: learning_rate=-1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, tiny_model_dir, override, expected):
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), "miner=cosine", "miner.rank_max=3", override)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines()[-1].startswith(expected)
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_sweep_runs_every_combination_under_one_parent(tmp_path, tiny_model_dir):
    import mlflow

    completed = run_cli("-m", *shrunk(tmp_path, tiny_model_dir), "reranker=none", "miner=random,cosine", "k=2,3")
    assert completed.returncode == 0, completed.stderr[-2000:]
    folders = sorted(path.parent.name for path in (tmp_path / "outputs" / "multirun").glob("*/*/*/metrics.json"))
    assert len(folders) == 4
    assert folders == [
        f"dataset=jsonl,evaluation.bootstrap_resamples=100,k={k},miner={miner},reranker=none"
        for k in (2, 3)
        for miner in ("cosine", "random")
    ]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    parents = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parents[0].info.run_id}
    assert all(run.info.status == "FINISHED" for run in runs)


def test_a_missing_required_option_is_named(tmp_path):
    completed = run_cli(f"paths.outputs_dir={tmp_path}", "dataset=jsonl", "dataset.eval_path=x.jsonl")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        "error: dataset.train_path is required: add dataset.train_path=<value> to the command line."
    )


def test_a_sweep_with_no_trackers_runs_without_a_parent(tmp_path, tiny_model_dir):
    completed = run_cli("-m", *shrunk(tmp_path, tiny_model_dir), "trackers=none", "reranker=none", "k=2,3")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr and "Error" not in completed.stderr
    assert len(list((tmp_path / "outputs" / "multirun").glob("*/*/*/metrics.json"))) == 2
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
