"""What a user points the tool at, from the outside: ``suggest --input`` reads a stream (``-``, a FIFO,
``/dev/stdin``), an amount must be a finite number wherever a transaction enters, and JSON nested 200,000 deep is
one line with exit 2, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_cli import ROOT
from test_hardening import cli_env
from test_serving import TRANSACTION, LoggedRun, log_run

from experiments.serving.rows import RowError, query_text
from experiments.tracking.pending import PENDING

DEEP = "[" * 200_000 + "]" * 200_000


def suggest_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.suggest", *args, "--no-progress"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=300,
    )


def run_py(tmp_path: Path, data: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``run.py`` on ``data``'s train.jsonl and eval.jsonl, with nothing tracked or logged."""
    return subprocess.run(
        [
            sys.executable, str(ROOT / "run.py"), f"paths.outputs_dir={tmp_path / 'outputs'}", "dataset=jsonl",
            f"dataset.train_path={data / 'train.jsonl'}", f"dataset.eval_path={data / 'eval.jsonl'}",
            "reranker=none", "trackers=none", "log_model=false", *overrides,
        ],
        capture_output=True, text=True, env=cli_env(), timeout=300,
    )  # fmt: skip


def one_error_line(completed: subprocess.CompletedProcess) -> str:
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def logged_none(tmp_path_factory, tiny_model_dir) -> LoggedRun:
    """A logged categoriser without a reranker: the cheapest model ``suggest`` can load."""
    return log_run(tmp_path_factory.mktemp("none"), tiny_model_dir, "none")


def test_suggest_reads_stdin_a_fifo_and_dev_stdin(logged_none, tmp_path):
    run = logged_none
    rows = Path(run.data["eval.jsonl"]).read_text()
    expected = [row["reranked_top"] for row in run.per_query()]
    env = cli_env(MLFLOW_TRACKING_URI=run.tracking_uri)

    # "-": standard input, ranked to standard output when no --output is given.
    completed = suggest_cli(run.run_id, "--input", "-", stdin=rows, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [json.loads(line)["categories"] for line in completed.stdout.splitlines()] == expected
    assert "ranked 30 rows" in completed.stderr

    # A named pipe, written by another thread while suggest reads it: the pipe stays a pipe.
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(rows))
    writer.start()
    output = tmp_path / "from-fifo.jsonl"
    completed = suggest_cli(run.run_id, "--input", str(fifo), "--output", str(output), env=env)
    writer.join(timeout=60)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [json.loads(line)["categories"] for line in output.read_text().splitlines()] == expected
    assert fifo.is_fifo()

    # /dev/stdin fed by a pipe; a bad row in the stream is named by the stream's name and line.
    bad = rows + json.dumps({**TRANSACTION, "amount": "NaN"}) + "\n"
    output = tmp_path / "from-dev-stdin.jsonl"
    completed = suggest_cli(run.run_id, "--input", "/dev/stdin", "--output", str(output), stdin=bad, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "skipped: /dev/stdin:31: amount: Input should be a finite number" in completed.stderr
    assert [json.loads(line)["categories"] for line in output.read_text().splitlines()] == expected
    assert not list(Path("/dev").glob("stdin*.jsonl*"))


def test_a_bad_stream_stops_before_the_model_loads_naming_stdin():
    row = json.dumps({**TRANSACTION, "amount": "1e400"})
    line = one_error_line(suggest_cli("runs:/0/categoriser", "--input", "-", "--strict", stdin=f"{row}\n"))
    assert line == "error: <stdin>:1: amount: Input should be a finite number (--strict stops at the first bad row)"


@pytest.mark.parametrize("amount", ["NaN", "1e400", "-Infinity"])
def test_an_amount_that_is_not_a_finite_number_is_refused_everywhere(tmp_path, amount):
    """run.py's data files, suggest's --row, and the served model's rows (the same query_text) refuse it alike."""
    data = tmp_path / "data"
    data.mkdir()
    good = {"input": "Name : Acme", "expected": ["Software"]}
    labelled = {**TRANSACTION, "amount": amount, "expense_category": "Software"}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(labelled) + "\n")
    (data / "eval.jsonl").write_text(json.dumps(good) + "\n")
    said = one_error_line(run_py(tmp_path, data))
    assert said == f"error: {data / 'train.jsonl'}:2: amount: Input should be a finite number"

    row = json.dumps({**TRANSACTION, "amount": amount})
    assert one_error_line(suggest_cli("runs:/0/categoriser", "--row", row)) == (
        "error: --amount: Input should be a finite number"
    )
    with pytest.raises(RowError, match=r"^amount: Input should be a finite number$"):
        query_text({**TRANSACTION, "amount": amount})


def test_a_categories_file_nested_200000_deep_is_one_line_exit_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = json.dumps({"input": "Name : Acme", "expected": ["Software"]}) + "\n"
    (data / "train.jsonl").write_text(good)
    (data / "eval.jsonl").write_text(good)
    (data / "categories.json").write_text(DEEP)
    line = one_error_line(run_py(tmp_path, data, f"dataset.categories_path={data / 'categories.json'}"))
    assert line.startswith(f"error: {data / 'categories.json'}: ") and "nested too deeply" in line


def test_a_model_folder_whose_spec_is_nested_200000_deep_is_one_line_exit_2(logged_none, tmp_path):
    """A downloaded model folder (``suggest <folder>``) with a damaged ``categoriser.json``: named, no traceback."""
    import mlflow

    mlflow.set_tracking_uri(logged_none.tracking_uri)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged_none.model_uri, dst_path=str(tmp_path)))
    [spec] = folder.rglob("categoriser.json")
    spec.write_text(DEEP)
    line = one_error_line(suggest_cli(str(folder), "--query", "Name : Uber"))
    assert line.startswith("error: ") and f"{spec}: nested too deeply" in line


def test_a_run_folder_config_nested_200000_deep_is_one_line_exit_2(tmp_path):
    """``experiments.sync <folder>`` reads each pending run's ``config.json``: a deep one is named, no traceback."""
    folder = tmp_path / "outputs" / "run"
    (folder / PENDING).mkdir(parents=True)
    killed = {"failed": {"name": "r", "params": {}, "error": "Terminated", "status": "KILLED"}}
    (folder / PENDING / "mlflow.json").write_text(json.dumps(killed))
    (folder / "config.json").write_text(DEEP)
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.sync", str(tmp_path / "outputs")],
        capture_output=True, text=True, env=cli_env(), timeout=300,
    )  # fmt: skip
    assert one_error_line(completed).startswith(f"error: {folder / 'config.json'}: no trackers.mlflow")
    assert (folder / PENDING / "mlflow.json").is_file()  # still pending


def test_the_served_model_refuses_an_amount_that_is_not_finite(logged_none):
    """The logged model (what ``mlflow models serve`` runs) refuses it with the same words as a data file."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(logged_none.tracking_uri)
    model = mlflow.pyfunc.load_model(logged_none.model_uri)
    for amount in ("NaN", "1e400", float("inf")):
        with pytest.raises(mlflow.exceptions.MlflowException, match="row 2: amount: Input should be a finite number"):
            model.predict(pd.DataFrame([TRANSACTION, {**TRANSACTION, "amount": amount}]))
