"""``dataset=banking77``: the bundled release, the few-shot draw, the full test split, no test query in train."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.datasets.banking77 import Banking77, normalised, readable
from experiments.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "experiments" / "datasets" / "data" / "banking77"


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def release() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return _csv("train.csv"), _csv("test.csv")


def test_release_is_bundled_with_its_licence() -> None:
    assert "Attribution 4.0 International" in (DATA / "LICENSE").read_text(encoding="utf-8")
    attribution = (DATA / "README.md").read_text(encoding="utf-8")
    assert "Casanueva" in attribution and "Creative Commons Attribution 4.0" in attribution


@pytest.mark.parametrize("shots", [1, 5, 10, 30])
def test_shots_are_stratified_per_intent(shots: int, release) -> None:
    splits = Banking77(shots=shots).load()
    per_label = Counter(example.expected[0] for example in splits.train)
    assert len(per_label) == 77 and set(per_label.values()) == {shots}
    assert {category.name for category in splits.categories} == set(per_label)


def test_all_of_train_with_null_shots(release) -> None:
    train, test = release
    held = {normalised(row["text"]) for row in test}
    pool = [row for row in train if normalised(row["text"]) not in held]
    splits = Banking77(shots=None).load()
    assert len(splits.train) == len(pool) == len(train) - 25
    assert [example.input for example in splits.train] == [row["text"].strip() for row in pool]


@pytest.mark.parametrize("shots", [5, None])
def test_eval_is_the_full_test_split_and_no_test_query_is_in_train(shots: int | None, release) -> None:
    _, test = release
    splits = Banking77(shots=shots).load()
    assert len(splits.eval) == len(test) == 3080
    assert [example.input for example in splits.eval] == [row["text"].strip() for row in test]
    assert [example.expected[0] for example in splits.eval] == [readable(row["category"]) for row in test]
    eval_texts = {normalised(example.input) for example in splits.eval}
    assert not [example.input for example in splits.train if normalised(example.input) in eval_texts]


def _words(text: str) -> tuple[str, ...]:
    """A query compared on its words alone (an independent rule: case, spacing and punctuation ignored)."""
    return tuple(re.findall(r"[^\W_]+", text.casefold()))


def test_no_test_query_is_in_train_up_to_case_spacing_and_punctuation() -> None:
    """The release has train queries that differ from a test query only by a space before "?" or a comma for a
    full stop ("How do I change my address ?"); none of them may reach train."""
    splits = Banking77(shots=None).load()
    held = {_words(example.input) for example in splits.eval}
    assert [example.input for example in splits.train if _words(example.input) in held] == []


def test_draw_is_deterministic_and_nested() -> None:
    first, again = Banking77(shots=10, seed=3).load(), Banking77(shots=10, seed=3).load()
    assert first.digest() == again.digest()
    other = Banking77(shots=10, seed=4).load()
    assert {e.input for e in first.train} != {e.input for e in other.train}
    larger = Banking77(shots=30, seed=3).load()
    assert {e.input for e in first.train} <= {e.input for e in larger.train}


def test_draw_is_the_same_in_a_fresh_process() -> None:
    code = "from experiments.datasets.banking77 import Banking77; print(Banking77(shots=5, seed=1).load().digest())"
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in (0, 1)
    }
    assert len(runs) == 1 and runs == {Banking77(shots=5, seed=1).load().digest() + "\n"}


def test_category_names_follow_the_documented_rule() -> None:
    assert readable("card_payment_not_recognised") == "Card payment not recognised"
    assert readable("Refund_not_showing_up") == "Refund not showing up"
    splits = Banking77(shots=1).load()
    names = [category.name for category in splits.categories]
    assert len(set(names)) == 77 and all("_" not in name and name[0].isupper() for name in names)
    assert all(category.description == "" for category in splits.categories)


@pytest.mark.parametrize("shots", [0, -3, 2.5, "ten", True])
def test_bad_shots_is_a_config_error(shots: object) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.shots"):
        Banking77(shots=shots)  # type: ignore[arg-type]


def test_config_group_instantiates() -> None:
    node = OmegaConf.load(ROOT / "conf" / "dataset" / "banking77.yaml")
    dataset = instantiate(node)
    assert isinstance(dataset, Banking77) and dataset.shots == 10 and dataset.seed == 0
    assert dataset.config_dict()["release"].startswith("PolyAI-LDN/task-specific-datasets@")


@pytest.mark.parametrize("name", ["banking77_mining_grid", "banking77_learning_curve"])
def test_experiment_presets_compose_on_banking77(name: str) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    assert cfg.dataset._target_ == "experiments.datasets.banking77.Banking77"
    assert cfg.hydra.sweeper.params  # a named sweep: python run.py -m +experiment=<name>
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"  # ... a sweep even without -m, never one long run by mistake


def test_no_validation_row_to_spare_is_said(caplog) -> None:
    import logging

    from experiments.pipeline import validation_holdout
    from experiments.schema import Knobs

    one_shot = Banking77(shots=1).load()
    with caplog.at_level(logging.WARNING):
        knobs = Knobs.model_validate(
            {"k": 4, "duplication": 2, "seed": 42, "validation_fraction": 0.2, "replicates": 1}
            | {"optimized_metric": "mrr@1", "evaluation": {"bootstrap_resamples": 50}}
            | {"progress": False, "log_model": False}
        )
        assert validation_holdout(one_shot, knobs) == set()
    assert any("holds out no train row" in record.getMessage() for record in caplog.records)


def test_validation_scores_left_out_train_queries_never_test_nor_drawn(release) -> None:
    _, test = release
    tested = {normalised(row["text"]) for row in test}
    splits = Banking77(shots=10, evaluate_on="validation", validation_size=500).load()
    assert len(splits.eval) == 500 and len(splits.train) == 770
    drawn = {normalised(example.input) for example in splits.train}
    scored = {normalised(example.input) for example in splits.eval}
    assert not scored & drawn and not scored & tested
    assert splits.train == Banking77(shots=10).load().train  # the same draw as a test run
    again = Banking77(shots=10, evaluate_on="validation", validation_size=500).load()
    assert [e.input for e in again.eval] == [e.input for e in splits.eval]
    assert splits.digest() != Banking77(shots=10).load().digest()


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        ({"evaluate_on": "dev"}, "dataset.evaluate_on"),
        ({"evaluate_on": "validation", "shots": None}, "dataset.evaluate_on"),
        ({"validation_size": 0}, "dataset.validation_size"),
    ],
)
def test_bad_validation_options_name_the_option(arguments: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        Banking77(**arguments)  # type: ignore[arg-type]


def test_the_ten_shot_splits_are_pinned() -> None:
    """Results on Banking77 were reported on these exact rows: a change to the draw, the pool, the order or the
    names (a refactor of the shared intent-benchmark code, say) would make them incomparable."""
    assert Banking77(shots=10).load().digest() == "4fbca6a170f3ad69c66ecfa2b8f90ae5a166922c74963f57b2bf10f19d1305cb"
    validation = Banking77(shots=10, evaluate_on="validation").load().digest()
    assert validation == "aafeb2193c4006107bf21ca115c17d4952f8981afce6990a6f11ff1c5b79a06e"
