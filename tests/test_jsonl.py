"""User files: both row shapes, the categories file, and one-line errors that name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.datasets.jsonl import JsonlDataset, read_categories, read_examples
from experiments.errors import DataError

TRANSACTION = {
    "merchant_name": "Ayden",
    "merchant_category": ["Financial Software"],
    "department": "Finance",
    "location": "Berlin, DE",
    "amount": 1273.45,
    "spend_program_name": "Enterprise Technology Services",
    "trip_name": None,
    "expense_category": "Subscription & Revenue Infrastructure",
}


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_transaction_rows_become_the_seed_query_layout(tmp_path):
    [example] = read_examples(write_lines(tmp_path / "t.jsonl", [TRANSACTION]))
    assert example.input.splitlines() == [
        "Name : Ayden",
        "Category: Financial Software",
        "Department: Finance",
        "Location: Berlin, DE",
        "Amount: 1273.45",
        "Card: Enterprise Technology Services",
        "Trip Name: unknown",
    ]
    assert example.expected == ["Subscription & Revenue Infrastructure"]


def test_example_rows_and_blank_lines(tmp_path):
    rows = [{"input": "q1", "expected": ["a"]}, "", {"input": "q2", "expected": ["b", "c"], "metadata": {"x": 1}}]
    examples = read_examples(write_lines(tmp_path / "e.jsonl", rows))
    assert [e.expected for e in examples] == [["a"], ["b", "c"]]
    assert examples[1].metadata == {"x": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "e.jsonl:2: not valid JSON"),
        (json.dumps({"input": "q", "expected": []}), "e.jsonl:2: expected:"),
        (json.dumps({"input": "q", "expected": "a"}), "e.jsonl:2: expected:"),
        (json.dumps({"input": "", "expected": ["a"]}), "e.jsonl:2: input:"),
        (json.dumps({**TRANSACTION, "amount": "lots"}), "e.jsonl:2: amount:"),
        (json.dumps({k: v for k, v in TRANSACTION.items() if k != "department"}), "e.jsonl:2: department:"),
        (json.dumps({"query": "q"}), "e.jsonl:2: row: neither"),
        (json.dumps(["a"]), "e.jsonl:2: row: expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, message):
    path = write_lines(tmp_path / "e.jsonl", [{"input": "fine", "expected": ["a"]}, line])
    with pytest.raises(DataError) as caught:
        read_examples(path)
    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no rows"):
        read_examples(write_lines(tmp_path / "empty.jsonl", [""]))


def test_categories_file_shapes(tmp_path):
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["a", "b"]))
    assert [c.name for c in read_categories(names)] == ["a", "b"]
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps([{"category": "a", "description": "about a", "owner": "x"}]))
    [category] = read_categories(objects)
    assert category.document(with_description=True) == "a: about a"
    duplicated = tmp_path / "dup.json"
    duplicated.write_text(json.dumps(["a", "a"]))
    with pytest.raises(DataError, match="unique"):
        read_categories(duplicated)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "a"}]))
    with pytest.raises(DataError, match="item 0: category"):
        read_categories(bad)


def test_dataset_without_categories_uses_the_labels_found(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", [{"input": "q1", "expected": ["b"]}])
    evaluation = write_lines(tmp_path / "eval.jsonl", [{"input": "q2", "expected": ["a"]}])
    splits = JsonlDataset(str(train), str(evaluation)).load()
    assert splits.category_names == ["a", "b"]


def test_labels_missing_from_the_categories_file_are_an_error(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", [{"input": "q1", "expected": ["b"]}])
    evaluation = write_lines(tmp_path / "eval.jsonl", [{"input": "q2", "expected": ["zzz"]}])
    categories = tmp_path / "c.json"
    categories.write_text(json.dumps(["b"]))
    with pytest.raises(DataError, match=r"missing from the categories file: \['zzz'\]"):
        JsonlDataset(str(train), str(evaluation), str(categories)).load()
