"""The bundled synthetic data set: determinism, split, contracts and the consistency of its rules."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from experiments.datasets.synthetic import TRANSACTION_KEYS, SyntheticTransactions
from experiments.datasets.synthetic_catalog import (
    CATEGORIES,
    DEPARTMENT_PROGRAMS,
    MERCHANTS,
    NONE,
    SCENARIOS,
    Scenario,
)
from experiments.datasets.transactions import Transaction
from experiments.errors import ConfigError

NAMES = [category.name for category in CATEGORIES]


@pytest.fixture(scope="module")
def default() -> SyntheticTransactions:
    return SyntheticTransactions()


@pytest.fixture(scope="module")
def noiseless() -> list[Transaction]:
    train, eval_ = SyntheticTransactions(label_noise=0.0).transactions()
    return train + eval_


def _written(tmp_path: Path, name: str, **kwargs: object) -> dict[str, bytes]:
    paths = SyntheticTransactions(**kwargs).write_jsonl(tmp_path / name)
    return {key: path.read_bytes() for key, path in paths.items()}


def _matching_scenarios(row: Transaction) -> list[Scenario]:
    kinds = {kind for kind, merchants in MERCHANTS.items() if any(m.name == row.merchant_name for m in merchants)}
    trip = NONE if row.trip_name is None else ("offsite" if "Offsite" in row.trip_name else "trip")
    return [
        s
        for s in SCENARIOS
        if s.kind in kinds
        and (row.department, row.spend_program_name) in s.pairs()
        and trip in s.trips
        and s.low <= row.amount <= s.high
        and (s.merchants is None or row.merchant_name in s.merchants)
    ]


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    assert _written(tmp_path, "a", seed=3) == _written(tmp_path, "b", seed=3)


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    first, second = _written(tmp_path, "a", seed=0), _written(tmp_path, "b", seed=1)
    assert first["train"] != second["train"]
    assert first["eval"] != second["eval"]
    assert first["categories"] == second["categories"]


def test_written_files_have_the_design_shapes(tmp_path: Path, default: SyntheticTransactions) -> None:
    paths = default.write_jsonl(tmp_path)
    train, eval_ = default.transactions()
    for split, rows in (("train", train), ("eval", eval_)):
        lines = paths[split].read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(rows)
        for line, row in zip(lines, rows, strict=True):
            record = json.loads(line)
            assert tuple(record) == TRANSACTION_KEYS
            assert Transaction.model_validate(record) == row
    categories = json.loads(paths["categories"].read_text(encoding="utf-8"))
    assert [entry["category"] for entry in categories] == NAMES
    assert all(entry["description"] for entry in categories)


def test_size_and_categories(default: SyntheticTransactions) -> None:
    train, eval_ = default.transactions()
    assert len(train) + len(eval_) == 720 >= 600
    assert len(CATEGORIES) >= 25
    assert len(set(NAMES)) == len(NAMES)
    assert all(category.description.strip() for category in CATEGORIES)
    assert {row.expense_category for row in train + eval_} <= set(NAMES)


def test_random_split_is_stratified() -> None:
    train, eval_ = SyntheticTransactions(split="random").transactions()
    assert abs(len(eval_) / (len(train) + len(eval_)) - 0.3) < 0.02
    in_train = Counter(row.expense_category for row in train)
    in_eval = Counter(row.expense_category for row in eval_)
    for name in NAMES:
        assert in_train[name] >= 1 and in_eval[name] >= 1, name
        assert abs(in_eval[name] - 0.3 * (in_train[name] + in_eval[name])) <= 1, name


def test_load_gives_examples_in_the_query_layout(default: SyntheticTransactions) -> None:
    splits = default.load()
    train, eval_ = default.transactions()
    assert splits.name == "synthetic"
    assert splits.categories == list(CATEGORIES)
    assert splits.source == default.config_dict()
    assert [example.input for example in splits.eval] == [row.query_text() for row in eval_]
    assert [example.expected for example in splits.train] == [[row.expense_category] for row in train]
    assert {example.metadata["split"] for example in splits.train} == {"train"}
    assert {example.metadata["split"] for example in splits.eval} == {"eval"}
    layout = re.compile(
        r"Name : [^\n]+\nCategory: [^\n]+\nDepartment: [^\n]+\nLocation: [^\n]+, [A-Z]{2}\n"
        r"Amount: \d+\.\d{1,2}\nCard: [^\n]+\nTrip Name: [^\n]+"
    )
    for example in splits.train + splits.eval:
        assert layout.fullmatch(example.input), example.input


def test_amounts_have_two_decimals_at_most(noiseless: list[Transaction]) -> None:
    assert all(row.amount > 0 and round(row.amount, 2) == row.amount for row in noiseless)


def test_spend_programs_never_name_a_category(noiseless: list[Transaction]) -> None:
    programs = {p for programs in DEPARTMENT_PROGRAMS.values() for p in programs}
    programs |= {row.spend_program_name for row in noiseless}
    for program in programs:
        for name in NAMES:
            assert name.lower() not in program.lower(), (program, name)


def test_trip_names_only_where_intended(noiseless: list[Transaction]) -> None:
    travels = {s.category for s in SCENARIOS if set(s.trips) - {NONE}}
    for row in noiseless:
        if row.trip_name is None:
            assert row.expense_category not in {"Airfare", "Lodging", "Travel Meals"}, row
        else:
            assert row.expense_category in travels, row
            assert row.trip_name.endswith(" - " + row.location.split(",")[0]), row
    assert any(row.trip_name for row in noiseless)
    assert any(row.trip_name is None for row in noiseless)


def test_rules_never_overlap() -> None:
    for first in SCENARIOS:
        assert first.pairs(), first
        assert first.category in NAMES and first.kind in MERCHANTS and first.low < first.high
        for second in SCENARIOS:
            if first.kind != second.kind or first.category == second.category:
                continue
            overlap = (
                set(first.pairs()) & set(second.pairs())
                and set(first.trips) & set(second.trips)
                and first.low <= second.high
                and second.low <= first.high
                and (
                    first.merchants is None or second.merchants is None or set(first.merchants) & set(second.merchants)
                )
            )
            assert not overlap, (first, second)


def test_labels_follow_the_rules(noiseless: list[Transaction], default: SyntheticTransactions) -> None:
    for row in noiseless:
        assert {s.category for s in _matching_scenarios(row)} == {row.expense_category}, row
    train, eval_ = default.transactions()
    noisy = [row for row in train + eval_ if {s.category for s in _matching_scenarios(row)} != {row.expense_category}]
    assert 0 < len(noisy) <= 0.03 * (len(train) + len(eval_))


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"n_transactions": 10}, "n_transactions"),
        ({"n_transactions": 720.0}, "n_transactions"),
        ({"n_transactions": True}, "n_transactions"),
        ({"eval_fraction": 0.0}, "eval_fraction"),
        ({"eval_fraction": 1.0}, "eval_fraction"),
        ({"eval_fraction": "0.3"}, "eval_fraction"),
        ({"seed": 1.5}, "seed"),
        ({"seed": None}, "seed"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"label_noise": 0.5}, "label_noise"),
        ({"split": "bogus"}, "split"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError, match=rf"SyntheticTransactions: {option} .*{re.escape(repr(kwargs[option]))}"):
        SyntheticTransactions(**kwargs)  # type: ignore[arg-type]
