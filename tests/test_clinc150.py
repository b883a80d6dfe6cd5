"""``dataset=clinc150``: the bundled in-scope release, the few-shot draw, the full test split, no test query in train,
the left-out validation split, and the options named when they are wrong."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from experiments.datasets.clinc150 import Clinc150
from experiments.datasets.intent_benchmark import normalised, readable
from experiments.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "experiments" / "datasets" / "data" / "clinc150"


def _words(text: str) -> tuple[str, ...]:
    """A query compared on its words alone (an independent rule: case, spacing and punctuation ignored)."""
    return tuple(re.findall(r"[^\W_]+", text.casefold()))


@pytest.fixture(scope="module")
def release() -> dict[str, list[tuple[str, str]]]:
    """The bundled CSVs as ``(text, intent)`` rows, read without the module under test."""
    splits = {}
    for name in ("train", "test"):
        with (DATA / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
            splits[name] = [(row["text"], row["category"]) for row in csv.DictReader(handle)]
    return splits


def test_release_is_the_in_scope_full_set_with_its_licence(release) -> None:
    assert "Attribution 3.0 Unported" in (DATA / "LICENSE").read_text(encoding="utf-8")
    attribution = (DATA / "README.md").read_text(encoding="utf-8")
    assert "Larson" in attribution and "Creative Commons Attribution 3.0" in attribution
    assert "828f8093932c8fe6ca7936c3d2e52903b1c523de" in attribution
    intents = json.loads((DATA / "categories.json").read_text(encoding="utf-8"))
    assert len(set(intents)) == 150 and "oos" not in intents
    for name, per_intent in (("train", 100), ("test", 30)):
        counts = Counter(intent for _, intent in release[name])
        assert set(counts) == set(intents) and set(counts.values()) == {per_intent}


@pytest.mark.parametrize("shots", [1, 5, 10, 30])
def test_shots_are_stratified_per_intent(shots: int) -> None:
    splits = Clinc150(shots=shots).load()
    per_label = Counter(example.expected[0] for example in splits.train)
    assert len(per_label) == 150 and set(per_label.values()) == {shots}
    assert {category.name for category in splits.categories} == set(per_label)


def test_an_intent_with_fewer_queries_than_shots_gives_all_it_has(release) -> None:
    """Five "greeting" train queries equal a test query ("hey there!" for "hey there"), so 95 are left to draw."""
    splits = Clinc150(shots=100).load()
    per_intent = Counter(example.metadata["intent"] for example in splits.train)
    assert per_intent["greeting"] == 95 and per_intent["translate"] == 100
    assert len(splits.train) == len(release["train"]) - 20 == 14_980


def test_the_draw_is_seeded_by_the_dataset_name_and_intent(release) -> None:
    """Each intent's rows are its pool rows shuffled by ``clinc150:{seed}:{intent}``, the first ``shots`` kept."""
    held = {_words(text) for text, _ in release["test"]}
    members: dict[str, list[str]] = defaultdict(list)
    for text, intent in release["train"]:
        if _words(text) not in held:
            members[intent].append(text)
    expected = set()
    for intent, texts in members.items():
        order = list(texts)
        random.Random(f"clinc150:2:{intent}").shuffle(order)
        expected.update(order[:7])
    assert {example.input for example in Clinc150(shots=7, seed=2).load().train} == expected


@pytest.mark.parametrize("shots", [5, None])
def test_eval_is_the_full_test_split_and_no_test_query_is_in_train(shots: int | None, release) -> None:
    splits = Clinc150(shots=shots).load()
    assert [(example.input, example.metadata["intent"]) for example in splits.eval] == release["test"]
    assert [example.expected[0] for example in splits.eval] == [readable(intent) for _, intent in release["test"]]
    held = {_words(example.input) for example in splits.eval}
    assert [example.input for example in splits.train if _words(example.input) in held] == []


def test_draw_is_deterministic_nested_and_the_same_in_a_fresh_process() -> None:
    first = Clinc150(shots=10, seed=3).load()
    assert first.digest() == Clinc150(shots=10, seed=3).load().digest()
    assert {e.input for e in first.train} != {e.input for e in Clinc150(shots=10, seed=4).load().train}
    assert {e.input for e in first.train} <= {e.input for e in Clinc150(shots=30, seed=3).load().train}
    code = "from experiments.datasets.clinc150 import Clinc150; print(Clinc150(shots=10, seed=3).load().digest())"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert fresh == first.digest() + "\n"


def test_validation_scores_left_out_train_queries_never_test_nor_drawn(release) -> None:
    tested = {normalised(text) for text, _ in release["test"]}
    splits = Clinc150(shots=10, evaluate_on="validation", validation_size=600).load()
    assert len(splits.eval) == 600 and len(splits.train) == 1500
    drawn = {normalised(example.input) for example in splits.train}
    scored = {normalised(example.input) for example in splits.eval}
    assert not scored & drawn and not scored & tested
    assert splits.train == Clinc150(shots=10).load().train  # the same draw as a test run
    assert {example.metadata["split"] for example in splits.eval} == {"train"}
    again = Clinc150(shots=10, evaluate_on="validation", validation_size=600).load()
    assert [e.input for e in again.eval] == [e.input for e in splits.eval]
    assert len(Clinc150(shots=10, evaluate_on="validation").load().eval) == 4500  # as many as test by default


def test_category_names_follow_the_documented_rule() -> None:
    names = [category.name for category in Clinc150(shots=1).load().categories]
    assert names[:3] == ["Translate", "Transfer", "Timer"]  # the release's order
    assert {"Improve credit score", "Rollover 401k", "W2", "Pto request"} <= set(names)
    assert len(set(names)) == 150 and all("_" not in name and name[0].isupper() for name in names)


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        ({"shots": 0}, "dataset.shots"),
        ({"shots": "ten"}, "dataset.shots"),
        ({"seed": 1.5}, "dataset.seed"),
        ({"evaluate_on": "val"}, "dataset.evaluate_on"),
        ({"evaluate_on": "validation", "shots": None}, "dataset.evaluate_on"),
        ({"validation_size": 0}, "dataset.validation_size"),
    ],
)
def test_bad_options_name_the_option(arguments: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        Clinc150(**arguments)  # type: ignore[arg-type]


def test_config_group_instantiates() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=clinc150", "dataset.shots=5"])
    dataset = instantiate(cfg.dataset)
    assert isinstance(dataset, Clinc150) and dataset.shots == 5 and dataset.seed == 0
    assert dataset.config_dict() == {"name": "clinc150", "shots": 5, "seed": 0, "release": Clinc150.release}
    assert Clinc150.release.startswith("clinc/oos-eval@")


def test_hardness_script_takes_clinc150_and_says_a_bad_shots_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dataset_hardness.py"), "--dataset", "clinc150", "--shots", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: dataset.shots must be a whole number")


def test_the_ten_shot_splits_are_pinned() -> None:
    assert Clinc150(shots=10).load().digest() == "76fbd81c89d0553e5aff1b694d56d34d84cf5cabf36bbde9014158e7a21e4e73"
