"""Sweeps from the outside (real ``run.py -m`` processes): every distinct job gets its own folder whatever its
overrides, a path never nests one, and a failed job or an unreadable record makes the sweep exit 1 with a report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(tmp_path: Path, model: Path, *args: str, trackers: str = "trackers=none") -> subprocess.CompletedProcess[str]:
    """``run.py -m`` on small data with no reranker (seconds per job), into ``tmp_path / "sweep"``."""
    from conftest import write_small_data

    data = write_small_data(tmp_path / "data")
    shrunk = [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "dataset=jsonl",
        f"dataset.train_path={data['train.jsonl']}",
        f"dataset.eval_path={data['eval.jsonl']}",
        f"dataset.categories_path={data['categories.json']}",
        f"embedder.model={model}",
        "reranker=none",
        "evaluation.bootstrap_resamples=20",
        "progress=false",
        "log_model=false",
        *([trackers] if trackers else []),
    ]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", *shrunk, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def job_folders(sweep_dir: Path) -> list[Path]:
    """Every job folder anywhere below ``sweep_dir`` (a folder holding Hydra's ``.hydra``)."""
    return sorted(path.parent for path in sweep_dir.rglob(".hydra"))


def test_jobs_differing_only_in_a_key_left_out_of_folder_names_get_folders_of_their_own(tmp_path, tiny_model_dir):
    """``dataset.eval_path`` is left out of folder names; two eval files still give two folders, two records."""
    from conftest import write_small_data

    other = tmp_path / "other"
    write_small_data(other)
    first, second = tmp_path / "data" / "eval.jsonl", other / "eval.jsonl"
    second.write_text("".join(second.read_text().splitlines(keepends=True)[:12]))  # 12 eval queries, not 30
    completed = sweep(tmp_path, tiny_model_dir, f"dataset.eval_path={first},{second}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    folders = job_folders(tmp_path / "sweep")
    assert len(folders) == 2 and all(folder.parent == tmp_path / "sweep" for folder in folders)
    evaluated = {json.loads((f / "config.json").read_text())["dataset"]["eval_path"] for f in folders}
    assert evaluated == {str(first), str(second)}
    assert sorted(json.loads((f / "metrics.json").read_text())["metrics"]["n_queries"] for f in folders) == [12, 30]
    assert "sweep: 2 of 2 jobs completed" in completed.stdout
    assert len(json.loads((tmp_path / "sweep" / "report.json").read_text())["rows"]) == 2
    # The readable part of a name leaves paths out; the digest after it tells the two apart.
    assert all("eval_path" not in folder.name and "/" not in folder.name for folder in folders)


def test_a_path_value_never_nests_a_job_folder_and_a_failed_job_fails_the_sweep(tmp_path, tiny_model_dir):
    """``paths.mlflow_db=<dir>/x.db`` in a job's overrides: the job folders stay directly under the sweep folder,
    the failed job is found, reported and makes the sweep exit 1 (it said "0 of 0 jobs completed", exit 0)."""
    database = tmp_path / "db" / "x.db"
    completed = sweep(tmp_path, tiny_model_dir, "k=2,-1", f"paths.mlflow_db={database}", trackers="")
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    folders = job_folders(tmp_path / "sweep")
    assert len(folders) == 2 and all(folder.parent == tmp_path / "sweep" for folder in folders)
    assert "sweep: 1 of 2 jobs completed" in completed.stdout
    [failed] = [line for line in completed.stdout.splitlines() if line.startswith("failed: ")]
    assert "k=-1" in failed and "greater than or equal to 0" in failed
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "## Failed jobs" in report and "k=-1" in report
    assert database.is_file()  # the path was used, only not as a folder name


def test_a_sweep_whose_every_job_failed_exits_1_with_a_report_of_the_failures(tmp_path, tiny_model_dir):
    completed = sweep(tmp_path, tiny_model_dir, "k=-1,-2")
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert "sweep: 0 of 2 jobs completed" in completed.stdout
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "No winner" in report and "k=-1" in report and "k=-2" in report
    assert "Traceback" not in completed.stderr


def test_a_corrupt_record_is_redone_and_one_left_in_the_sweep_folder_fails_it(tmp_path, tiny_model_dir):
    completed = sweep(tmp_path, tiny_model_dir, "k=2,3")
    assert completed.returncode == 0, completed.stderr[-3000:]
    by_k = {json.loads((f / "config.json").read_text())["k"]: f for f in job_folders(tmp_path / "sweep")}
    (by_k[3] / "metrics.json").write_text('{"metrics": ')  # cut short: a full disk, a crash mid-copy

    again = sweep(tmp_path, tiny_model_dir, "k=2,3")  # the rerun redoes the corrupt job and reuses the other
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("reused: ") == 1
    assert json.loads((by_k[3] / "metrics.json").read_text())["metrics"]["n_queries"] == 30

    (by_k[3] / "per_query.jsonl").write_text("not json\n")
    only_k2 = sweep(tmp_path, tiny_model_dir, "k=2")  # k=3 is not run again, but its record is in the folder
    assert only_k2.returncode == 1, only_k2.stdout[-3000:] + only_k2.stderr[-3000:]
    assert "sweep: 1 of 2 jobs completed" in only_k2.stdout
    [failed] = [line for line in only_k2.stdout.splitlines() if line.startswith("failed: ")]
    assert f"{by_k[3] / 'per_query.jsonl'}:1" in failed
    report = json.loads((tmp_path / "sweep" / "report.json").read_text())
    assert [label for label, _ in report["failed"]] == [by_k[3].name]
