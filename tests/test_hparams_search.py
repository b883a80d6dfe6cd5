"""hparams_search=optuna: a TPE search through Hydra that picks on validation, never eval, and resumes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def search_args(tmp_path: Path, tiny_model_dir: Path, data: Path, sweep: Path, trials: int) -> list[str]:
    return [
        str(ROOT / "run.py"),
        "-m",
        "hparams_search=optuna",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweep.dir={sweep}",
        # A tiny space: two miners, k and epochs; tiny data and model.
        "~hydra.sweeper.params.duplication",
        "~hydra.sweeper.params.reranker.learning_rate",
        # Quoted: Hydra refuses a sweep expression as a value of hydra.*, the sweeper parses the string itself.
        "hydra.sweeper.params.k='int(interval(1, 3))'",
        "hydra.sweeper.params.reranker.epochs='int(interval(1, 2))'",
        "hydra.sweeper.params.miner='choice(random, cosine)'",
        "duplication=1",
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={data / 'train.jsonl'}",
        f"dataset.eval_path={data / 'eval.jsonl'}",
        f"dataset.categories_path={data / 'categories.json'}",
        f"embedder.model={tiny_model_dir}",
        f"reranker.base_model={tiny_model_dir}",
        "reranker.batch_size=16",
        "log_model=false",
        "progress=false",
        "evaluation.bootstrap_resamples=50",
    ]


def write_data(folder: Path, poison_eval: bool = False) -> Path:
    from conftest import write_small_data

    write_small_data(folder)
    if poison_eval:  # every eval label wrong: a search that looked at eval would choose differently
        categories = [c["category"] for c in json.loads((folder / "categories.json").read_text())]
        rows = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()]
        for row in rows:
            row["expense_category"] = categories[(categories.index(row["expense_category"]) + 1) % len(categories)]
        (folder / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def run_search(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=900)


def trials(sweep: Path) -> list[dict]:
    return json.loads((sweep / "trials.json").read_text())


# KNOWN GAP: with the tiny random model every trial scores 0.0 on validation and on eval, so this test cannot tell a
# search that reads validation from one that reads eval (a red check that made the sweeper read eval still passed).
# It needs a model that learns something on the small data (the packaged MiniLM) and a space whose trials differ.
@pytest.mark.skip(reason="vacuous on the tiny model (all scores 0): cannot fail when the sweeper reads eval")
@pytest.mark.slow
def test_the_search_picks_on_validation_and_poisoned_eval_labels_do_not_move_it(tmp_path, tiny_model_dir):
    import mlflow

    clean_sweep, poisoned_sweep = tmp_path / "clean", tmp_path / "poisoned"
    clean = run_search(search_args(tmp_path, tiny_model_dir, write_data(tmp_path / "data"), clean_sweep, 4))
    assert clean.returncode == 0, clean.stderr[-3000:]
    report = json.loads((clean_sweep / "report.json").read_text())
    assert report["selection_split"] == "validation" and len(report["rows"]) == len(list(clean_sweep.glob("*/.hydra")))
    done = [t for t in trials(clean_sweep) if t["state"] == "COMPLETE"]
    for trial in done:  # the study was told each trial's validation score, never its eval score
        record = json.loads((Path(trial["run_folder"]) / "metrics.json").read_text())
        assert trial["validation"] == pytest.approx(record["validation"]["reranker"]["mrr@1"]["mean"])
    best = max(t["validation"] for t in done)
    assert report["winner_value"] == pytest.approx(best)
    # The winner is a best trial (several may tie on validation: the report breaks ties by its stated rule).
    assert report["winner_folder"] in {t["run_folder"] for t in done if t["validation"] == pytest.approx(best)}
    assert "sweep: 4/4 finished" in clean.stderr
    # Each trial is a child run of the sweep's parent, named by the searched knobs.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    [parent] = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    assert parent.info.run_name.endswith("miner x k x reranker.epochs")
    assert len([run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]) == 4

    poisoned_data = write_data(tmp_path / "poisoned-data", poison_eval=True)
    poisoned = run_search(search_args(tmp_path, tiny_model_dir, poisoned_data, poisoned_sweep, 4))
    assert poisoned.returncode == 0, poisoned.stderr[-3000:]
    again = json.loads((poisoned_sweep / "report.json").read_text())
    assert [t["params"] for t in trials(poisoned_sweep)] == [t["params"] for t in trials(clean_sweep)]
    assert [t["validation"] for t in trials(poisoned_sweep)] == [t["validation"] for t in trials(clean_sweep)]
    searched = ("miner", "k", "reranker.epochs")
    assert {key: again["winner_overrides"][key] for key in searched} == {
        key: report["winner_overrides"][key] for key in searched
    }
    assert again["winner_metrics"]["mrr@1"]["mean"] != report["winner_metrics"]["mrr@1"]["mean"]  # eval did change


@pytest.mark.slow
def test_a_killed_search_resumes(tmp_path, tiny_model_dir):
    sweep = tmp_path / "sweep"
    args = search_args(tmp_path, tiny_model_dir, write_data(tmp_path / "data"), sweep, 3)
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = sweep / "optuna.db"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:  # until one trial is complete
        if database.is_file() and sum(state == "COMPLETE" for _, state in trials_in(database)) >= 1:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    before = dict(trials_in(database))
    first = [number for number, state in before.items() if state == "COMPLETE"]
    killed = [number for number, state in before.items() if state == "RUNNING"]
    assert 1 <= len(first) < 3
    resumed = run_search(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {t["number"]: t for t in trials(sweep)}
    assert [t["state"] for t in after.values()].count("COMPLETE") == 3
    assert all(after[number]["state"] == "COMPLETE" for number in first)  # kept, not redone
    # Only the missing trials ran: the study is the old one plus 3 - len(first) new trials.
    assert len(after) == len(before) + 3 - len(first)
    for number in killed:  # a trial the kill interrupted is closed and asked again with the same parameters
        assert after[number]["state"] == "FAIL"
        assert any(t["params"] == after[number]["params"] for n, t in after.items() if n > max(before))


def trials_in(database: Path) -> list[tuple[int, str]]:
    """``(number, state)`` of every trial in the study's SQLite file (none while Optuna is still creating it)."""
    try:
        with sqlite3.connect(database) as connection:
            return list(connection.execute("select number, state from trials order by number"))
    except sqlite3.OperationalError:  # the tables do not exist yet
        return []
