"""Registering is idempotent: the same run (or run folder) never makes a second version of the registered model, and
a sweep's winner that ties on validation is registered by the report's stated rule, said in the message."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from sweep_records import sweep_record

from experiments import register
from experiments.records.sweep import SweepRecord, Tie
from experiments.tracking import registry

RELEASE_0_1 = Path(__file__).parent / "data" / "run-folder-0.1"


@pytest.fixture
def logged(tmp_path, monkeypatch):
    """A run folder and the MLflow run that recorded it with a (tiny) ``categoriser`` model, as a run logs them."""
    import mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    # An experiment of this store: the process may still hold an active experiment id of an earlier test's store.
    mlflow.set_experiment("register-once")
    folder = tmp_path / "run"
    shutil.copytree(RELEASE_0_1, folder)
    with mlflow.start_run() as run:
        mlflow.set_tag("run_folder", str(folder.resolve()))
        mlflow.pyfunc.log_model(name="categoriser", python_model=Echo())
    return SimpleNamespace(
        run_id=run.info.run_id,
        folder=folder,
        tracking_uri=uri,
        connect=lambda: mlflow.set_tracking_uri(uri),
    )


def versions(name: str) -> list[str]:
    import mlflow

    return sorted(str(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'"))


def test_registering_a_run_again_makes_no_second_version(logged, capsys):
    import mlflow

    logged.connect()
    folder = str(logged.folder)
    register.main([folder, "--name", "once", "--tracking-uri", logged.tracking_uri])
    assert "registered once version 1 from run" in capsys.readouterr().out
    register.main([folder, "--name", "once", "--tracking-uri", logged.tracking_uri])  # by folder, then by run id
    register.main([logged.run_id, "--name", "once", "--alias", "staging", "--tracking-uri", logged.tracking_uri])
    out = capsys.readouterr().out
    assert out.count("once version 1 already holds run") == 2 and "models:/once@staging -> version 1" in out
    assert versions("once") == ["1"]
    assert str(mlflow.MlflowClient().get_model_version_by_alias("once", "staging").version) == "1"


def report(logged, ties: bool, selection_split: str = "validation") -> SweepRecord:
    group = [Tie(value=0.733, configurations=["k=2,miner=cosine", "k=4,miner=kmeans"])] if ties else []
    return sweep_record("k=2,miner=cosine", logged.folder, ties=group, selection_split=selection_split)


def test_a_tied_winner_is_registered_once_by_the_stated_rule(logged):
    logged.connect()
    said = registry.register_winner(report(logged, ties=True), "tied")
    assert said.startswith("registered: models:/tied@champion (version 1, new); a tie on validation mrr@1: ")
    assert "k=2,miner=cosine, k=4,miner=kmeans at 0.733, registered k=2,miner=cosine" in said
    assert "(the shorter stored training time first, then the configuration name)" in said
    again = registry.register_winner(report(logged, ties=False), "tied")  # the sweep's end, rerun
    assert (
        again
        == f"registered: models:/tied@champion (version 1, already registered from run {logged.run_id}, no new version)"
    )
    assert versions("tied") == ["1"]
    on_eval = registry.register_winner(report(logged, ties=False, selection_split="eval"), "eval-chosen")
    assert on_eval.startswith("note: the winner was chosen on the eval split") and versions("eval-chosen") == []
