"""A run's context tags name the commit that ran, and say so when the checkout had uncommitted changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.tracking.context import DIRTY_TAG, run_context


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    script = tmp_path / "run.py"
    script.write_text("print('run')\n")
    _git(tmp_path, "add", "run.py")
    _git(tmp_path, "commit", "-qm", "one")
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_clean_checkout_names_its_commit_and_no_dirty_flag(checkout: Path) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    (checkout / "notes.txt").write_text("untracked files do not make a checkout dirty\n")
    tags = run_context()
    assert tags["mlflow.source.git.commit"] == commit
    assert DIRTY_TAG not in tags


def test_uncommitted_changes_to_tracked_files_are_flagged(checkout: Path) -> None:
    (checkout / "run.py").write_text("print('changed')\n")
    assert run_context()[DIRTY_TAG] == "true"


def test_the_commit_is_the_running_scripts_not_the_first_one_resolved_in_the_process(
    checkout: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's git provider keeps its first answer for the process; a later script's checkout is still named."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    elsewhere = tmp_path_factory.mktemp("no-checkout") / "other.py"
    elsewhere.write_text("print('other')\n")
    monkeypatch.setattr(sys, "argv", [str(elsewhere)])
    assert "mlflow.source.git.commit" not in run_context()
    monkeypatch.setattr(sys, "argv", [str(checkout / "run.py")])
    assert run_context()["mlflow.source.git.commit"] == commit
