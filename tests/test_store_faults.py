"""The MLflow store under real faults: a disk that fills while the store is first created or while the model is
logged, and an unreadable ``/proc/stat``. Real tmpfs mounts and a real mount namespace (``unshare -m``); skipped
with the reason where mounts are not allowed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import ROOT, run_cli, shrunk
from test_disks import _mount, _tmpfs

from experiments.tracking.local_store import unusable_store


def remount(folder: Path, size: str) -> None:
    _mount("-o", f"remount,size={size}", str(folder))


def finished_runs(database: Path) -> list[tuple[str]]:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT status FROM runs").fetchall()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _tmpfs(tmp_path / "small", "64k")


@pytest.mark.slow
def test_a_disk_that_fills_while_the_store_is_created_leaves_no_half_store(tmp_path, tiny_model_dir, small_disk):
    database = small_disk / "mlflow.db"
    args = [*shrunk(tmp_path, tiny_model_dir), f"paths.mlflow_db={database}", "reranker=none", "log_model=false"]
    completed = run_cli(*args)
    assert completed.returncode == 2, completed.stderr[-3000:]
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {database}: the disk is full; free space or set paths.mlflow_db")
    assert "Traceback" not in completed.stderr
    assert list(small_disk.iterdir()) == []  # no half-created store, no temporary file

    remount(small_disk, "16m")  # space returns: the next run creates the store and records into it
    again = run_cli(*args)
    assert again.returncode == 0 and "warning: tracker" not in again.stderr, again.stderr[-3000:]
    assert finished_runs(database) == [("FINISHED",)]


def test_a_half_created_store_is_explained_in_one_line(tmp_path, small_disk):
    """A store left half-migrated by an older version (MLflow itself filling the disk) is told, with what to do."""
    database = small_disk / "mlflow.db"
    create = f"import mlflow; mlflow.set_tracking_uri('sqlite:///{database}'); mlflow.get_experiment_by_name('x')"
    subprocess.run([sys.executable, "-c", create], capture_output=True, text=True, timeout=120)
    assert database.is_file()
    remount(small_disk, "16m")

    from experiments.tracking.mlflow_tracker import MLflowTracker

    tracker = MLflowTracker(tracking_uri=f"sqlite:///{database}")
    with pytest.raises(Exception) as caught:
        tracker._connect()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{database} is a half-created MLflow store (")
    assert message.endswith("move it away and rerun, or set paths.mlflow_db=<another file>")
    assert database.is_file()  # the user's file, untouched


def test_only_migration_errors_of_a_local_store_are_taken_for_a_half_created_store() -> None:
    error = RuntimeError("(sqlite3.OperationalError) table evaluation_datasets already exists\n[SQL: CREATE ...]")
    explained = unusable_store("sqlite:////data/mlflow.db", error)
    assert explained is not None and "(table evaluation_datasets already exists: " in str(explained)
    assert unusable_store("http://127.0.0.1:5000", error) is None
    assert unusable_store("sqlite:////data/mlflow.db", RuntimeError("database is locked")) is None


def test_a_garbage_store_file_is_one_line_and_left_alone(tmp_path: Path) -> None:
    from experiments.tracking.mlflow_tracker import MLflowTracker

    database = tmp_path / "mlflow.db"
    database.write_bytes(b"garbage, not a database " * 100)
    with pytest.raises(Exception) as caught:
        MLflowTracker(tracking_uri=f"sqlite:///{database}")._connect()
    assert str(caught.value) == (
        f"{database} is not an SQLite database: move it away and rerun, or set paths.mlflow_db=<a file>"
    )
    assert database.read_bytes().startswith(b"garbage")


def test_register_on_a_garbage_store_is_one_line(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"garbage, not a database " * 100)
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.register", "0" * 32, "--tracking-uri", f"sqlite:///{database}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert completed.stderr.strip() == f"error: cannot open the MLflow store {database}: file is not a database."


@pytest.mark.slow
def test_a_disk_that_fills_while_the_model_is_logged_names_it_and_leaves_no_half_model(tmp_path, tiny_model_dir):
    artifacts = next(_tmpfs(tmp_path / "artifacts", "1m"))  # room for the run's files, not for its model
    try:
        completed = run_cli(
            *shrunk(tmp_path, tiny_model_dir),
            "reranker=none",
            f"trackers.mlflow.artifact_location=file://{artifacts}",
        )
        assert completed.returncode == 2, completed.stderr[-3000:]
        last = completed.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: cannot write {artifacts}/") and "the disk is full" in last, last
        assert "mlflow.db" not in last and "Traceback" not in completed.stderr
        assert "python -m experiments.sync" in last
        models = [path for path in artifacts.rglob("*") if "models" in path.parts and path.is_file()]
        assert models == []  # no half-written model
    finally:
        subprocess.run(["umount", "--lazy", str(artifacts)], check=False)


@pytest.mark.slow
def test_an_unreadable_proc_stat_does_not_stop_recording(tmp_path, tiny_model_dir):
    """``psutil`` reads the boot time from ``/proc/stat`` ("line 'btime' not found" when it cannot)."""
    args = " ".join(f"'{arg}'" for arg in [*shrunk(tmp_path, tiny_model_dir), "reranker=none", "log_model=false"])
    script = f"mount --bind /dev/null /proc/stat && exec {sys.executable} {ROOT / 'run.py'} {args}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /dev/null /proc/stat"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here ({probe.stderr.decode().strip()})")
    completed = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "warning: tracker" not in completed.stderr and "btime" not in completed.stderr, completed.stderr[-3000:]
    assert finished_runs(tmp_path / "outputs" / "mlflow.db") == [("FINISHED",)]
