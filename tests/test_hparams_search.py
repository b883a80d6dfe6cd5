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


def job_result(folder: Path, status: str = "COMPLETED"):
    """What Hydra's launcher hands the sweeper for one finished trial."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(folder)}}})
    return SimpleNamespace(
        status=SimpleNamespace(name=status), hydra_cfg=hydra_cfg, cfg=OmegaConf.create({"optimized_metric": "mrr@1"})
    )


def test_the_search_is_told_the_validation_score_and_poisoned_eval_numbers_do_not_move_it(tmp_path):
    """A trial's value is its validation score: rewriting every eval number of its run folder changes nothing."""
    import shutil

    from hydra_plugins.experiments_optuna_sweeper.sweeper import validation_score

    folder = tmp_path / "trial"
    shutil.copytree(ROOT / "tests" / "data" / "run-folder-0.1", folder)
    record = json.loads((folder / "metrics.json").read_text())
    record["validation"]["reranker"]["mrr@1"]["mean"] = 0.25
    record["metrics"]["reranker"]["mrr@1"].update(mean=0.5, ci_low=0.4, ci_high=0.6)
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    assert validation_score(job_result(folder)) == pytest.approx(0.25)

    for system in ("baseline", "reranker", "delta"):  # poison eval: every eval number becomes 0.99
        for estimate in record["metrics"][system].values():
            estimate.update(mean=0.99, ci_low=0.99, ci_high=0.99)
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    assert validation_score(job_result(folder)) == pytest.approx(0.25)

    del record["validation"]  # a run that chose nothing on validation gives the search nothing, not its eval score
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    assert validation_score(job_result(folder)) is None
    assert validation_score(job_result(folder, status="FAILED")) is None


def test_resume_asks_again_only_trials_whose_job_was_launched():
    import optuna

    from hydra_plugins.experiments_optuna_sweeper.sweeper import resume

    study = optuna.create_study()
    launched_trial, choosing = study.ask(), study.ask()  # both left RUNNING by a kill
    launched_trial.suggest_int("k", 1, 8), launched_trial.suggest_categorical("miner", ["random", "cosine"])
    choosing.suggest_int("k", 1, 8)  # killed before its miner was chosen: its job never ran
    resume(study, ["k", "miner"])
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "WAITING"]
    again = study.ask()
    assert (again.suggest_int("k", 1, 8), again.suggest_categorical("miner", ["random", "cosine"])) == tuple(
        launched_trial.params.values()
    )


@pytest.mark.slow
def test_a_killed_search_resumes(tmp_path, tiny_model_dir):
    sweep = tmp_path / "sweep"
    args = search_args(tmp_path, tiny_model_dir, write_data(tmp_path / "data"), sweep, 3)
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = sweep / "optuna.db"
    deadline = time.monotonic() + 600
    # Until one trial is complete and the next one's job launched (its 3 knobs chosen; a trial killed while its
    # knobs are being chosen never ran, and is only closed).
    while time.monotonic() < deadline and process.poll() is None:
        if (
            database.is_file()
            and sum(state == "COMPLETE" for _, state in trials_in(database)) >= 1
            and launched(database)
        ):
            break
        time.sleep(0.2)
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


def launched(database: Path) -> bool:
    """Whether a RUNNING trial has all 3 knobs of the test's space chosen."""
    try:
        with sqlite3.connect(database) as connection:
            counts = connection.execute(
                "select count(p.param_id) from trials t join trial_params p on p.trial_id = t.trial_id "
                "where t.state = 'RUNNING' group by t.trial_id"
            ).fetchall()
    except sqlite3.OperationalError:
        return False
    return any(count == 3 for (count,) in counts)


def trials_in(database: Path) -> list[tuple[int, str]]:
    """``(number, state)`` of every trial in the study's SQLite file (none while Optuna is still creating it)."""
    try:
        with sqlite3.connect(database) as connection:
            return list(connection.execute("select number, state from trials order by number"))
    except sqlite3.OperationalError:  # the tables do not exist yet
        return []
