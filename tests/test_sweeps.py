"""Sweeps: the job records, the paired statistics, and the report built from job folders alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.errors import UserError
from experiments.metrics import METRIC_NAMES
from experiments.sweeps.callback import planned_jobs
from experiments.sweeps.jobs import read_job, record_failure
from experiments.sweeps.report import main as report_main
from experiments.sweeps.report import write_report
from experiments.sweeps.stats import holm, paired_delta, sign_flip_p_value

N_QUERIES = 40
RELEASE_0_1 = Path(__file__).parent / "data" / "run-folder-0.1"


def fake_job(sweep: Path, miner: str, k: int, hits: list[float], train_seconds: float = 10.0) -> Path:
    """A completed job folder as the pipeline writes it, with mrr@1 per query given by ``hits``."""
    folder = sweep / f"k={k},miner={miner}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"miner={miner}", f"k={k}"]))
    choices = {"miner": miner, "reranker": "bi_encoder_finetuned", "hydra/launcher": "basic"}
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (folder / "config.json").write_text(json.dumps({"k": k}))
    top = {"baseline_top": ["a"], "baseline_scores": [0.5], "reranked_top": ["a"], "reranked_scores": [0.5]}
    rows = [
        {
            "query": f"q{i}",
            "expected": ["a"],
            **top,
            "reranker": dict.fromkeys(METRIC_NAMES, hits[i]),
            "baseline": dict.fromkeys(METRIC_NAMES, 0.0),
            "rerank_ms": 1.0,
        }
        for i in range(N_QUERIES)
    ]
    (folder / "per_query.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    mean = float(np.mean(hits))
    block = {name: {"mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1} for name in METRIC_NAMES}
    zero = {name: {"mean": 0.25, "ci_low": 0.2, "ci_high": 0.3} for name in METRIC_NAMES}
    # Everything but the numbers under test as a real run wrote it (the checked-in 0.1 run folder).
    metrics = json.loads((RELEASE_0_1 / "metrics.json").read_text())
    metrics["metrics"].update(reranker=block, baseline=zero, delta=block, n_queries=N_QUERIES)
    metrics["finetune_id"] = f"ft-{miner}{k}"
    metrics["fit"].update(train_seconds=train_seconds, loss_history=[[10, 2.0], [20, 1.5], [30, 1.1]], selection={})
    for key in ("validation", "replicates"):
        metrics.pop(key)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    strong = (rng.random(N_QUERIES) < 0.9).astype(float)
    fake_job(tmp_path, "kmeans", 4, list(strong))
    fake_job(tmp_path, "kmeans", 2, list(np.where(np.arange(N_QUERIES) < 2, 0.0, strong)))  # 2 queries worse
    fake_job(tmp_path, "random", 4, list(np.where(np.arange(N_QUERIES) < 30, 0.0, strong)))  # far worse
    fake_job(tmp_path, "random", 2, list(np.where(np.arange(N_QUERIES) < 25, 0.0, strong)))
    failed = tmp_path / "k=0,miner=random"
    (failed / ".hydra").mkdir(parents=True)
    record_failure(failed, UserError("k=0: the number of negatives per item must be at least 1"), user_error=True)
    return tmp_path


def test_holm_adjusts_in_step_down_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_sign_flip_test_separates_a_real_difference_from_noise() -> None:
    better = np.ones(40)
    assert sign_flip_p_value(np.zeros(40), better) < 0.001
    assert sign_flip_p_value(better, better) == 1.0
    noise = np.random.default_rng(1).random(40) < 0.5
    assert sign_flip_p_value(noise.astype(float), np.roll(noise, 1).astype(float)) > 0.05
    delta = paired_delta(np.zeros(40), better)
    assert (delta.mean, delta.ci_low, delta.ci_high) == (-1.0, -1.0, -1.0)


def test_report_ranks_tests_and_plots_from_folders_alone(sweep: Path) -> None:
    report = write_report(sweep, metric="mrr@1")
    labels = [row.label for row in report.rows]
    assert labels == ["k=4,miner=kmeans", "k=2,miner=kmeans", "k=2,miner=random", "k=4,miner=random"]
    assert report.selection_split == "eval"  # these runs report no validation split
    by_label = {row.label: row for row in report.rows}
    assert by_label["k=4,miner=random"].p_adjusted < 0.05  # far worse: significant after Holm
    assert by_label["k=2,miner=kmeans"].p_adjusted > 0.05  # two queries worse: not significant
    assert by_label["k=4,miner=random"].vs_best.mean == pytest.approx(
        by_label["k=4,miner=random"].metrics["mrr@1"].mean - report.winner.metrics["mrr@1"].mean
    )
    markdown = report.markdown_path.read_text()
    assert "**Winner: k=4,miner=kmeans**" in markdown and "biased upward" in markdown
    assert f"{report.winner.metrics['mrr@1'].mean:.3f}" in markdown
    assert "p (Holm)" in markdown and "ft-kmeans4" in markdown
    assert "k=0,miner=random`: k=0: the number of negatives" in markdown
    assert "<table>" in report.html_path.read_text()
    saved = json.loads((sweep / "report.json").read_text())
    assert saved["winner"] == "k=4,miner=kmeans" and len(saved["rows"]) == 4
    import matplotlib.image

    names = sorted(path.name for path in report.plots)
    assert names == ["mrr_at_1_per_configuration.png", "mrr_at_1_vs_k.png", "winner_loss.png"]
    for path in report.plots:
        assert matplotlib.image.imread(path).shape[0] > 200  # a real, readable image


def test_validation_numbers_pick_the_winner_when_present(sweep: Path) -> None:
    loser = sweep / "k=4,miner=random" / "metrics.json"
    metrics = json.loads(loser.read_text())
    for path in sweep.glob("*/metrics.json"):
        other = json.loads(path.read_text())
        other["validation"] = {
            "reranker": {"mrr@1": {"mean": 0.99 if path == loser else 0.5}},
            "queries": 9,
            "chosen": 1,
        }
        path.write_text(json.dumps(other))
    report = write_report(sweep, metric="mrr@1")
    assert report.selection_split == "validation"
    assert report.winner.label == "k=4,miner=random"
    assert metrics["metrics"]["reranker"]["mrr@1"]["mean"] < 0.5  # worse on eval, chosen on validation all the same


def test_with_replicates_the_winner_is_chosen_on_the_seeds_mean_validation(sweep: Path) -> None:
    """One seed's validation favours ``kmeans``; the three seeds' mean favours ``random``: the mean decides."""
    for path in sweep.glob("*/metrics.json"):
        other = json.loads(path.read_text())
        first, mean = (0.9, 0.6) if "kmeans" in path.parent.name else (0.7, 0.7)
        other["validation"] = {"reranker": {"mrr@1": {"mean": first}}, "queries": 9, "chosen": 1}
        stat = {"mean": 0.5, "sd": 0.0, "values": [0.5, 0.5, 0.5]}
        other["replicates"] = {
            "n": 3,
            "seeds": [42, 43, 44],
            **{name: stat for name in ("recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5")},
            "validation": {"mrr@1": {"mean": mean, "sd": 0.1, "values": [first, mean, 2 * mean - first]}},
        }
        path.write_text(json.dumps(other))
    report = write_report(sweep, metric="mrr@1")
    assert report.selection_split == "validation" and report.selection_seeds == 3
    assert report.winner.label.endswith("miner=random") and report.winner_value == pytest.approx(0.7)
    assert "on the validation split (mean of 3 seeds)" in report.markdown_path.read_text()
    assert json.loads((sweep / "report.json").read_text())["selection_seeds"] == 3
    assert "| mrr@1 over seeds (mean ± sd, n) |" in report.markdown_path.read_text()
    assert "| 0.500 ± 0.000 (3) |" in report.markdown_path.read_text()


def test_the_report_command_regenerates_and_rejects_bad_folders(sweep: Path, tmp_path: Path, capsys) -> None:
    assert report_main([str(sweep), "--metric", "recall@5"]) == 0
    assert "winner:" in capsys.readouterr().out
    assert report_main([str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty)]) == 2
    assert "no completed job" in capsys.readouterr().err


def test_job_records_and_planned_jobs(sweep: Path) -> None:
    failed = read_job(sweep / "k=0,miner=random")
    assert failed.status == "failed" and failed.reason.startswith("k=0")
    assert read_job(sweep / "k=4,miner=kmeans").overrides == {"miner": "kmeans", "k": "4"}
    assert planned_jobs(["miner=random,cosine,kmeans", "k=2,4", "seed=1"]) == 6
    assert planned_jobs(["k=range(1,4)"]) == 3


def test_a_reused_model_shows_its_stored_training(sweep: Path, tmp_path: Path) -> None:
    """The winner reused a model trained earlier: the report shows `reused` with the stored time and loss curve."""
    models = tmp_path / "models"
    stored = {"train_seconds": 42.5, "loss_history": [[10, 2.0], [20, 1.6], [30, 1.2], [40, 0.9]]}
    (models / "ft-kmeans4").mkdir(parents=True)
    (models / "ft-kmeans4" / "COMPLETE.json").write_text(json.dumps(stored))
    winner = sweep / "k=4,miner=kmeans"
    metrics = json.loads((winner / "metrics.json").read_text())
    metrics["fit"] = {**metrics["fit"], "reused": True, "train_seconds": 0.0, "loss_history": [[40, 0.9]]}
    (winner / "metrics.json").write_text(json.dumps(metrics))
    (winner / "config.json").write_text(json.dumps({"k": 4, "paths": {"models_dir": str(models)}}))
    report = write_report(sweep, metric="mrr@1")
    assert report.winner.label == "k=4,miner=kmeans"
    assert report.winner.training.cell == "reused, 42.5"
    assert report.winner.training.loss_history == [tuple(point) for point in stored["loss_history"]]  # the plot
    assert "| reused, 42.5 |" in report.markdown_path.read_text()
    saved = json.loads((sweep / "report.json").read_text())["rows"][0]
    assert saved["reused"] is True and saved["train_seconds"] == 42.5
    assert report.rows[1].training.cell == "10.0"  # trained in its own run


def test_ties_on_the_selection_metric_are_named_and_broken_by_the_stated_rule(tmp_path: Path) -> None:
    hits = list((np.random.default_rng(3).random(N_QUERIES) < 0.7).astype(float))
    fake_job(tmp_path, "kmeans", 4, hits, train_seconds=20.0)
    fake_job(tmp_path, "random", 4, hits, train_seconds=5.0)  # the same scores, trained faster
    fake_job(tmp_path, "random", 2, [0.0] * N_QUERIES)
    report = write_report(tmp_path, metric="mrr@1")
    assert [row.label for row in report.rows[:2]] == ["k=4,miner=random", "k=4,miner=kmeans"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ties"] == [
        {"value": pytest.approx(np.mean(hits)), "configurations": [r.label for r in report.rows[:2]]}
    ]
    assert "Tie on mrr@1 (eval): k=4,miner=random, k=4,miner=kmeans at" in report.markdown_path.read_text()
    assert "shorter stored training time first" in report.markdown_path.read_text()


def test_progress_counts_this_invocation_and_names_reused_jobs(tmp_path: Path, capsys) -> None:
    import os
    import time
    from types import SimpleNamespace

    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from experiments.sweeps.callback import SweepMonitor

    labels = ["k=2,miner=a", "k=2,miner=b", "k=4,miner=a", "k=4,miner=b"]
    for label in labels[:2]:  # completed by an earlier invocation (killed later)
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text("{}")
        os.utime(tmp_path / label / "metrics.json", (time.time() - 60, time.time() - 60))

    def config(label: str) -> object:
        hydra = {
            "mode": RunMode.MULTIRUN,
            "sweep": {"dir": str(tmp_path)},
            "overrides": {"task": ["k=2,4", "miner=a,b"]},
            "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
            "job": {"override_dirname": label, "num": labels.index(label)},
            "runtime": {"output_dir": str(tmp_path / label)},
        }
        return OmegaConf.create({"hydra": hydra, "optimized_metric": "mrr@1"})

    monitor = SweepMonitor()
    monitor.on_multirun_start(config(labels[0]))
    done = SimpleNamespace(return_value=0.5, status=SimpleNamespace(name="COMPLETED"))
    for label in labels:
        if not (tmp_path / label).exists():
            (tmp_path / label).mkdir()
            (tmp_path / label / "metrics.json").write_text("{}")
        monitor.on_job_end(config(label), done)
    lines = [line for line in capsys.readouterr().err.splitlines() if "finished" in line]
    assert lines == [
        "sweep: 1/4 finished; k=2,miner=a: reused",
        "sweep: 2/4 finished; k=2,miner=b: reused",
        "sweep: 3/4 finished; k=4,miner=a: done",
        "sweep: 4/4 finished; k=4,miner=b: done",
    ]


def test_a_cache_folder_added_or_moved_is_the_same_configuration(tmp_path: Path, monkeypatch) -> None:
    """A rerun of a sweep reuses a completed job when only where its caches live (or its progress bars) changed."""
    from experiments.sweeps import jobs

    config = {"k": 4, "miner": {"_target_": "KMeansMiner", "n_clusters": 6}, "paths": {"cache_dir": "/a"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / jobs.run_folder.METRICS_FILE).write_text("{}")

    class Record:
        def reranked(self, metric: str) -> float:
            return 0.5

    monkeypatch.setattr(jobs.run_folder, "read", lambda folder: Record())
    monkeypatch.setattr(jobs.run_folder, "read_queries", lambda folder: [])
    moved = {**config, "paths": {"cache_dir": "/b"}, "progress": False}
    moved["miner"] = {**config["miner"], "cache_dir": "/b/kmeans"}  # a knob added since: where a cache lives
    assert jobs.completed_metric(tmp_path, moved, "mrr@1") == 0.5
    changed = {**moved, "miner": {**moved["miner"], "n_clusters": 8}}
    assert jobs.completed_metric(tmp_path, changed, "mrr@1") is None


def test_runs_of_one_data_set_in_other_query_layouts_pair_query_by_query(sweep: Path) -> None:
    """A sweep over ``dataset.query_fields`` scores the same transactions with other texts: their scores pair (the
    same data set less its query lines, the same labels in order); another data set's do not."""
    layouts = {"k=4,miner=kmeans": None, "k=2,miner=kmeans": ["name", "card"], "k=4,miner=random": ["name"]}
    for name, fields in layouts.items():
        folder = sweep / name
        seed = 1 if name == "k=4,miner=random" else 0  # another data set: its queries are other transactions
        dataset = {"_target_": "SyntheticTransactions", "seed": seed, "query_fields": fields}
        (folder / "config.json").write_text(json.dumps({"k": 4, "dataset": dataset}))
        rows = (folder / "per_query.jsonl").read_text().splitlines()
        layout = "".join(json.dumps({**json.loads(row), "query": f"{fields} {i}"}) + "\n" for i, row in enumerate(rows))
        (folder / "per_query.jsonl").write_text(layout)
    by_label = {row.label: row for row in write_report(sweep, metric="mrr@1").rows}
    assert by_label["k=2,miner=kmeans"].vs_best is not None and by_label["k=2,miner=kmeans"].p_value is not None
    assert by_label["k=4,miner=random"].vs_best is None  # other transactions: no pairing
    assert by_label["k=2,miner=random"].vs_best is None  # no config to tell: texts differ, so no pairing


def test_learning_curve_when_train_examples_per_label_vary(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for shots, rate in ((5, 0.5), (10, 0.7), (30, 0.9)):
        made = fake_job(tmp_path / "made", "kmeans", 4, list((rng.random(N_QUERIES) < rate).astype(float)))
        folder = made.rename(tmp_path / f"dataset.shots={shots}")
        (tmp_path / "made").rmdir()
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["dataset"].update(train=shots * 77, categories=77)
        (folder / "metrics.json").write_text(json.dumps(metrics))
    from experiments.sweeps.plots import plot_learning_curve
    from experiments.sweeps.report import write_report as build

    report = build(tmp_path, metric="mrr@1")
    assert "mrr_at_1_learning_curve.png" in {path.name for path in report.plots}
    assert plot_learning_curve(tmp_path, report.rows[:1], "mrr@1") is None  # one size: no curve
