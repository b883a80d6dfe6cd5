"""hparams_search=optuna and the sweep report agree: Optuna's ``best_trial`` is the report's winner on a tie, a
repeat is never the best trial, the report carries Optuna's own figures, and run names and labels show floats to 3
significant digits (display only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_sweeps import N_QUERIES, fake_job

from experiments.sweeps.labels import shown, shown_knob
from experiments.sweeps.report import write_report
from experiments.sweeps.search_plots import write_search_plots
from hydra_plugins.experiments_optuna_sweeper.sweeper import tell_repeat, told_value, write_trials

optuna = pytest.importorskip("optuna")
HITS = list((np.random.default_rng(3).random(N_QUERIES) < 0.7).astype(float))


def tell(study, sweep: Path, folder: Path) -> int:
    """One trial whose job is ``folder`` (its scores ``HITS``), told as the sweeper tells it."""
    trial = study.ask()
    trial.suggest_int("k", 1, 8), trial.suggest_categorical("miner", ["random", "kmeans", "cosine"])
    study.tell(trial, told_value(study, float(np.mean(HITS)), folder, sweep, "mrr@1", "maximize"))
    return trial.number


@pytest.mark.parametrize("faster_first", [False, True])
def test_on_a_tie_optunas_best_trial_is_the_reports_winner(tmp_path, faster_first):
    """Two trials with the same scores: the report's rule picks the one trained faster, whichever ran first (Optuna
    alone kept the first: trial 0 against the report's trial 1)."""
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    seconds = [5.0, 20.0] if faster_first else [20.0, 5.0]
    numbers = []
    for (miner, k), train in zip([("kmeans", 4), ("random", 4)], seconds, strict=True):
        numbers.append(tell(study, tmp_path, fake_job(tmp_path, miner, k, HITS, train_seconds=train)))
    report = write_report(tmp_path, metric="mrr@1")
    assert len(report.rows) == 2 and report.rows[0].selection_value == report.rows[1].selection_value  # a tie
    assert report.rows[0].training.seconds == 5.0
    faster = numbers[0] if faster_first else numbers[1]
    assert study.best_trial.number == faster
    assert abs(study.best_trial.value - report.winner_value) < 1e-12  # one float step, not another score


def test_a_repeat_is_never_the_best_trial_and_trials_json_marks_the_winner(tmp_path):
    import json

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    first = tell(study, tmp_path, fake_job(tmp_path, "kmeans", 4, HITS))
    again = study.ask()
    again.suggest_int("k", 1, 8), again.suggest_categorical("miner", ["random", "kmeans", "cosine"])
    tell_repeat(study, again, study.trials[first])
    assert study.best_trial.number == first
    rows = json.loads(write_trials(study, tmp_path).read_text())
    assert [row["best"] for row in rows] == [True, False] and rows[1]["repeat_of"] == first


def test_the_report_adds_optunas_history_and_importance_plots(tmp_path):
    study = optuna.create_study(
        study_name="reranker-search", direction="maximize", storage=f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    for value in [0.2, 0.5, 0.4, 0.3]:
        trial = study.ask()
        trial.suggest_int("k", 1, 8), trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)
        study.tell(trial, value)
    fake_job(tmp_path, "kmeans", 4, HITS)
    report = write_report(tmp_path, metric="mrr@1")
    names = {path.name for path in report.plots}
    assert {"search_history.png", "search_importance.png"} <= names
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("search_history.png", "search_importance.png"))


def test_search_plots_skip_what_they_cannot_draw(tmp_path):
    assert write_search_plots(tmp_path) == []  # a grid sweep: no study
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trial = study.ask()
    trial.suggest_int("k", 1, 8)
    study.tell(trial, 0.5)
    assert [path.name for path in write_search_plots(tmp_path)] == ["search_history.png"]  # one trial: no importance
    k = optuna.distributions.IntDistribution(1, 8)
    other = 1 + study.trials[0].params["k"] % 8  # another k, the same score: nothing for importance to explain
    study.add_trial(optuna.trial.create_trial(params={"k": other}, distributions={"k": k}, value=0.5))
    assert [path.name for path in write_search_plots(tmp_path)] == ["search_history.png"]
    (tmp_path / "optuna.db").write_bytes(b"not a database")
    assert write_search_plots(tmp_path) == []


def test_floats_in_names_and_labels_show_3_significant_digits(tmp_path):
    assert shown("1.2184186502221756e-05") == "1.22e-05"
    assert shown("0.3333333") == "0.333" and shown("4") == "4" and shown("random") == "random"
    assert shown_knob("learning_rate=1.2184186502221756e-05") == "learning_rate=1.22e-05"
    folder = fake_job(tmp_path, "kmeans", 4, HITS)
    other = tmp_path / "k=4,miner=kmeans,lr"
    folder.rename(other)
    (other / ".hydra" / "overrides.yaml").write_text(
        "- miner=kmeans\n- reranker.learning_rate=1.2184186502221756e-05\n"
    )
    fake_job(tmp_path, "kmeans", 4, HITS)
    report = write_report(tmp_path, metric="mrr@1")
    [row] = [row for row in report.rows if "reranker.learning_rate" in row.knobs]
    assert row.label == "reranker.learning_rate=1.22e-05"  # the swept knob only (miner is the same in both)
    assert row.job.overrides["reranker.learning_rate"] == "1.2184186502221756e-05"  # the value as given


def test_a_run_name_shows_a_searched_float_to_3_significant_digits(tmp_path):
    """The name of a trial's run (MLflow's run name) rounds the float it was given; its config keeps all digits."""
    from conftest import CONF
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from experiments.app import hydra_option_knobs

    overrides = ["reranker.learning_rate=1.2184186502221756e-05", "reranker.epochs=2"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        assert hydra_option_knobs() == ["learning_rate=1.22e-05", "epochs=2"]
    finally:
        HydraConfig.instance().cfg = previous
    assert cfg.reranker.learning_rate == 1.2184186502221756e-05
