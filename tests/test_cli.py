"""The real command line: one-line errors for user mistakes, and a sweep grouped under one MLflow parent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def shrunk(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    from experiments.datasets.synthetic import SyntheticTransactions

    data = tmp_path / "data"
    SyntheticTransactions(seed=0).write_jsonl(data)
    return [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={data / 'train.jsonl'}",
        f"dataset.eval_path={data / 'eval.jsonl'}",
        f"dataset.categories_path={data / 'categories.json'}",
        f"embedder.model={tiny_model_dir}",
        "evaluation.bootstrap_resamples=100",
        "progress=false",
    ]


def test_malformed_file_is_one_line_exit_2_and_no_run_recorded(tmp_path, tiny_model_dir):
    overrides = shrunk(tmp_path, tiny_model_dir)
    bad = tmp_path / "data" / "train.jsonl"
    lines = bad.read_text().splitlines()
    row = json.loads(lines[2])
    row["amount"] = "twelve"
    lines[2] = json.dumps(row)
    bad.write_text("\n".join(lines) + "\n")
    completed = run_cli(*overrides, "reranker=none")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        f"error: {bad}:3: amount: Input should be a valid number, unable to parse string as a number"
    )
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not list((tmp_path / "outputs").glob("runs/*/*/metrics.json"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("k=99", "error: k=99: there are only 31 categories"),
        ("miner.rank_min=9", "error: miner: CosineMiner: rank_min=9"),
        ("reranker.learning_rate=-1", "error: reranker: FinetunedBiEncoder: learning_rate=-1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, tiny_model_dir, override, expected):
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), "miner=cosine", "miner.rank_max=3", override)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines()[-1].startswith(expected)
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_sweep_runs_every_combination_under_one_parent(tmp_path, tiny_model_dir):
    import mlflow

    completed = run_cli("-m", *shrunk(tmp_path, tiny_model_dir), "reranker=none", "miner=random,cosine", "k=2,3")
    assert completed.returncode == 0, completed.stderr[-2000:]
    folders = sorted(path.parent.name for path in (tmp_path / "outputs" / "multirun").glob("*/*/*/metrics.json"))
    assert len(folders) == 4
    # Named after the overrides, paths left out, then a digest of them all (two jobs never share a folder).
    assert [re.fullmatch(r"(.*)_[0-9a-f]{10}", name).group(1) for name in folders] == [
        f"dataset=jsonl,evaluation.bootstrap_resamples=100,k={k},miner={miner},reranker=none"
        for k in (2, 3)
        for miner in ("cosine", "random")
    ]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    parents = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parents[0].info.run_id}
    assert all(run.info.status == "FINISHED" for run in runs)
    # Under Hydra the params and run names name the chosen options; the parent carries the winner and the report.
    assert {run.data.params["miner"] for run in children} == {"random", "cosine"}
    assert sorted(run.info.run_name for run in children)[0] == "cosine-k2-d2-none"
    [parent] = parents
    # The parent is named by when it started and what it varies, never by a path.
    assert re.fullmatch(r"sweep \d{4}-\d\d-\d\d \d\d:\d\d miner x k", parent.info.run_name), parent.info.run_name
    report = json.loads(next((tmp_path / "outputs" / "multirun").glob("*/*/report.json")).read_text())
    winner = json.loads((Path(report["winner_folder"]) / "metrics.json").read_text())["metrics"]["reranker"]
    assert parent.data.params["winner"] == report["winner"]
    assert parent.data.params["miner"] == report["winner_choices"]["miner"]
    assert parent.data.metrics["mrr_at_1"] == pytest.approx(winner["mrr@1"]["mean"])
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/mrr_at_1_per_configuration.png"} <= artifacts
    assert "it is not registered as categoriser@champion" in completed.stdout  # chosen on eval: not registered


def test_a_missing_required_option_is_named(tmp_path):
    completed = run_cli(f"paths.outputs_dir={tmp_path}", "dataset=jsonl", "dataset.eval_path=x.jsonl")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        "error: dataset.train_path is required: add dataset.train_path=<value> to the command line."
    )


def test_a_sweep_with_no_trackers_runs_without_a_parent(tmp_path, tiny_model_dir):
    completed = run_cli("-m", *shrunk(tmp_path, tiny_model_dir), "trackers=none", "reranker=none", "k=2,3")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr and "Error" not in completed.stderr
    assert len(list((tmp_path / "outputs" / "multirun").glob("*/*/*/metrics.json"))) == 2
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


@pytest.mark.slow
def test_a_failing_job_never_ends_the_sweep_and_a_rerun_redoes_only_it(tmp_path, tiny_model_dir):
    import mlflow

    sweep_dir = tmp_path / "sweep"
    args = ("-m", *shrunk(tmp_path, tiny_model_dir), "reranker=none", "k=-1,2,3", f"hydra.sweep.dir={sweep_dir}")
    completed = run_cli(*args)
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    assert re.search(
        r"^failed: dataset=jsonl,evaluation.bootstrap_resamples=100,k=-1,reranker=none_[0-9a-f]{10}: k=-1:",
        completed.stdout,
        re.MULTILINE,
    )
    assert "winner: k=" in completed.stdout and (sweep_dir / "report.md").is_file()
    folders = {path.name: path for path in sweep_dir.iterdir() if path.is_dir()}
    done = sorted(name for name, path in folders.items() if (path / "metrics.json").is_file())
    assert [name.split(",")[2] for name in done] == ["k=2", "k=3"]
    [failed] = [path for path in folders.values() if (path / "failed.json").is_file()]
    assert json.loads((failed / "failed.json").read_text())["reason"].startswith("k=-1:")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    children = [
        run
        for run in mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
        if run.data.tags.get("mlflow.parentRunId")
    ]
    assert len(children) == 2 and all(run.info.status == "FINISHED" for run in children)

    stamps = {name: (folders[name] / "metrics.json").stat().st_mtime_ns for name in done}
    failed_stamp = (failed / "failed.json").stat().st_mtime_ns
    again = run_cli(*args)
    assert again.returncode == 1
    assert again.stdout.count("reused: ") == 2  # the completed jobs are not run again ...
    assert {name: (folders[name] / "metrics.json").stat().st_mtime_ns for name in done} == stamps
    assert (failed / "failed.json").stat().st_mtime_ns != failed_stamp  # ... the failed one is


@pytest.mark.slow
def test_a_joblib_sweep_shares_caches_and_one_mlflow_store(tmp_path, tiny_model_dir):
    import mlflow

    completed = run_cli(
        "-m",
        *shrunk(tmp_path, tiny_model_dir),
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "reranker=bi_encoder_finetuned",
        f"reranker.base_model={tiny_model_dir}",
        "reranker.epochs=1",
        "miner=random,cosine",
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "locked" not in completed.stderr.lower()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId")]
    assert sorted(run.info.run_name for run in children) == [
        "cosine-k4-d2-bi_encoder_finetuned epochs=1",
        "random-k4-d2-bi_encoder_finetuned epochs=1",
    ]
    assert "warning: tracker" not in completed.stderr, completed.stderr[-2000:]
    assert all(run.info.status == "FINISHED" for run in runs), [(r.info.run_name, r.info.status) for r in runs]
    models = [path for path in (tmp_path / "outputs" / "cache" / "models").iterdir()]
    assert len(models) == 2 and not any(path.name.startswith(".") for path in models)


@pytest.mark.slow
def test_a_ray_sweep_on_a_local_instance(tmp_path, tiny_model_dir):
    import mlflow

    completed = run_cli("-m", *shrunk(tmp_path, tiny_model_dir), "hydra/launcher=ray", "reranker=none", "k=2,3")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert len(list((tmp_path / "outputs" / "multirun").glob("*/*/*/metrics.json"))) == 2
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    [parent] = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all(run.info.status == "FINISHED" for run in runs)


def test_a_rejected_run_leaves_no_run_folder(tmp_path, tiny_model_dir):
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), "reranker=none", "k=abc")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == (
        "error: k='abc': Input should be a valid integer, unable to parse string as an integer."
    )
    assert not list((tmp_path / "outputs").glob("runs/*/*"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("validation_fraction=abc", "validation_fraction='abc': Input should be a valid number, unable to parse"),
        ("validation_fraction=1.0", "validation_fraction=1.0: Input should be less than 1."),
        ("replicates=abc", "replicates='abc': Input should be a valid integer, unable to parse string as an integer."),
        ("replicates=0", "replicates=0: Input should be greater than or equal to 1."),
        ("log_model=maybe", "log_model='maybe': Input should be a valid boolean (true or false)."),
        ("progress=1", "progress=1: Input should be a valid boolean (true or false)."),
        ("seed=1.5", "seed=1.5: Input should be a valid integer, got a number with a fractional part."),
        ("seed=-1", "seed=-1: Input should be greater than or equal to 0."),
        ("k=-1", "k=-1: Input should be greater than or equal to 0."),
        ("duplication=true", "duplication=True: a number is expected, not true/false."),
        ("~replicates", "replicates is required: add replicates=<value> to the command line"),
    ],
)
def test_a_bad_top_level_knob_is_one_line_exit_2_and_no_run_folder(tmp_path, tiny_model_dir, override, expected):
    completed = run_cli(*shrunk(tmp_path, tiny_model_dir), "reranker=none", override)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines()[-1].startswith(f"error: {expected}")
    assert "Traceback" not in completed.stderr
    assert not list((tmp_path / "outputs").glob("runs/*/*"))
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def start_long_training(tmp_path: Path, tiny_model_dir: Path) -> tuple[subprocess.Popen[str], Path, list[str]]:
    """A 50-epoch bi-encoder run in a subprocess, returned once its temporary model folder exists (training began).

    Returns the process, the model store and the run's arguments (without the epochs).
    """
    import time

    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    args = [*shrunk(tmp_path, tiny_model_dir), "reranker=bi_encoder_finetuned", f"reranker.base_model={tiny_model_dir}"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args, "reranker.epochs=50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    models = tmp_path / "outputs" / "cache" / "models"
    deadline = time.monotonic() + 300
    while not list(models.glob(".*.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(models.glob(".*.tmp-*")), "training never started"
    return process, models, args


@pytest.mark.slow
def test_sigterm_during_training_exits_promptly_and_leaves_no_temporary_model(tmp_path, tiny_model_dir):
    import signal
    import time

    process, models, _ = start_long_training(tmp_path, tiny_model_dir)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert process.returncode == 128 + signal.SIGTERM
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not list(models.glob(".*.tmp-*"))
    assert not list((tmp_path / "outputs").glob("runs/*/*/metrics.json"))
    from test_services import mlflow_runs

    # The live run is marked KILLED (the stop waits at most 1 s for it); the run is kept pending as KILLED for sync.
    assert [run.info.status for run in mlflow_runs(tmp_path)] in ([], ["KILLED"])
    command = [sys.executable, "-m", "experiments.sync", str(tmp_path / "outputs")]
    assert subprocess.run(command, capture_output=True, text=True, timeout=300).returncode == 0
    assert [run.info.status for run in mlflow_runs(tmp_path)] == ["KILLED"]  # not FAILED


#: A SIGTERM that lands inside a finalizer (the test sends it while ``__del__`` sleeps), where Python ignores it.
SIGTERM_IN_A_FINALIZER = """
import pathlib, sys, time
from experiments import app

app.on_sigterm_unwind()
mark = pathlib.Path(sys.argv[1])

class Finalised:
    def __del__(self):
        mark.touch()
        time.sleep(60)

try:
    Finalised()
    time.sleep(60)
except app.Terminated:
    print("unwound", file=sys.stderr)
    sys.exit(3)
"""


def test_a_sigterm_that_lands_in_a_finalizer_still_unwinds_at_once_without_a_traceback(tmp_path):
    """Python ignores (and prints with a traceback) an exception raised in a ``__del__`` or a weakref callback; the
    stop is delivered again instead, so it unwinds the main thread at once, not after the 10 s grace."""
    import signal
    import time

    mark = tmp_path / "in-finalizer"
    command = [sys.executable, "-c", SIGTERM_IN_A_FINALIZER, str(mark)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the finalizer never ran"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert time.monotonic() - stopped < 5  # the grace timer would end it after 10 s
    assert process.returncode == 3 and "unwound" in stderr, stderr
    assert "Exception ignored" not in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_after_kill_9_the_next_run_removes_the_dead_build(tmp_path, tiny_model_dir):
    import signal

    process, models, args = start_long_training(tmp_path, tiny_model_dir)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    [debris] = list(models.glob(".*.tmp-*"))
    completed = run_cli(*args, "reranker.epochs=1")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert not debris.exists()
    assert [path.name.startswith("ft-") for path in models.iterdir()] == [True]


@pytest.mark.slow
def test_a_sweep_chosen_on_validation_registers_its_winner_as_champion(tmp_path, tiny_model_dir):
    import mlflow

    completed = run_cli(
        "-m",
        *shrunk(tmp_path, tiny_model_dir),
        "reranker=bi_encoder_finetuned",
        f"reranker.base_model={tiny_model_dir}",
        "reranker.select_epochs=true",
        "reranker.epochs=2",
        "miner=random,cosine",
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(next((tmp_path / "outputs" / "multirun").glob("*/*/report.json")).read_text())
    assert report["selection_split"] == "validation"
    assert "registered: models:/categoriser@champion" in completed.stdout
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    champion = mlflow.MlflowClient().get_model_version_by_alias("categoriser", "champion")
    winner_run = mlflow.get_run(champion.run_id)
    assert winner_run.data.tags["run_folder"] == str(Path(report["winner_folder"]).resolve())


@pytest.mark.slow
def test_a_killed_sweep_leaves_its_parent_killed_and_a_rerun_reopens_it(tmp_path, tiny_model_dir):
    """SIGTERM in a sweep's job: the parent is not left FINISHED; a rerun of the same folder reuses it."""
    import signal
    import time

    import mlflow

    sweep_dir = tmp_path / "sweep"
    args = [*shrunk(tmp_path, tiny_model_dir), f"hydra.sweep.dir={sweep_dir}"]
    trained = ["reranker=bi_encoder_finetuned", f"reranker.base_model={tiny_model_dir}", "reranker.epochs=50"]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "-m", *args, *trained, "k=2,3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    models = tmp_path / "outputs" / "cache" / "models"
    deadline = time.monotonic() + 300
    while not list(models.glob(".*.tmp-*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert list(models.glob(".*.tmp-*")), "training never started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")

    def parents() -> list:
        runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
        return [run for run in runs if run.data.tags.get("sweep") == "parent"]

    [killed] = parents()
    assert killed.info.status == "RUNNING"  # not FINISHED: the sweep never ended; its process is gone
    again = run_cli("-m", *args, "reranker=none", "k=2,3")
    # Exit 1 when the report lists the killed job's folder (other overrides) as "did not finish"; no crash.
    assert again.returncode in (0, 1) and "Traceback" not in again.stderr, again.stderr[-2000:]
    # The rerun reopens the dead parent (the next run on this host marks a gone process's RUNNING run KILLED
    # first): one parent per sweep folder.
    [parent] = parents()
    assert parent.info.run_id == killed.info.run_id and parent.info.status == "FINISHED"
    children = mlflow.search_runs(
        experiment_names=["reranker-finetuning"],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
        output_format="list",
    )
    assert len(children) == 2
