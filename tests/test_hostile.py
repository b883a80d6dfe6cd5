"""A hostile tester's findings, each with the real fault: a slow tracker at SIGTERM, a full disk while recording.
Findings 1, 2 and 4 (secrets smuggled through quoted interpolations, redaction on multi-megabyte fields, keys with
a trailing space or CR) are in tests/test_secrets.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cli import ROOT, shrunk
from test_hardening import cli
from test_services import mlflow_runs

from experiments.datasets.jsonl import read_numbered_examples
from experiments.errors import DataError
from experiments.tracking.trackers import PENDING


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), **extra}


# 5. SIGTERM within 2 s whatever the trackers do; KILLED recorded later, by sync.


@contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A tracking server that accepts connections and never answers (a hung proxy, a stalled server); yields its
    URI and the connections it holds (one appears when a tracker starts recording)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    finally:
        stopping.set()
        listener.close()
        for connection in held:
            connection.close()


def started(process: subprocess.Popen[str], ready: Callable[[], bool], limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached the step to stop it in"
        time.sleep(0.1)


def terminated_within(process: subprocess.Popen[str], limit_s: float) -> str:
    process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    took = time.monotonic() - stopping
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert took < limit_s, f"SIGTERM took {took:.1f} s (load {os.getloadavg()[0]:.1f})"
    assert "Traceback" not in stderr
    return stderr


def sync_cli(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "experiments.sync", str(tmp_path / "outputs")]
    return subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=300)


EMBED_SLOWLY = (
    "import pathlib, time\nfrom experiments import pipeline\n"
    "def slow(*args, **kwargs):\n"
    "    pathlib.Path(__import__('os').environ['MARK']).touch()\n"
    "    time.sleep(600)\n"
    "pipeline.embed = slow\n"
)


@pytest.mark.slow
def test_sigterm_during_the_steps_exits_within_2s_with_a_silent_server_and_sync_records_killed(
    tmp_path, tiny_model_dir
):
    args = [*shrunk(tmp_path, tiny_model_dir), "reranker=none"]
    mark = tmp_path / "embedding"
    with silent_server() as (uri, _):
        env = cli_env(MLFLOW_TRACKING_URI=uri, MARK=str(mark))
        process = subprocess.Popen(
            cli(args, EMBED_SLOWLY), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        started(process, mark.exists)
        stderr = terminated_within(process, 2.0)
    [pending] = (tmp_path / "outputs").rglob(f"{PENDING}/mlflow.json")
    assert "python -m experiments.sync" in stderr
    assert sync_cli(tmp_path).returncode == 0  # to the run's own store (no MLFLOW_TRACKING_URI now)
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags["error"].startswith("Terminated")
    assert not pending.exists()


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_run_stopped_while_a_silent_server_records_it_stays_pending_and_syncable(tmp_path, tiny_model_dir, kill):
    """The tracker talks to the server from the run's start (its live run), so recording is told by the run
    folder: complete (metrics.json) and kept pending for the tracker, which the run is from then until it is
    recorded. A stop then never costs the record; before then, it is kept pending as KILLED (the test above)."""
    args = [*shrunk(tmp_path, tiny_model_dir), "reranker=none", "log_model=false"]
    outputs = tmp_path / "outputs"

    def recording() -> bool:
        return any((kept.parent.parent / "metrics.json").is_file() for kept in outputs.rglob(f"{PENDING}/mlflow.json"))

    with silent_server() as (uri, connections):
        process = subprocess.Popen(
            cli(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(MLFLOW_TRACKING_URI=uri)
        )
        started(process, lambda: bool(connections) and recording())  # the server never answered the live run
        if kill == signal.SIGTERM:
            terminated_within(process, 2.0)
        else:
            process.kill()
            process.communicate(timeout=60)
    [pending] = (tmp_path / "outputs").rglob(f"{PENDING}/mlflow.json")
    assert (pending.parent.parent / "metrics.json").is_file()
    assert sync_cli(tmp_path).returncode == 0
    [run] = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED" and "mrr_at_1" in run.data.metrics
    assert not pending.exists()


# 8. Hydra's own user errors: one line, exit 2.


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("miner=nope", "Could not find 'miner/nope'; choose one of: adversarial, cosine"),
        ("foo=1", "Could not override 'foo'; To append to your config use +foo=1"),
        ("trackers=bogus", "Could not find 'trackers/bogus'; choose one of: braintrust, mlflow, none"),
        ("k=[", "no viable alternative at input '['"),
    ],
)
def test_hydra_user_errors_are_one_line_and_exit_2(tmp_path, override, said):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), override, f"paths.outputs_dir={tmp_path / 'outputs'}"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: ") and said in line
    assert not (tmp_path / "outputs").exists()


# 8. Rows a hostile file carries: 200,000-deep JSON, true as an amount, a blank input.

TRANSACTION = {
    "merchant_name": "Acme",
    "merchant_category": ["Software"],
    "department": "IT",
    "location": "Berlin",
    "amount": 12.5,
    "spend_program_name": "Card",
    "expense_category": "Software",
}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[" * 200_000 + "]" * 200_000, "JSON nested too deeply"),
        (json.dumps({**TRANSACTION, "amount": True}), "amount must be a number, not true/false"),
        (json.dumps({"input": "   ", "expected": ["Software"]}), "input must have text"),
    ],
)
def test_hostile_rows_are_one_line_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"input": "fine", "expected": ["Software"]}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_numbered_examples(path, "dataset.train_path")
    assert str(caught.value).startswith(f"{path}:2: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_suggest_refuses_a_deeply_nested_row_in_one_line():
    from experiments.suggest import main as suggest

    with pytest.raises(SystemExit) as stopped:
        suggest(["runs:/0/categoriser", "--row", "[" * 200_000 + "]" * 200_000])
    assert stopped.value.code == 2


def test_a_rejected_run_leaves_no_empty_day_folder(tmp_path):
    outputs = tmp_path / "outputs"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "k=abc", f"paths.outputs_dir={outputs}"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert not list(outputs.glob("runs/*"))


# 7. Serving: rows with no known field and a bad top_n are 400s, not 200s with nothing or a silent default.


@pytest.mark.parametrize(
    ("rows", "params", "message"),
    [
        ([], None, "no row to rank"),
        ([{"input": "coffee"}], {"top_n": 0}, "top_n=0 must be at least 1"),
        ([{"input": "coffee"}], {"top_n": -3}, "must be at least 1"),
        ([{"input": "coffee"}], {"top_n": "many"}, "must be a whole number"),
    ],
)
def test_serving_refuses_requests_it_cannot_answer(rows, params, message):
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from experiments.serving.pyfunc_model import CategoriserModel

    with pytest.raises(MlflowException, match=message) as caught:
        CategoriserModel().predict(None, pd.DataFrame(rows), params)
    assert caught.value.get_http_status_code() == 400


# 6. A team tracking server: artifacts go where the server says, whichever client logs them.


@pytest.mark.slow
def test_artifacts_of_two_clients_go_to_the_servers_artifact_destination(tmp_path):
    import mlflow
    from mlflow import MlflowClient
    from test_hardening import free_port, mlflow_server

    from experiments.tracking.mlflow_tracker import MLflowTracker

    port, store = free_port(), tmp_path / "server"
    uri = f"http://127.0.0.1:{port}"
    with mlflow_server(store, port):
        for client in ("alice", "bob"):  # two machines, each with its own outputs folder
            folder = tmp_path / client
            folder.mkdir()
            tracker = MLflowTracker(tracking_uri=uri, artifact_location=f"file://{folder}/mlartifacts")
            tracker.tracking_uri = uri  # whatever MLFLOW_TRACKING_URI this test process has
            tracker._connect()
            (folder / "note.txt").write_text(client, encoding="utf-8")
            with mlflow.start_run():
                mlflow.log_artifact(str(folder / "note.txt"))
        experiment = MlflowClient(uri).get_experiment_by_name("reranker-finetuning")
    assert not experiment.artifact_location.startswith("file:"), experiment.artifact_location
    assert sorted(path.read_text() for path in (store / "artifacts").rglob("note.txt")) == ["alice", "bob"]
    assert not list(tmp_path.glob("*/mlartifacts"))


# 8. A Braintrust server on a closed port is told as unreachable, not as "error when constructing records".


def test_a_closed_braintrust_port_is_told_as_unreachable(make_cfg, tmp_path, monkeypatch, capsys):
    from test_hardening import free_port
    from test_pipeline import run_dir

    from experiments import app

    monkeypatch.setenv("BRAINTRUST_API_KEY", "bt-closed-port-key-0123456789")
    cfg = make_cfg(
        "trackers=[braintrust]",
        f"trackers.braintrust.app_url=http://127.0.0.1:{free_port()}",
        "trackers.braintrust.timeout_s=20",
    )
    app.run(cfg, run_dir(tmp_path))
    [line] = [line for line in capsys.readouterr().err.splitlines() if "tracker braintrust failed" in line]
    assert "server unreachable" in line and "constructing records" not in line, line
