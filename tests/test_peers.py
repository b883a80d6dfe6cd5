"""``python -m experiments.peers``: every peer on the project's data, its table, paired tests against a project run,
MLflow runs, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import run_folder
from experiments.errors import ConfigError, UserError
from experiments.peers.base import ranked_by_classifier
from experiments.peers.setfit_peer import SetFitPeer

ROOT = Path(__file__).resolve().parents[1]
PEERS = ["sentence_transformers", "setfit", "logistic_regression", "embedding_baseline"]


def small(tmp_path: Path, model: Path, transactions: int = 150) -> list[str]:
    """The project's config shrunk: the bundled generator's small set, the tiny model, outputs under ``tmp_path``."""
    return [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        f"dataset.n_transactions={transactions}",
        f"embedder.model={model}",
        "evaluation.bootstrap_resamples=200",
        "progress=false",
        "k=2",
    ]


def peers_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.peers", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_the_command_runs_every_peer_writes_the_table_and_logs_each_to_mlflow(tmp_path, tiny_model_dir) -> None:
    folder = tmp_path / "peers"
    shrink = ["peers.setfit.num_iterations=1", "peers.sentence_transformers.epochs=1", f"peers_dir={folder}"]
    result = peers_cli(*small(tmp_path, tiny_model_dir), *shrink)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"peers folder: {folder}" in result.stdout and "Peers on dataset=synthetic" in result.stdout
    table = (folder / "table.md").read_text()
    assert [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| peer:")] == [
        f"| peer:{name}" for name in PEERS
    ]
    assert "num_iterations=1, num_iterations_from=set" in table
    records = {name: run_folder.read(folder / name) for name in PEERS}
    queries = {name: run_folder.read_queries(folder / name) for name in PEERS}
    eval_queries = [row.query for row in queries["embedding_baseline"]]
    assert len(eval_queries) == records["setfit"].metrics.n_queries == 45
    assert all([row.query for row in rows] == eval_queries for rows in queries.values())
    # The baseline peer reports the embedding ranking as is; every peer's baseline column is that same ranking.
    assert all(row.reranked_top == row.baseline_top for row in queries["embedding_baseline"])
    assert all(rows[0].baseline_top == queries["embedding_baseline"][0].baseline_top for rows in queries.values())
    assert records["embedding_baseline"].fit is None
    for name in ("sentence_transformers", "setfit", "logistic_regression"):
        fit = records[name].fit
        assert fit is not None and fit.train_seconds > 0 and fit.details["peer"] == name
    # mine_hard_negatives keeps one (query, positive, k=2 negatives) row per distinct (query, positive) pair.
    from hydra.utils import instantiate

    from experiments.api import compose

    train = instantiate(compose(small(tmp_path, tiny_model_dir)).dataset).load().train
    rows = len({(example.input, example.expected[0]) for example in train})
    assert len(train) == 105 and rows == records["sentence_transformers"].finetune_set.items == 97
    assert records["sentence_transformers"].fit.train_pairs == rows * 3  # type: ignore[union-attr]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("reranker-finetuning")
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(f"peer:{name}" for name in PEERS)
    for name in PEERS:
        run = runs[f"peer:{name}"]
        assert run.info.status == "FINISHED"
        assert run.data.params["peer"] == name and run.data.params["dataset"] == "synthetic"
        assert run.data.params["seed"] == "42"
        assert run.data.metrics["mrr_at_1"] == pytest.approx(records[name].metrics.reranker["mrr@1"].mean)
    assert runs["peer:setfit"].data.params["peer.num_iterations"] == "1"


@pytest.fixture(scope="module")
def project_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A project run folder (the embedding baseline as its reranker: reranker=none) on the small data."""
    from experiments.api import run

    tmp_path = tmp_path_factory.mktemp("project")
    folder = tmp_path / "run"
    run([*small(tmp_path, tiny_model_dir), "reranker=none", "trackers=none", "log_model=false"], output_dir=folder)
    return folder


def compare(tmp_path: Path, model: Path, *overrides: str, against: Path | None = None):
    from omegaconf import open_dict

    from experiments.api import compose
    from experiments.peers import compare as peers

    cfg = compose(
        [*small(tmp_path, model), "trackers=none", f"peers_dir={tmp_path / 'peers'}", *overrides],
        name="peer_comparison",
    )
    choices = {str(group): str(option) for group, option in cfg.hydra.runtime.choices.items()}
    with open_dict(cfg):
        del cfg["hydra"]
    return peers.run(cfg, choices, against)


def per_query(folder: Path, metric: str = "mrr@1") -> np.ndarray:
    return np.array([json.loads(line)["reranker"][metric] for line in (folder / "per_query.jsonl").open()])


def test_each_peer_is_paired_with_the_project_run_on_the_same_queries(tmp_path, tiny_model_dir, project_run) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import compare_runs

    comparison = compare(
        tmp_path, tiny_model_dir, "peers=[logistic_regression,embedding_baseline]", against=project_run
    )
    assert comparison.deltas is not None and comparison.p_values is not None
    probe, baseline = comparison.deltas
    # The project run ranked with the embedding baseline: no difference with that peer, p = 1.
    assert (baseline.mean, baseline.ci_low, baseline.ci_high) == (0.0, 0.0, 0.0) and comparison.p_values[1] == 1.0
    difference = per_query(project_run) - per_query(tmp_path / "peers" / "logistic_regression")
    assert probe.mean == pytest.approx(difference.mean()) and probe.ci_low <= probe.mean <= probe.ci_high
    table = (tmp_path / "peers" / "table.md").read_text()
    assert f"| project ({project_run.name}) |" in table and "Holm-adjusted over the 2 peers" in table
    assert f"{probe.mean:+.3f} [{probe.ci_low:+.3f}, {probe.ci_high:+.3f}]" in table
    # A peer's folder is a run folder: compare_runs pairs it with the project run (peer minus project there).
    assert compare_runs.main([str(project_run), str(tmp_path / "peers" / "logistic_regression")]) == 0


def test_a_project_run_on_other_data_is_refused_before_any_work(tmp_path, tiny_model_dir, project_run) -> None:
    with pytest.raises(UserError, match=r"read other data .* same dataset overrides"):
        compare(
            tmp_path, tiny_model_dir, "dataset.n_transactions=160", "peers=[embedding_baseline]", against=project_run
        )
    assert not (tmp_path / "peers").exists()
    with pytest.raises(UserError, match=r"metrics\.json"):
        compare(tmp_path, tiny_model_dir, "peers=[embedding_baseline]", against=tmp_path)


def test_no_peer_and_a_used_folder_are_refused(tmp_path, tiny_model_dir) -> None:
    with pytest.raises(ConfigError, match=r"peers=\[\] chooses no peer"):
        compare(tmp_path, tiny_model_dir, "peers=[]")
    (tmp_path / "peers").mkdir()
    (tmp_path / "peers" / "mine.txt").write_text("kept")
    with pytest.raises(UserError, match="already holds files"):
        compare(tmp_path, tiny_model_dir, "peers=[embedding_baseline]")
    assert [path.name for path in (tmp_path / "peers").iterdir()] == ["mine.txt"]


@pytest.mark.slow
def test_a_bad_option_is_one_line_and_exit_2(tmp_path) -> None:
    result = peers_cli(f"paths.outputs_dir={tmp_path}", "peers.logistic_regression.max_iter=0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and "max_iter=0 must be a whole number of at least 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["peers=[setfit,nope]"], "no peer 'nope' in"),
        (["--bogus"], "unknown option --bogus"),
        (["--against"], "--against needs a project run folder"),
    ],
)
def test_a_bad_argument_is_named(arguments: list[str], says: str) -> None:
    from experiments.api import config_dir
    from experiments.peers.__main__ import check_peer_names, split_arguments

    with pytest.raises(UserError, match=re.escape(says)) as error:
        overrides, _ = split_arguments(arguments)
        check_peer_names(overrides, config_dir())
    assert "\n" not in str(error.value)


def test_the_against_folder_is_taken_from_either_spelling() -> None:
    from experiments.peers.__main__ import split_arguments

    for arguments in (["k=2", "--against", "runs/a"], ["--against=runs/a", "k=2"]):
        assert split_arguments(arguments) == (["k=2"], Path("runs/a"))


def test_a_classifier_ranks_labels_absent_from_train_after_the_known_ones_by_similarity() -> None:
    labels = ["a", "b", "c", "d"]
    probabilities = np.array([[0.1, 0.9], [0.6, 0.4]])  # columns: the classifier's classes "c", "a"
    similarity = np.array([[0.5, 0.9, 0.1, -0.3], [0.2, -0.1, 0.8, 0.4]])
    scores = ranked_by_classifier(probabilities, ["c", "a"], labels, similarity)
    assert scores.tolist() == [[0.9, 0.9 - 2, 0.1, -0.3 - 2], [0.4, -0.1 - 2, 0.6, 0.4 - 2]]
    assert [labels[i] for i in np.argsort(-scores[0])] == ["a", "c", "b", "d"]


def test_setfit_matches_the_projects_pair_count_unless_told() -> None:
    # The project's default: duplication 2 x (1 + k 4) pairs per example and epoch, 3 epochs = 30; SetFit: 2 per
    # iteration.
    assert SetFitPeer(project_k=4, project_duplication=2, project_epochs=3).iterations() == 15
    assert SetFitPeer(project_k=3, project_duplication=1, project_epochs=1).iterations() == 2
    assert SetFitPeer(num_iterations=20).iterations() == 20
    with pytest.raises(ConfigError, match=r"set peers\.setfit\.num_iterations"):
        SetFitPeer(project_k=4, project_duplication=2)
