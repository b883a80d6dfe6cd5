"""hparams_search=optuna from the outside (real ``run.py -m`` processes): the search has an attempt budget (failed
trials count), one process at a time searches a study, a resumed search never runs a finished configuration again,
and a setting it cannot run with is one line with exit 2 before anything is opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hparams_search import search_args, trials, trials_in, write_data


def search(tmp_path: Path, model: Path, n_trials: int, *extra: str, timeout: float = 150) -> list[str]:
    """The arguments of a tiny search into ``tmp_path / "sweep"``; ``extra`` replaces the setting of the same key."""
    args = search_args(tmp_path, model, write_data(tmp_path / "data"), tmp_path / "sweep", n_trials)
    keys = {item.split("=", 1)[0] for item in extra}
    return [item for item in args if item.split("=", 1)[0] not in keys] + list(extra)


def run(args: list[str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def job_folders(sweep_dir: Path) -> list[Path]:
    return sorted(path.parent for path in sweep_dir.glob("*/.hydra"))


def test_a_search_whose_every_trial_fails_spends_its_budget_and_exits_1(tmp_path, tiny_model_dir):
    """Every k in 40..45 is refused (31 categories): 3 trials, 3 failed jobs, then the end (it ran for ever)."""
    args = search(tmp_path, tiny_model_dir, 3, "hydra.sweeper.params.k='int(interval(40, 45))'", "trackers=none")
    completed = run(args, timeout=120)
    assert completed.returncode == 1, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert [trial["state"] for trial in trials(tmp_path / "sweep")] == ["FAIL"] * 3
    folders = job_folders(tmp_path / "sweep")
    assert len(folders) == 3 and all((folder / "failed.json").is_file() for folder in folders)
    assert "sweep: 0 of 3 jobs completed" in completed.stdout
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "No winner" in report and report.count("there are only 31 categories") == 3
    assert "Traceback" not in completed.stderr


def test_a_search_whose_runs_report_no_validation_score_stops_after_one_trial(tmp_path, tiny_model_dir):
    """``reranker.select_epochs=false``: the run reports no validation score, nor would any other trial (it trained
    18 models in 200 s): one trial, its job marked failed with the reason, exit 1."""
    args = search(
        tmp_path,
        tiny_model_dir,
        3,
        "reranker.select_epochs=false",
        "~hydra.sweeper.params.reranker.epochs",
        "reranker.epochs=1",
        "trackers=none",
    )
    completed = run(args, timeout=120)
    assert completed.returncode == 1, completed.stdout[-2000:] + completed.stderr[-2000:]
    [trial] = trials(tmp_path / "sweep")
    assert trial["state"] == "FAIL"
    [folder] = job_folders(tmp_path / "sweep")
    reason = json.loads((folder / "failed.json").read_text())["reason"]
    assert "reports no validation mrr@1" in reason and "reranker.select_epochs=true" in reason
    assert "reports no validation mrr@1" in completed.stdout and "Traceback" not in completed.stderr


def test_two_searches_of_one_study_never_run_at_once(tmp_path, tiny_model_dir):
    """The second invocation on a study being searched refuses in one line before it opens anything; the first
    ends cleanly (it was an ``UpdateFinishedTrialError`` traceback, duplicated trials and a parent left RUNNING)."""
    import mlflow

    args = search(tmp_path, tiny_model_dir, 2)
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    first = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        database = tmp_path / "sweep" / "optuna.db"
        while time.monotonic() < deadline and first.poll() is None:
            if any(state == "RUNNING" for _, state in trials_in(database)):
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first search ended before the second started"
        second = run(args, timeout=60)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {database}.lock: this study is being searched by process {first.pid}")
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in err
    assert [trial["state"] for trial in trials(tmp_path / "sweep")] == ["COMPLETE", "COMPLETE"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    assert len([run for run in runs if run.data.tags.get("sweep") == "parent"]) == 1
    assert all(run.info.status == "FINISHED" for run in runs), [
        (r.info.run_name, r.info.status, r.data.tags.get("sweep")) for r in runs
    ]


def test_a_resumed_search_never_runs_a_finished_configuration_again(tmp_path, tiny_model_dir):
    """Two trials, then the same study resumed to four: four configurations (a resumed search replayed its seeded
    sampler: 5 trials, 2 configurations). Trials that fail fast (k above the 30 a data set of 31 categories allows)
    keep it quick: a failed configuration is as finished as a completed one."""
    args = search(tmp_path, tiny_model_dir, 2, "hydra.sweeper.params.k='int(interval(40, 45))'", "trackers=none")
    assert run(args).returncode == 1
    more = [item for item in args if not item.startswith("hydra.sweeper.n_trials=")] + ["hydra.sweeper.n_trials=4"]
    resumed = run(more)
    assert resumed.returncode == 1, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    ran = [trial for trial in trials(tmp_path / "sweep") if trial["repeat_of"] is None]  # repeats ran no job
    configurations = [json.dumps(trial["params"], sort_keys=True) for trial in ran]
    assert len(ran) == 4 and len(set(configurations)) == 4, configurations
    assert len(job_folders(tmp_path / "sweep")) == 4


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("hydra.sweeper.n_trials=0", "error: hydra.sweeper.n_trials=0: a search runs at least 1 trial."),
        (
            "hydra.sweeper.params.k='int(interval(5, 2))'",
            "error: hydra.sweeper.params.k=int(interval(5, 2)): an empty interval, its low end 5 is above its high "
            "end 2.",
        ),
        ("hydra.sweeper.direction=sideways", "error: hydra.sweeper.direction=sideways: choose maximize or minimize."),
        ("k=2,3", "error: k=2,3: hparams_search=optuna searches hydra.sweeper.params; give k one value"),
        ("hydra.sweeper.params.k=x", "error: hydra.sweeper.params.k=x: use choice(...), range(...) or interval(...)"),
    ],
)
def test_a_search_setting_it_cannot_run_with_is_one_line_exit_2(tmp_path, tiny_model_dir, override, expected):
    completed = run(search(tmp_path, tiny_model_dir, 2, override), timeout=60)
    assert completed.returncode == 2, completed.stderr[-2000:]
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith(expected)
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # no parent run was opened
    assert not list((tmp_path / "sweep").glob("*/.hydra"))


def test_search_params_without_the_search_are_one_line_exit_2(tmp_path, tiny_model_dir):
    """An interval is a search space: the grid sweeper refuses it in one line (a grid's params, ``k: 2,4`` in an
    experiment file, run as before); a key the config has no place for is Hydra's one line."""
    args = [item for item in search(tmp_path, tiny_model_dir, 2) if not item.startswith(("hydra.sweeper", "~hydra"))]
    plain = [item for item in args if item != "hparams_search=optuna"]
    completed = run([*plain, "+hydra.sweeper.params.k='int(interval(1, 3))'"], timeout=60)
    assert completed.returncode == 2, completed.stderr[-2000:]
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: hydra.sweeper.params.k=int(interval(1, 3)): an interval is a search space")
    assert not list((tmp_path / "sweep").glob("*/.hydra"))
    completed = run([*plain, "hydra.sweeper.params.k=x"], timeout=60)
    assert completed.returncode == 2 and len(completed.stderr.strip().splitlines()) == 1, completed.stderr[-2000:]
    shrunk = [item for item in plain if not item.startswith("reranker.")]
    grid = run([*shrunk, "+hydra.sweeper.params.k='2,3'", "reranker=none", "trackers=none"], timeout=120)
    assert grid.returncode == 0, grid.stdout[-2000:] + grid.stderr[-2000:]
    assert "sweep: 2 jobs into" in grid.stderr and len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 2


def test_a_search_stops_when_its_space_holds_no_untried_configuration(tmp_path, tiny_model_dir):
    """Two configurations and five trials: two jobs, then the search says its space is spent (never a repeat)."""
    args = search(
        tmp_path,
        tiny_model_dir,
        5,
        "hydra.sweeper.params.k='int(interval(40, 41))'",
        "~hydra.sweeper.params.miner",
        "~hydra.sweeper.params.reranker.epochs",
        "trackers=none",
    )
    completed = run(args, timeout=120)
    assert completed.returncode == 1, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "search: all 2 configurations of the space are tried; stopping at 2 trials" in completed.stdout
    assert sorted(trial["params"]["k"] for trial in trials(tmp_path / "sweep")) == [40, 41]
    assert len(job_folders(tmp_path / "sweep")) == 2
