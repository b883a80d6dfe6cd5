"""``dataset.query_fields``: which lines of a transaction enter the query text (default: all seven, unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.datasets.jsonl import JsonlDataset
from experiments.datasets.synthetic import SyntheticLargeTransactions, SyntheticTransactions
from experiments.datasets.transactions import QUERY_FIELDS, TransactionFields
from experiments.errors import ConfigError, DataError

ROW = TransactionFields(
    merchant_name="Harbor Grill",
    merchant_category=["Eating Places, Restaurants"],
    department="Sales",
    location="Berlin, DE",
    amount=120.5,
    spend_program_name="Field Ops Card",
)


def test_default_layout_is_the_seven_lines() -> None:
    assert ROW.query_text() == ROW.query_text(QUERY_FIELDS)
    assert ROW.query_text().splitlines() == [
        "Name : Harbor Grill",
        "Category: Eating Places, Restaurants",
        "Department: Sales",
        "Location: Berlin, DE",
        "Amount: 120.5",
        "Card: Field Ops Card",
        "Trip Name: unknown",
    ]


def test_a_subset_keeps_those_lines_in_layout_order() -> None:
    assert ROW.query_text(("card", "name")) == "Name : Harbor Grill\nCard: Field Ops Card"


def test_synthetic_examples_follow_query_fields() -> None:
    fields = ["name", "category", "department", "card"]
    chosen = SyntheticTransactions(query_fields=fields).load()
    full = SyntheticTransactions().load()
    assert chosen.query_fields == fields and full.query_fields is None
    for short, long in zip(chosen.eval, full.eval, strict=True):
        assert short.expected == long.expected
        assert short.input.splitlines() == [line for i, line in enumerate(long.input.splitlines()) if i in (0, 1, 2, 5)]
    assert SyntheticLargeTransactions(query_fields=["department"]).load().train[0].input.startswith("Department: ")


@pytest.mark.parametrize("fields", [["name", "merchant"], [], "name"])
def test_bad_query_fields_name_the_option_and_the_choices(fields: object) -> None:
    with pytest.raises(ConfigError, match=r"SyntheticTransactions: query_fields.*name"):
        SyntheticTransactions(query_fields=fields)  # type: ignore[arg-type]


def test_jsonl_transaction_rows_follow_query_fields_and_example_rows_refuse_them(tmp_path: Path) -> None:
    paths = SyntheticTransactions().write_jsonl(tmp_path)
    splits = JsonlDataset(str(paths["train"]), str(paths["eval"]), query_fields=["name", "amount"]).load()
    assert splits.query_fields == ["name", "amount"]
    assert all(len(example.input.splitlines()) == 2 for example in splits.train + splits.eval)
    rows = tmp_path / "examples.jsonl"
    rows.write_text(json.dumps({"input": "Name : X", "expected": ["Airfare"]}) + "\n")
    with pytest.raises(DataError, match=r"examples.jsonl:1: an example row .*query_fields=null"):
        JsonlDataset(str(rows), str(rows), query_fields=["name"]).load()
    assert JsonlDataset(str(rows), str(rows)).load().train[0].input == "Name : X"
