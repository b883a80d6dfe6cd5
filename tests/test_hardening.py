"""Hardening with real faults: a real ``mlflow server`` down at the start and stopped mid-run (then
``python -m experiments.sync``), and real SIGTERM / ``kill -9`` of a run while it records. Secrets passed every
way: tests/test_secrets.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cli import ROOT, shrunk
from test_pipeline import run_dir
from test_services import mlflow_runs

from experiments import app
from experiments.sync import main as sync
from experiments.tracking.trackers import PENDING


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), **extra}


def run_cli(*args: str, env: dict[str, str], patch: str = "") -> subprocess.CompletedProcess[str]:
    """``run.py`` in a subprocess; ``patch`` (Python) runs first, to inject a fault (a failure, a slow upload)."""
    return subprocess.run(cli(args, patch), capture_output=True, text=True, env=env, timeout=600)


def cli(args: tuple[str, ...] | list[str], patch: str = "") -> list[str]:
    run_py = str(ROOT / "run.py")
    argv = ["run.py", *args]
    driver = f"{patch}\nimport runpy, sys\nsys.argv = {argv!r}\nrunpy.run_path({run_py!r}, run_name='__main__')"
    return [sys.executable, "-c", driver]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def mlflow_server(store: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``mlflow server`` on 127.0.0.1:``port`` with its database and artifacts under ``store``."""
    import urllib.request

    store.mkdir(exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
    ]  # fmt: skip
    with open(store / "server.log", "ab") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # a loaded 2-core CI machine: seen past 180 s at load 13
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (store / "server.log").read_text()
                time.sleep(0.5)
        yield server
    finally:
        stop(server)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its uvicorn worker: down, as in a crash
        server.wait(timeout=30)


def server_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("reranker-finetuning")
    return client.search_runs([experiment.experiment_id]) if experiment else []


# Trackers that go down.


def test_sync_sends_a_pending_run_exactly_once(make_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    started = time.perf_counter()
    outcome = app.run(make_cfg(), run_dir(tmp_path))
    assert time.perf_counter() - started < 60  # seconds of bounded retries, not MLflow's minutes
    [line] = [line for line in capsys.readouterr().err.splitlines() if "tracker mlflow failed" in line]
    assert line.endswith(f"send it later with `python -m experiments.sync {outcome.output_dir}`")
    assert (outcome.output_dir / "metrics.json").is_file()
    pending = outcome.output_dir / PENDING / "mlflow.json"
    assert pending.is_file()
    assert sync([str(tmp_path / "outputs")]) == 1 and pending.is_file()  # still down: still pending

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # back: the run's own store (sqlite under outputs/)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    mlflow.create_experiment("reranker-finetuning", artifact_location=f"file://{tmp_path / 'outputs' / 'mlartifacts'}")
    mlflow.set_experiment("reranker-finetuning")
    uid = json.loads(pending.read_text())["finished"]["tags"]["experiments.run_uid"]
    with mlflow.start_run(tags={"experiments.run_uid": uid}):  # what an interrupted attempt left behind
        pass
    assert sync([str(tmp_path / "outputs")]) == 0
    assert sync([str(tmp_path / "outputs")]) == 0
    assert "sync: 0 run(s) sent, 0 still pending" in capsys.readouterr().out
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["experiments.run_uid"] == uid
    assert (
        run.data.metrics["mrr_at_1"]
        == json.loads((outcome.output_dir / "metrics.json").read_text())["metrics"]["reranker"]["mrr@1"]["mean"]
    )
    assert not pending.exists()


@pytest.mark.slow
def test_a_server_down_at_the_start_and_one_stopped_mid_run_lose_nothing(tmp_path, tiny_model_dir):
    port, store = free_port(), tmp_path / "server"
    uri = f"http://127.0.0.1:{port}"
    env = cli_env(MLFLOW_TRACKING_URI=uri)
    args = shrunk(tmp_path, tiny_model_dir)
    started = time.monotonic()
    down = run_cli(*args, "reranker=none", env=env)  # nothing listens at the start
    assert down.returncode == 0 and "mrr@1" in down.stdout and "run folder:" in down.stdout
    assert time.monotonic() - started < 120
    assert "send it later with `python -m experiments.sync" in down.stderr and "Traceback" not in down.stderr

    training = [*args, "reranker=bi_encoder_finetuned", f"reranker.base_model={tiny_model_dir}", "reranker.epochs=3"]
    models = tmp_path / "outputs" / "cache" / "models"
    with mlflow_server(store, port) as server:
        run = subprocess.Popen(cli(training), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 300
        while not list(models.glob(".*.tmp-*")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        stop(server)  # the server dies while the run trains
        stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    assert "mrr@1" in stdout and "send it later with `python -m experiments.sync" in stderr
    folders = sorted(path.parent.parent for path in (tmp_path / "outputs").rglob(f"{PENDING}/mlflow.json"))
    assert len(folders) == 2 and all((folder / "metrics.json").is_file() for folder in folders)

    outputs = str(tmp_path / "outputs")
    with mlflow_server(store, port):
        first = subprocess.run(
            [sys.executable, "-m", "experiments.sync", outputs], capture_output=True, text=True, env=env, timeout=300
        )
        second = subprocess.run(
            [sys.executable, "-m", "experiments.sync", outputs], capture_output=True, text=True, env=env, timeout=300
        )
        runs = server_runs(uri)
    assert first.returncode == 0 and "sync: 2 run(s) sent, 0 still pending" in first.stdout, first.stderr
    assert second.returncode == 0 and "sync: 0 run(s) sent, 0 still pending" in second.stdout
    assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]  # exactly once each
    assert len({run.data.tags["experiments.run_uid"] for run in runs}) == 2
    assert all("mrr_at_1" in run.data.metrics and run.data.params for run in runs)


# Kills.

SLOW_UPLOAD = (
    "import time\nfrom experiments.tracking import mlflow_tracker\n"
    "mlflow_tracker.MLflowTracker.log_artifacts = lambda self, directory: time.sleep(600)\n"
)


def wait_for_running_run(db: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if db.is_file():
            with sqlite3.connect(db) as connection:
                try:
                    if connection.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]:
                        return
                except sqlite3.OperationalError:  # the schema is being created
                    pass
        time.sleep(0.2)
    raise AssertionError(f"the run never started recording: {process.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_run_killed_while_it_records_ends_killed(tmp_path, tiny_model_dir, kill):
    """SIGTERM: the run marks its MLflow run KILLED and exits promptly. ``kill -9``: the run stays RUNNING until
    the next run connects, which finds its process gone and marks it KILLED."""
    args = [*shrunk(tmp_path, tiny_model_dir), "reranker=none"]
    process = subprocess.Popen(
        cli(args, SLOW_UPLOAD), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
    )
    wait_for_running_run(tmp_path / "outputs" / "mlflow.db", process)
    process.send_signal(kill)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    if kill == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
        [run] = mlflow_runs(tmp_path)
        assert run.info.status == "KILLED"
        return
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "RUNNING" and run.data.tags["experiments.pid"] == str(process.pid)
    following = run_cli(*args, "k=3", env=cli_env())
    assert following.returncode == 0, following.stderr[-3000:]
    assert f"was left RUNNING by process {process.pid}, now gone: marked KILLED" in following.stdout
    statuses = {run.data.tags["experiments.pid"] == str(process.pid): run.info.status for run in mlflow_runs(tmp_path)}
    assert statuses == {True: "KILLED", False: "FINISHED"}


@pytest.mark.parametrize("stage", ["create_run", "start_run"])
def test_a_stop_between_storing_the_run_and_knowing_its_id_still_marks_it_killed(tmp_path, monkeypatch, stage):
    """CI found a SIGTERM landing after MLflow stored the run but before its id came back: the run stayed RUNNING."""
    import mlflow

    from experiments.tracking.mlflow_tracker import MLflowTracker

    (tmp_path / "outputs").mkdir()
    uri = f"sqlite:///{tmp_path}/outputs/mlflow.db"
    tracker = MLflowTracker(tracking_uri=uri, artifact_location=f"file://{tmp_path}/outputs/mlartifacts")
    original = getattr(mlflow.MlflowClient, stage) if stage == "create_run" else mlflow.start_run

    def stopped(*args, **kwargs):
        original(*args, **kwargs)
        tracker.abort()  # what the SIGTERM handler's unwinding calls, here at the worst moment
        raise KeyboardInterrupt

    if stage == "create_run":
        monkeypatch.setattr(mlflow.MlflowClient, "create_run", stopped)
    else:
        monkeypatch.setattr(mlflow, "start_run", stopped)
    with pytest.raises(KeyboardInterrupt):
        tracker.start("stopped", {"experiments.run_uid": "uid-0123"})
    [run] = mlflow_runs(tmp_path)  # read before this process leaves its active run (a stopped one never does)
    mlflow.end_run("KILLED")
    assert run.info.status == "KILLED"


def test_a_rerun_of_a_sweep_folder_reopens_its_parent_whatever_the_minute(tmp_path):
    """CI found a second parent when the rerun started in another minute than the killed sweep: parents were
    matched by name, and the name carries the start time. They are matched by the sweep folder."""
    import mlflow

    from experiments.tracking.mlflow_tracker import MLflowTracker

    (tmp_path / "outputs").mkdir()
    uri = f"sqlite:///{tmp_path}/outputs/mlflow.db"

    def tracker() -> MLflowTracker:
        return MLflowTracker(tracking_uri=uri, artifact_location=f"file://{tmp_path}/outputs/mlartifacts")

    first = tracker().start_sweep("sweep 2026-12-01 08:59 k", tmp_path / "sweep")
    mlflow.MlflowClient().set_terminated(first, status="KILLED")
    again = tracker().start_sweep("sweep 2026-12-01 09:00 k", tmp_path / "sweep")
    other = tracker().start_sweep("sweep 2026-12-01 09:00 k", tmp_path / "another sweep")
    assert again == first and other != first
    [parent] = [run for run in mlflow_runs(tmp_path) if run.info.run_id == first]
    assert parent.info.run_name == "sweep 2026-12-01 08:59 k" and parent.info.status == "RUNNING"


def test_sigterm_or_ctrl_c_before_recording_keeps_the_run_killed_for_sync(make_cfg, tmp_path, monkeypatch):
    """A stop waits on a tracker only to mark its live run KILLED (at most 1 s): the run is kept pending as KILLED,
    and sync records it, in place of the live run."""
    import threading

    from experiments import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "mine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        app.run(make_cfg(), run_dir(tmp_path))
    for thread in threading.enumerate():  # a live run still being opened (a slow store) is ended once open
        if thread.name.startswith("live-"):
            thread.join(60)
    assert [run.info.status for run in mlflow_runs(tmp_path)] in ([], ["KILLED"])
    assert (run_dir(tmp_path) / PENDING / "mlflow.json").is_file()
    assert sync([str(tmp_path / "outputs")]) == 0
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags["error"].startswith("KeyboardInterrupt")
