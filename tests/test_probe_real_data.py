"""What a stranger tried on the real-data surfaces: a learning curve drawn only where it means one, and the
hardness script's bad arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_peers import compare, project_run  # noqa: F401 (project_run: a fixture)
from test_sweeps import N_QUERIES, fake_job

from experiments.errors import UserError
from experiments.sweeps.plots import learning_curve_series, plot_learning_curve
from experiments.sweeps.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def _job(sweep: Path, name: str, overrides: dict[str, object], train: int, *, queries: str = "q", dataset: str = "d"):
    """A completed job of ``dataset`` trained on ``train`` rows over 77 labels, swept by ``overrides``."""
    rng = np.random.default_rng(len(name))
    made = fake_job(sweep / "made", "kmeans", 4, list((rng.random(N_QUERIES) < 0.6).astype(float)))
    folder = made.rename(sweep / name)
    (sweep / "made").rmdir()
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["dataset"].update(name=dataset, train=train, categories=77)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = [json.loads(line) for line in (folder / "per_query.jsonl").read_text().splitlines()]
    text = "".join(json.dumps({**row, "query": f"{queries}{i}"}) + "\n" for i, row in enumerate(rows))
    (folder / "per_query.jsonl").write_text(text)


def test_no_learning_curve_across_data_sets_or_eval_sets(tmp_path: Path) -> None:
    """``-m dataset=synthetic,banking77`` (or ``dataset.split=merchant,random``) differs in train rows per label,
    but its runs are scored on other queries: a line through them is not a learning curve."""
    _job(tmp_path, "dataset=synthetic", {"dataset": "synthetic"}, 31 * 90, queries="transaction", dataset="synthetic")
    _job(tmp_path, "dataset=banking77", {"dataset": "banking77"}, 77 * 10, queries="query", dataset="banking77")
    report = write_report(tmp_path, metric="mrr@1")
    assert "mrr_at_1_learning_curve.png" not in {path.name for path in report.plots}
    assert plot_learning_curve(tmp_path, report.rows, "mrr@1") is None


def test_learning_curve_has_one_point_per_size_in_each_line(tmp_path: Path) -> None:
    """``-m dataset.shots=5,10 dataset.seed=0,1``: one line per draw seed, each with one point per size (not one
    line zig-zagging between the seeds at every size); the size knob itself names no line."""
    for shots in (5, 10):
        for seed in (0, 1):
            overrides = {"dataset.shots": shots, "dataset.seed": seed}
            _job(tmp_path, f"dataset.seed={seed},dataset.shots={shots}", overrides, 77 * shots)
    report = write_report(tmp_path, metric="mrr@1")
    series = learning_curve_series(report.rows, "mrr@1")
    lines = {name: [size for size, _ in points] for name, points in series.items()}
    assert lines == {
        "kmeans / bi_encoder_finetuned (dataset.seed=0)": [5.0, 10.0],
        "kmeans / bi_encoder_finetuned (dataset.seed=1)": [5.0, 10.0],
        "embedding baseline (zero-shot)": [5.0, 10.0],
    }
    assert "mrr_at_1_learning_curve.png" in {path.name for path in report.plots}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dataset", "banking77", "--shots", "0"], "error: dataset.shots must be a whole number"),
        (["--dataset", "synthetic", "--n", "0"], "error: "),
    ],
)
def test_hardness_bad_values_are_one_line_exit_2(arguments: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dataset_hardness.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith(message)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}/no-model", "dataset=banking77"], "error: {tmp}/no-model: not a model folder"),
        (["{tiny}", "dataset=no_such_data_set"], "error: "),
        (["{tiny}", "dataset=banking77", "dataset.shots=0"], "error: dataset: dataset.shots must be"),
        (["{tiny}", "dataset=banking77", "validation_fraction=0"], "error: validation_fraction=0"),
        (["{tiny}", "dataset=banking77", "dataset.shots=1"], "error: no validation rows"),
    ],
)
def test_label_heads_bad_arguments_are_one_line_exit_2(
    arguments: list[str], message: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A missing model folder, a bad option, a run without a validation split (validation_fraction=0, or one
    query per intent: no label can spare one) are one line and exit 2, before any model loads."""

    def filled(text: str) -> str:
        return text.format(tmp=tmp_path, tiny=tiny_model_dir)

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "label_heads.py"), *map(filled, arguments)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith(filled(message))


def test_mining_grid_chooses_its_winner_on_validation() -> None:
    """The preset chooses its winner on a validation split of train, never on test: its runs score the train
    queries the 10-shot draw left out (dataset.evaluate_on=validation), and the sweep report chooses there."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=banking77_mining_grid"])
    assert cfg.replicates == 3 and cfg.dataset.evaluate_on == "validation"
    splits = instantiate(cfg.dataset).load()
    assert {example.metadata["split"] for example in splits.eval} == {"train"} and len(splits.eval) == 3080


def _planted(project: Path, folder: Path, change) -> Path:
    """A copy of ``project`` whose per_query.jsonl rows went through ``change`` (a hand-edited or damaged file)."""
    import shutil

    shutil.copytree(project, folder)
    rows = [json.loads(line) for line in (folder / "per_query.jsonl").read_text().splitlines()]
    (folder / "per_query.jsonl").write_text("".join(json.dumps(change(row)) + "\n" for row in rows))
    return folder


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda row: {**row, "reranker": {}}, r"per_query\.jsonl:1: reranker has no mrr@1"),
        (lambda row: {**row, "reranker": {**row["reranker"], "mrr@1": float("nan")}}, r"per_query\.jsonl:1: .*nan"),
    ],
)
def test_a_planted_project_run_is_one_line(tmp_path, tiny_model_dir, project_run, change, says) -> None:  # noqa: F811
    """``--against`` a run folder whose per-query scores lack the compared metric (was a KeyError traceback) or are
    not numbers (was a table of nan differences beside p = 0.0002) is refused in one line, before any peer runs."""
    planted = _planted(project_run, tmp_path / "planted", change)
    with pytest.raises(UserError, match=says):
        compare(tmp_path, tiny_model_dir, "peers=[embedding_baseline]", against=planted)
    assert not (tmp_path / "peers").exists()


def test_a_peers_dir_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, tiny_model_dir) -> None:
    """peers_dir naming a file, or a folder under a file, is one line naming it (was NotADirectoryError, the second
    only after the data was loaded and embedded); the file is left as it was."""
    (tmp_path / "notes.txt").write_text("mine")
    for folder in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "peers"):
        with pytest.raises(UserError, match=rf"peers_dir={re.escape(str(folder))}: "):
            compare(tmp_path, tiny_model_dir, "peers=[embedding_baseline]", f"peers_dir={folder}")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_project_run_of_another_seed_is_refused(tmp_path, tiny_model_dir, project_run) -> None:  # noqa: F811
    """The peers are compared with a project run "on the same train / eval / seeds": a run made with seed=42 is not
    paired with peers run at seed=43 (it was, under the table's "seed 43")."""
    with pytest.raises(UserError, match=r"seed=42 .* seed=43"):
        compare(tmp_path, tiny_model_dir, "peers=[embedding_baseline]", "seed=43", against=project_run)
    assert not (tmp_path / "peers").exists()
