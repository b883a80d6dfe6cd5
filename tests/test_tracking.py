"""Params are flat, metric names survive MLflow's character rules."""

from __future__ import annotations

import pytest
from sweep_records import sweep_record

from experiments.metrics import METRIC_NAMES
from experiments.tracking.base import flatten, metric_key


def test_flatten_joins_keys_and_stringifies_lists():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": None}) == {
        "a.b": 1,
        "a.c.d": "x",
        "e": "[1, 2]",
        "f": None,
    }


def test_metric_keys_are_valid_mlflow_names():
    from mlflow.utils.validation import _validate_metric_name

    for name in METRIC_NAMES:
        _validate_metric_name(metric_key(name))
    assert metric_key("recall@1") == "recall_at_1"


def test_a_failing_tracker_is_one_line_and_the_others_still_record(tmp_path, capsys):
    from experiments.errors import UserError
    from experiments.tracking.trackers import Trackers

    class Recorder:
        strict, timeout_s = False, 5.0

        def __init__(self):
            self.runs = []

        def log_run(self, run):
            self.runs.append((run.artifacts / "metrics.json").read_text())

    class Broken(Recorder):
        def log_run(self, run):
            raise ConnectionError("server down\nwith a second line")

    class Hanging(Recorder):
        timeout_s = 0.2

        def log_run(self, run):
            import time

            time.sleep(5)

    from experiments.records import DatasetSplits, FinetuneSet
    from experiments.records.run import Summary
    from experiments.tracking.base import TrackedRun

    (tmp_path / "metrics.json").write_text("{}")
    nothing = (
        DatasetSplits("empty", [], [], []),
        FinetuneSet([]),
        Summary(n_queries=0, baseline={}, reranker={}, delta={}, latency_ms={}, candidate_recall=0.0),
    )
    run = TrackedRun("r", {}, {}, {}, *nothing, [], None, tmp_path, tmp_path)
    recorder = Recorder()
    Trackers({"broken": Broken(), "hanging": Hanging(), "recorder": recorder}).log_run(run)
    lines = capsys.readouterr().err.splitlines()
    later = f"; it is kept in the run folder: send it later with `python -m experiments.sync {tmp_path}`"
    assert lines == [
        "warning: tracker broken failed (server unreachable: ConnectionError: server down); the run folder and the "
        f"other trackers have the run{later}",
        "warning: tracker hanging failed (no answer within 0.2 s (trackers.hanging.timeout_s)); the run folder and "
        f"the other trackers have the run{later}",
    ]
    assert recorder.runs == ["{}"]  # the redacted copy of the run folder
    pending = sorted(path.name for path in (tmp_path / "pending-trackers").iterdir())
    assert pending == ["broken.json", "hanging.json"]
    strict = Broken()
    strict.strict = True
    with pytest.raises(
        UserError, match=r"^tracker broken failed \(server unreachable: ConnectionError: server down\); trackers"
    ):
        Trackers({"broken": strict, "recorder": recorder}).log_run(run)
    assert len(recorder.runs) == 2


def test_a_sweep_parent_is_named_by_time_and_swept_knobs_not_by_path():
    import time

    from experiments.tracking.sweep import sweep_name, swept_knobs

    overrides = ["paths.outputs_dir=/very/long/path", "miner=random,cosine", "k=2,4", "seed=1", "lr=range(1,3)"]
    assert swept_knobs(overrides) == ["miner", "k", "lr"]
    started = time.mktime((2026, 12, 1, 2, 53, 30, 0, 0, -1))
    assert sweep_name(["miner", "k"], started) == "sweep 2026-12-01 02:53 miner x k"
    assert sweep_name([], started) == "sweep 2026-12-01 02:53"


def test_params_are_knobs_and_diagnostics_are_tags():
    from experiments.tracking.base import diagnostic_tags, tracked_params

    config = {
        "k": 2,
        "log_model": True,
        "optimized_metric": "mrr@1",
        "progress": False,
        "paths": {"outputs_dir": "/o"},
        "dataset": {"_target_": "x.JsonlDataset", "train_path": "/d/train.jsonl", "group_by": None},
        "miner": {"_target_": "x.CosineMiner", "rank_min": 1},
    }
    assert tracked_params(config, {"miner": "cosine"}) == {
        "k": 2,
        "dataset": "JsonlDataset",
        "dataset.group_by": None,
        "miner": "cosine",
        "miner.rank_min": 1,
    }
    assert diagnostic_tags(config) == {"dataset.train_path": "/d/train.jsonl"}


def test_a_rerun_sweep_with_a_new_winner_updates_its_parent_run(tmp_path, capsys):
    """MLflow params never change: a reopened sweep whose rerun crowned another winner keeps the first winner's
    params, and its tag ``winner`` and metrics follow the new report (this used to fail the whole recording)."""
    import mlflow

    from experiments.tracking.mlflow_tracker import log_sweep_report

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    parent = client.create_run(client.create_experiment("sweeps")).info.run_id
    for name in ("first", "second"):
        log_sweep_report(client, parent, sweep_record(f"k={name}", tmp_path / name), tmp_path)
    run = client.get_run(parent)
    assert run.data.params["winner"] == "k=first"
    assert run.data.tags["winner"] == "k=second"
    assert "keeps its first winner's params (winner: MLflow params cannot change)" in capsys.readouterr().out
    long = sweep_record("w=" + "9" * 7000, tmp_path / "x")
    other = client.create_run(client.get_run(parent).info.experiment_id).info.run_id
    for _ in range(2):  # the same long winner twice: MLflow keeps 6,000 characters, and it is not a new winner
        log_sweep_report(client, other, long, tmp_path)
    assert "keeps its first winner's params" not in capsys.readouterr().out


def test_a_sweeps_end_hands_every_tracker_the_record_as_report_json_holds_it(tmp_path, monkeypatch):
    """The trackers receive the typed record, redacted as ``report.json`` is; None when the sweep made no report."""
    from experiments import run_folder
    from experiments.tracking.trackers import Trackers

    class Parent:
        strict, timeout_s = False, 5.0

        def __init__(self):
            self.ended = []

        def start_sweep(self, name, sweep_dir):
            return "parent"

        def end_sweep(self, record, sweep_dir):
            self.ended.append((record, sweep_dir))

    monkeypatch.setenv("CO_API_KEY", "co-canary-abcdef123")
    record = sweep_record("k=2", tmp_path / "runs-co-canary-abcdef123" / "k=2")
    parent = Parent()
    trackers = Trackers({"fake": parent})
    trackers.end_sweep(list(trackers.start_sweep("sweep", tmp_path)), record, tmp_path)
    trackers.end_sweep(["fake"], None, tmp_path)
    run_folder.write_report(tmp_path, record)
    assert parent.ended == [(run_folder.read_report(tmp_path), tmp_path), (None, tmp_path)]
    assert "co-canary" not in parent.ended[0][0].winner_folder
