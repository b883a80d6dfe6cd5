"""What a run folder can hold never runs, what a user owns is never removed (a key never leaving the
process: tests/test_secrets.py).

Each test drives the real command (``run.py``, ``python -m experiments.sync``) in a subprocess against real files,
as docs/guarantees.md promises.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import ROOT, shrunk
from test_hardening import cli_env, free_port

from experiments.tracking.pending import PENDING


def run_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "run.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env or cli_env(), timeout=600, cwd=ROOT)


def sync(outputs: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "experiments.sync", str(outputs)]
    return subprocess.run(command, capture_output=True, text=True, env=env or cli_env(), timeout=300)


# Never executed: a pending run is data.


class Planted:
    """Unpickling this runs a shell command: what a hostile ``pending-trackers/*.pickle`` would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_sync_never_unpickles_a_planted_pickle(tmp_path):
    marker = tmp_path / "executed"
    folder = tmp_path / "outputs" / "2026-01-01" / "run"
    (folder / PENDING).mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"trackers": {"mlflow": {}}}))
    (folder / PENDING / "mlflow.pickle").write_bytes(pickle.dumps(Planted(marker)))
    (folder / PENDING / "braintrust.pickle.sending-1").write_bytes(pickle.dumps(Planted(marker)))  # a stale claim

    completed = sync(tmp_path / "outputs")

    assert not marker.exists()
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"error: {folder / PENDING}/") and "(and 1 more)" in line
    assert "never loaded" in line and "rerun that run to record it, or delete the file yourself" in line
    assert (folder / PENDING / "mlflow.pickle").is_file()  # refused, not removed: the user decides


def test_sync_builds_no_class_a_run_folder_names(tmp_path):
    marker = tmp_path / "executed"
    folder = tmp_path / "outputs" / "run"
    (folder / PENDING).mkdir(parents=True)
    killed = {"failed": {"name": "r", "params": {}, "error": "Terminated", "status": "KILLED"}}
    (folder / PENDING / "mlflow.json").write_text(json.dumps(killed))
    opens = {"_target_": "builtins.open", "_args_": [str(marker), "w"]}  # creates (or truncates) any file
    partial = {"_target_": "experiments.tracking.mlflow_tracker.MLflowTracker", "_partial_": True}
    nested = {"_target_": "experiments.tracking.mlflow_tracker.MLflowTracker", "experiment": opens}
    for node in (opens, partial, nested):
        (folder / "config.json").write_text(json.dumps({"trackers": {"mlflow": node}}))

        completed = sync(tmp_path / "outputs")

        assert not marker.exists()
        assert completed.returncode == 2, completed.stderr
        assert completed.stderr.splitlines() == [
            f"error: {folder / 'config.json'}: trackers.mlflow is not a tracker of this project "
            "(experiments.tracking.*, no nested _target_, no other _key_); sync builds nothing else from a run folder."
        ]
        assert (folder / PENDING / "mlflow.json").is_file()  # still pending


def test_a_pending_record_that_is_not_the_schema_is_one_line(tmp_path):
    folder = tmp_path / "outputs" / "run"
    (folder / PENDING).mkdir(parents=True)
    (folder / PENDING / "mlflow.json").write_text('{"format": 1, "finished": {"name": "r"}, "extra": 1}')

    completed = sync(tmp_path / "outputs")

    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"error: {folder / PENDING / 'mlflow.json'}: not a pending run this version reads (")
    assert (folder / PENDING / "mlflow.json").is_file()


def test_a_tracker_config_json_cannot_build_is_one_line(tmp_path):
    folder = tmp_path / "outputs" / "run"
    (folder / PENDING).mkdir(parents=True)
    killed = {"failed": {"name": "r", "params": {}, "error": "Terminated", "status": "KILLED"}}
    (folder / PENDING / "mlflow.json").write_text(json.dumps(killed))
    node = {"_target_": "experiments.tracking.mlflow_tracker.MLflowTracker", "nonsense": 1}
    (folder / "config.json").write_text(json.dumps({"trackers": {"mlflow": node}}))

    completed = sync(tmp_path / "outputs")

    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        f"error: {folder / 'config.json'}: trackers.mlflow cannot be built (TypeError: MLflowTracker.__init__() got "
        "an unexpected keyword argument 'nonsense')."
    ]
    assert (folder / PENDING / "mlflow.json").is_file()


def test_pending_record_round_trips_through_sync(tmp_path, tiny_model_dir):
    """A run whose tracker is down is kept as JSON; sync sends it whole, the categoriser model included."""
    import mlflow

    args = [
        *shrunk(tmp_path, tiny_model_dir),
        "reranker=bi_encoder_finetuned",
        f"reranker.base_model={tiny_model_dir}",
        "reranker.epochs=1",
        "reranker.select_epochs=false",
        "trackers.mlflow.timeout_s=20",
    ]
    down = run_py(*args, env=cli_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}"))
    assert down.returncode == 0, down.stderr[-3000:]
    [pending] = (tmp_path / "outputs").rglob(f"{PENDING}/*")
    assert pending.name == "mlflow.json"
    record = json.loads(pending.read_text())
    assert record["format"] == 1 and record["finished"]["categoriser"]["reranker"]["model_dir"]

    sent = sync(tmp_path / "outputs")
    assert sent.returncode == 0 and "sync: 1 run(s) sent, 0 still pending" in sent.stdout, sent.stderr[-3000:]
    assert not pending.exists()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    [run] = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    metrics = json.loads((pending.parent.parent / "metrics.json").read_text())["metrics"]
    assert run.info.status == "FINISHED" and run.data.metrics["mrr_at_1"] == metrics["reranker"]["mrr@1"]["mean"]
    assert run.data.params["reranker"] == "bi_encoder_finetuned"
    assert run.data.tags["experiments.run_uid"] == record["finished"]["tags"]["experiments.run_uid"]
    model = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/categoriser", dst_path=tmp_path / "m"))
    [package] = {path.parent for path in model.rglob("categoriser.json")}
    spec = json.loads((package / "categoriser.json").read_text())
    vectors = np.load(package / "category_vectors.npy", allow_pickle=False)
    assert vectors.shape == (len(spec["categories"]), 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert (package / spec["reranker"]["model_dir"] / "model.safetensors").is_file()  # the fine-tuned model shipped


# Never deleted: a rejected run removes only what it made.


def test_rejected_run_keeps_a_folder_it_did_not_create(tmp_path):
    mine = tmp_path / "my-logs"
    mine.mkdir()
    (mine / "notes.log").write_text("kept\n")
    (mine / "run.log").write_text("mine\n")  # the name Hydra logs the run to
    fresh = tmp_path / "new" / "day" / "run"

    for folder in (mine, fresh):
        rejected = run_py("k=abc", f"hydra.run.dir={folder}", f"paths.outputs_dir={tmp_path / 'outputs'}")
        assert rejected.returncode == 2 and "error: " in rejected.stderr, rejected.stderr[-2000:]

    assert sorted(path.name for path in mine.iterdir()) == ["notes.log", "run.log"]  # .hydra/ (the run's) is gone
    assert (mine / "notes.log").read_text() == "kept\n"
    assert (mine / "run.log").read_text().startswith("mine\n")  # Hydra appends to it; never removed
    assert not (tmp_path / "new").exists()  # every folder the run made, and nothing else
    assert not (tmp_path / "outputs").exists()


def test_rejected_api_run_leaves_no_folder(tmp_path):
    import experiments
    from experiments.errors import UserError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.log").write_text("kept\n")
    for folder in (tmp_path / "day" / "run", mine):
        with pytest.raises(UserError, match=r"^k='abc': "):
            experiments.run(["k=abc", f"paths.outputs_dir={tmp_path / 'outputs'}"], output_dir=folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine"]
    assert [path.name for path in mine.iterdir()] == ["keep.log"]


def test_a_pending_summary_kept_by_the_earlier_version_still_reads():
    """Records kept before the typed run files wrote ``systems`` and ``low``/``high``: sync must still send them."""
    from pydantic import ValidationError

    from experiments.metrics import METRIC_NAMES
    from experiments.records.run import Summary
    from experiments.tracking.pending import FinishedRecord, summary_of_earlier_records

    def old(mean: float) -> dict[str, float]:
        return {"mean": mean, "low": mean - 0.1, "high": mean + 0.1}

    earlier = {
        "n_queries": 3,
        "systems": {"baseline": {m: old(0.4) for m in METRIC_NAMES}, "reranker": {m: old(0.7) for m in METRIC_NAMES}},
        "delta": {m: old(0.3) for m in METRIC_NAMES},
        "latency_ms": {"p50": 1.0},
        "candidate_recall": 1.0,
    }
    summary = Summary.model_validate(summary_of_earlier_records(earlier))
    assert summary.reranker["mrr@1"].mean == 0.7 and summary.reranker["mrr@1"].ci_high == pytest.approx(0.8)
    assert summary.baseline["recall@5"].ci_low == pytest.approx(0.3) and summary.delta["mrr@1"].mean == 0.3

    def summary_errors(value: object) -> list[tuple]:
        with pytest.raises(ValidationError) as caught:  # the other fields are missing: only summary's errors matter
            FinishedRecord.model_validate({"summary": value})
        return [error["loc"] for error in caught.value.errors() if error["loc"][0] == "summary"]

    assert summary_errors(earlier) == []  # the record reads the earlier shape
    broken = {**earlier, "delta": {m: {"mean": 0.3} for m in METRIC_NAMES}}
    assert summary_errors(broken)  # a damaged one is still refused
