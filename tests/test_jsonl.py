"""User files: both row shapes, the categories file, and one-line errors that name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.datasets.jsonl import JsonlDataset, read_categories, read_numbered_examples
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
    [(line, example)] = read_numbered_examples(write_lines(tmp_path / "t.jsonl", [TRANSACTION]))
    assert line == 1
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
    numbered = read_numbered_examples(write_lines(tmp_path / "e.jsonl", rows))
    assert [(line, e.expected) for line, e in numbered] == [(1, ["a"]), (3, ["b", "c"])]
    assert numbered[1][1].metadata == {"x": 1}


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
        ('{"input": "q", "expected": ["a"], "metadata": {"score": NaN}}', "e.jsonl:2: NaN is not a number JSON allows"),
        (json.dumps(TRANSACTION).replace('"amount": 1273.45', '"amount": Infinity'), "e.jsonl:2: Infinity is not a"),
        (json.dumps(TRANSACTION).replace('"amount": 1273.45', '"amount": 1e999'), "e.jsonl:2: 1e999 is too large"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, message):
    path = write_lines(tmp_path / "e.jsonl", [{"input": "fine", "expected": ["a"]}, line])
    with pytest.raises(DataError) as caught:
        read_numbered_examples(path)
    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_numbered_examples(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no rows"):
        read_numbered_examples(write_lines(tmp_path / "empty.jsonl", [""]))


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
    with pytest.raises(DataError) as caught:
        JsonlDataset(str(train), str(evaluation), str(categories)).load()
    assert str(caught.value) == (
        f"{evaluation}:1: expected: 'zzz' is not in the categories file {categories}; add it there or fix the label."
    )


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"input": "ok", "expected": ["a"]}\n{"input": "caf\xe9", "expected": ["a"]}\n')
    with pytest.raises(DataError) as caught:
        read_numbered_examples(path)
    assert str(caught.value) == f"{path}:2: not UTF-8 text (byte 0xe9 at column 15); save the file as UTF-8."


def test_a_folder_or_an_unreadable_file_is_named(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"is a folder, not a file; point dataset\.train_path at a JSON Lines file"):
        JsonlDataset(str(tmp_path), str(tmp_path)).load()
    path = write_lines(tmp_path / "e.jsonl", [{"input": "q", "expected": ["a"]}])
    monkeypatch.setattr("os.access", lambda *args: False)  # tests run as root, for whom chmod 000 still reads
    with pytest.raises(DataError, match="cannot be read"):
        read_numbered_examples(path)


def test_duplicate_rows_are_counted_and_warned(tmp_path, caplog):
    rows = [{"input": "q1", "expected": ["a"]}, {"input": "q2", "expected": ["a"]}, {"input": "q1", "expected": ["a"]}]
    train = write_lines(tmp_path / "train.jsonl", rows)
    evaluation = write_lines(tmp_path / "eval.jsonl", [{"input": "q3", "expected": ["a"]}])
    with caplog.at_level("WARNING"):
        splits = JsonlDataset(str(train), str(evaluation)).load()
    assert splits.source["train_duplicate_rows"] == 1 and splits.source["eval_duplicate_rows"] == 0
    assert "1 duplicate rows (e.g. line 3 repeats line 1)" in caplog.text


# --- property: any malformed row ends in one line naming the file and line, never a traceback ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)
row_fields = st.sampled_from(["input", "expected", "metadata", *TRANSACTION])
rows = st.one_of(
    json_values,
    st.dictionaries(row_fields, json_values, max_size=8),
    st.builds(lambda changes: {**TRANSACTION, **changes}, st.dictionaries(row_fields, json_values, max_size=3)),
)
raw_lines = st.one_of(
    rows.map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda data: data.decode("latin-1")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=raw_lines)
def test_any_row_is_an_example_or_a_one_line_error(tmp_path, line):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b'{"input": "fine", "expected": ["a"]}\n' + line.replace("\n", " ").encode("utf-8", "replace"))
    try:
        examples = read_numbered_examples(path)
    except DataError as error:
        message = str(error)
        assert message.startswith(f"{path}:") and len(message.splitlines()) == 1
    else:
        assert 1 <= len(examples) <= 2
