"""Live MLflow runs against a real ``mlflow server``: a run is RUNNING with its training loss while it trains, and a
server that hangs mid-training neither slows the training nor loses the record (pending, then ``sync``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sweep_records import sweep_record
from test_cli import ROOT, shrunk
from test_hardening import cli, cli_env, free_port, mlflow_server

from experiments.tracking.live import CLOSE_S, LiveRun, LiveStart, start_live
from experiments.tracking.trackers import Trackers

#: Run first in the run's process: the evaluation step waits for the test's ``go`` file (so the test sees the run
#: while it is still going), and every ``LiveRun.training_loss`` call is timed into ``calls.jsonl``; after the
#: first one, training waits (outside the timed call) for the test's ``stopped`` file when there is a ``hang`` file.
GATES = """
import json, os, time
from pathlib import Path
from experiments import pipeline
from experiments.tracking import live

GATE = Path(os.environ["LIVE_TEST_DIR"])
original_evaluate, original_loss = pipeline.evaluate, live.LiveRun.training_loss

def wait_for(name):
    deadline = time.monotonic() + 600
    while not (GATE / name).exists() and time.monotonic() < deadline:
        time.sleep(0.05)

def evaluate(*args, **kwargs):
    (GATE / "trained").touch()
    wait_for("go")
    return original_evaluate(*args, **kwargs)

def training_loss(self, step, loss, stage):
    started = time.perf_counter()
    original_loss(self, step, loss, stage)
    took = time.perf_counter() - started
    with open(GATE / "calls.jsonl", "a") as calls:
        calls.write(json.dumps({"step": step, "stage": stage, "seconds": took}) + "\\n")
    if (GATE / "hang").exists() and not (GATE / "stopped").exists():
        (GATE / "first-loss").touch()
        wait_for("stopped")

pipeline.evaluate = evaluate
live.LiveRun.training_loss = training_loss
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``mlflow server`` for the module (each test records into its own experiment): its URI and process."""
    port = free_port()
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server"), port) as process:
        yield f"http://127.0.0.1:{port}", process


def runs_of(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def training_args(tmp_path: Path, tiny_model_dir: Path, experiment: str, *extra: str) -> list[str]:
    return [
        *shrunk(tmp_path, tiny_model_dir),
        f"trackers.mlflow.experiment={experiment}",
        "reranker=bi_encoder_finetuned",
        f"reranker.base_model={tiny_model_dir}",
        "reranker.epochs=2",
        "log_model=false",
        *extra,
    ]


def start_run(tmp_path: Path, args: list[str], uri: str) -> subprocess.Popen[str]:
    gate = tmp_path / "gate"
    gate.mkdir(exist_ok=True)
    env = cli_env(MLFLOW_TRACKING_URI=uri, LIVE_TEST_DIR=str(gate))
    return subprocess.Popen(cli(args, GATES), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_until(condition, process: subprocess.Popen[str], what: str, timeout_s: float = 600.0):
    """Poll ``condition`` until it holds (generous: a loaded 2-core CI machine), failing at once if the run ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert process.poll() is None, f"the run ended before {what}: {process.communicate()[1][-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"never saw {what}")


def live_run(uri: str, experiment: str):
    """The experiment's one run once it has at least one training-loss point, else None."""
    from mlflow import MlflowClient

    runs = runs_of(uri, experiment)
    if len(runs) != 1 or "train_loss" not in runs[0].data.metrics:
        return None
    return runs[0], MlflowClient(tracking_uri=uri).get_metric_history(runs[0].info.run_id, "train_loss")


def git_head() -> str | None:
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


@pytest.mark.slow
def test_a_run_is_running_with_its_loss_while_it_trains_then_finished_with_its_record(server, tmp_path, tiny_model_dir):
    """One MLflow run from start to end: RUNNING with MLflow's context tags (user, source, git commit), its params
    and a training-loss point while the run is still going; then FINISHED with the whole record, the loss curve
    once per step, and the objective ``validation_mrr_at_1``, which a sweep's parent gets too."""
    from mlflow import MlflowClient

    from experiments.tracking.mlflow_tracker import log_sweep_report

    uri, _ = server
    args = training_args(tmp_path, tiny_model_dir, "live", "reranker.select_epochs=true")
    process = start_run(tmp_path, args, uri)
    try:
        run, losses = wait_until(lambda: live_run(uri, "live"), process, "a RUNNING run with a training loss")
        assert run.info.status == "RUNNING" and losses
        assert not (tmp_path / "outputs" / "multirun").exists()
        tags = run.data.tags
        assert tags["mlflow.user"] and tags["mlflow.source.name"].endswith("run.py")
        assert tags["mlflow.source.type"] == "LOCAL"
        if git_head() is not None:
            assert tags["mlflow.source.git.commit"] == git_head()
        assert run.data.params["reranker"] == "bi_encoder_finetuned" and "experiments.run_uid" in tags
        assert "selection_validation_mrr_at_1" in run.data.metrics  # the epochs' validation curve, live
        (tmp_path / "gate" / "go").touch()
        _, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    [finished] = runs_of(uri, "live")
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(finished.info.run_id, "train_loss")
    parent = client.create_run(finished.info.experiment_id, run_name="sweep").info.run_id
    folder = Path(finished.data.tags["run_folder"])
    log_sweep_report(client, parent, sweep_record("w", folder), tmp_path)
    parent_metrics = client.get_run(parent).data.metrics
    assert finished.info.run_id == run.info.run_id and finished.info.status == "FINISHED"
    record = json.loads((folder / "metrics.json").read_text())
    assert sorted(point.step for point in history) == [step for step, _ in record["fit"]["loss_history"]]
    objective = record["validation"]["reranker"]["mrr@1"]["mean"]
    assert finished.data.metrics["validation_mrr_at_1"] == pytest.approx(objective)
    assert parent_metrics["validation_mrr_at_1"] == pytest.approx(objective)
    # The chart view's first section: MRR@1, recall@5 and the objective, on the run and on the sweep's parent.
    headline = {"mrr_at_1", "recall_at_5", "validation_mrr_at_1"}
    for metrics in (finished.data.metrics, parent_metrics):
        assert {key.removeprefix("headline/") for key in metrics if key.startswith("headline/")} == headline
        assert all(metrics[f"headline/{key}"] == metrics[key] for key in headline)
    assert finished.data.tags["mlflow.source.git.commit"] == tags.get("mlflow.source.git.commit")
    assert not any(key.endswith("topped_up_negatives") for key in finished.data.tags)  # in metrics.json


@pytest.mark.slow
def test_a_server_that_hangs_mid_training_neither_slows_it_nor_loses_the_run(
    server, tmp_path, tiny_model_dir, monkeypatch
):
    """The server is SIGSTOPped (it accepts connections and never answers) after the first live loss point. Bound:
    every later ``training_loss`` call returns at once (it only queues), and the run ends at most ``CLOSE_S`` +
    ``trackers.mlflow.timeout_s`` (2 + 5 s) after its work, plus the evaluation; the run folder
    keeps the record pending, and ``sync`` sends it once the server answers again: one FINISHED run, whole."""
    from mlflow import MlflowClient

    from experiments.sync import main as sync

    uri, process_of_server = server
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "hang").touch()
    (gate / "go").touch()
    args = training_args(tmp_path, tiny_model_dir, "hung", "reranker.epochs=3", "trackers.mlflow.timeout_s=5")
    process = start_run(tmp_path, args, uri)
    try:
        wait_until(lambda: (gate / "first-loss").exists() and live_run(uri, "hung"), process, "the first live loss")
        os.killpg(process_of_server.pid, signal.SIGSTOP)
        (gate / "stopped").touch()
        wait_until(lambda: (gate / "trained").exists(), process, "the end of training")
        trained = time.monotonic()
        _, stderr = process.communicate(timeout=600)
        ended = time.monotonic()
    finally:
        process.kill()
        os.killpg(process_of_server.pid, signal.SIGCONT)
    assert process.returncode == 0, stderr[-3000:]
    calls = [json.loads(line) for line in (gate / "calls.jsonl").read_text().splitlines()]
    after = [call for call in calls[1:] if call["stage"] == "final"]
    assert len(after) >= 2, calls  # the hang came mid-training: more loss points followed it
    # A call that waited on the server would take its 10 s request timeout; queueing takes microseconds (the bound
    # leaves room for a loaded machine descheduling the thread).
    assert max(call["seconds"] for call in after) < 1.0
    assert ended - trained < CLOSE_S + 5 + 120, stderr[-3000:]  # + the evaluation, on a loaded machine
    assert "send it later with `python -m experiments.sync" in stderr
    [pending] = list((tmp_path / "outputs").rglob("pending-trackers/mlflow.json"))
    folder = pending.parent.parent
    # The 5 s that kept the run's end short would bound sync too (it rebuilds the tracker from config.json); the
    # server, resumed, still works through the requests it held, so sync gets the default 300 s.
    config = json.loads((folder / "config.json").read_text())
    config["trackers"]["mlflow"]["timeout_s"] = 300
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert sync([str(tmp_path / "outputs")]) == 0
    [run] = runs_of(uri, "hung")
    history = MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "train_loss")
    record = json.loads((folder / "metrics.json").read_text())
    assert (
        run.info.status == "FINISHED" and run.data.metrics["mrr_at_1"] == record["metrics"]["reranker"]["mrr@1"]["mean"]
    )
    assert sorted(point.step for point in history) == [step for step, _ in record["fit"]["loss_history"]]
    assert run.data.tags["mlflow.source.name"].endswith("run.py")  # the run's context, not sync's


def test_a_live_feed_never_blocks_and_drops_what_it_cannot_queue():
    """A tracker whose every call hangs: 5,000 points are queued or dropped at once, and closing waits CLOSE_S."""

    class Hanging:
        strict, timeout_s = False, 1.0

        def __init__(self) -> None:
            self.release = threading.Event()

        def open_live(self, start: LiveStart) -> None:
            self.release.wait(30)

        def log_live(self, points) -> None:
            self.release.wait(30)

        def end_live(self, status: str) -> None:
            self.release.wait(30)

    tracker = Hanging()
    live: LiveRun = start_live(Trackers({"hanging": tracker}), "run", {}, {}, time.time())  # type: ignore[dict-item]
    started = time.perf_counter()
    for step in range(5000):
        live.training_loss(step, 1.0, "final")
    assert time.perf_counter() - started < 1.0
    assert live.feeds[0].dropped > 0
    started = time.perf_counter()
    live.close()
    assert CLOSE_S - 0.1 < time.perf_counter() - started < CLOSE_S + 1.0
    tracker.release.set()


def test_a_live_run_opened_after_the_final_record_began_is_deleted_not_doubled(tmp_path):
    """The live run's opening came back late (a slow server): the final record already made its own run, so the
    late one is deleted; opened in time, the final record goes into it."""
    import mlflow

    from experiments.tracking.mlflow_tracker import MLflowTracker

    def tracker() -> MLflowTracker:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        return MLflowTracker(tracking_uri=uri, artifact_location=f"file://{tmp_path / 'artifacts'}")

    start = LiveStart("run", {"k": 2}, {"experiments.run_uid": "late"}, time.time())
    late = tracker()
    late.start("run", {"experiments.run_uid": "late"})
    late.open_live(start)
    late.end("FINISHED")
    in_time = tracker()
    in_time.open_live(LiveStart("run", {"k": 2}, {"experiments.run_uid": "in-time"}, time.time()))
    in_time.start("run", {"experiments.run_uid": "in-time"})
    in_time.end("FINISHED")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    assert sorted((run.data.tags["experiments.run_uid"], run.info.status) for run in runs) == [
        ("in-time", "FINISHED"),
        ("late", "FINISHED"),
    ]
    assert in_time.run_id == in_time.live_run_id and late.live_run_id is None


def test_the_tracker_still_pickles_for_a_joblib_launcher():
    """A joblib sweep pickles its callbacks, trackers included: the live run's lock and event are made anew."""
    import pickle

    from experiments.tracking.mlflow_tracker import MLflowTracker

    copy = pickle.loads(pickle.dumps(MLflowTracker(experiment="x")))
    assert copy.experiment == "x" and copy._live_settled.is_set()
    with copy._live_lock:
        pass


def test_a_finished_run_is_kept_pending_before_the_live_feeds_are_waited_on(tmp_path, monkeypatch):
    """The feeds get up to CLOSE_S to send what is queued (a silent server takes all of it): a stop (SIGTERM,
    ``kill -9``) in that window still finds the run pending in its folder, for ``sync``."""
    from experiments.records import DatasetSplits, FinetuneSet
    from experiments.records.run import Summary
    from experiments.tracking import record
    from experiments.tracking.base import TrackedRun
    from experiments.tracking.pending import PENDING

    class Recorder:
        strict, timeout_s = False, 5.0

        def log_run(self, run) -> None:
            pass

    class Closing(LiveRun):
        def close(self, timeout_s: float = CLOSE_S) -> None:
            seen.append((tmp_path / PENDING / "recorder.json").is_file())

    seen: list[bool] = []
    (tmp_path / "metrics.json").write_text("{}")
    nothing = (
        DatasetSplits("empty", [], [], []),
        FinetuneSet([]),
        Summary(n_queries=0, baseline={}, reranker={}, delta={}, latency_ms={}, candidate_recall=0.0),
    )
    run = TrackedRun("r", {}, {}, {}, *nothing, [], None, tmp_path, tmp_path)
    monkeypatch.setattr(record, "tracked_run", lambda outcome, kept: run)
    record.track(Trackers({"recorder": Recorder()}), None, None, Closing())  # type: ignore[arg-type, dict-item]
    assert seen == [True]
    assert not (tmp_path / PENDING).exists()  # recorded: no longer pending
