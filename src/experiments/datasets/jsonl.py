"""User data: train and eval JSON Lines files and an optional categories file (``dataset=jsonl``).

Each line of a train or eval file is one of the row shapes of docs/data-formats.md, detected per line:

- an example row: ``{"input": str, "expected": [str, ...], "metadata": {...}?}``;
- a transaction row: ``{"merchant_name", "merchant_category": [...], "department", "location", "amount",
  "spend_program_name", "trip_name" (nullable), "expense_category"}``, formatted into the query text.

The categories file is a JSON list of strings, or of objects with a ``"category"`` key and an optional
``"description"``. Without one, the categories are the labels found in the data (train and eval).

Every row is validated before any work starts; the first problem stops the run with ``file:line: field: problem``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from experiments.datasets.transactions import Transaction
from experiments.errors import DataError
from experiments.records import Category, DatasetSplits, Example, unique


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "row"
    return f"{field}: {first['msg']}"


def _validated(model: type[BaseModel], row: Any, where: str) -> Any:
    try:
        return model.model_validate(row)
    except ValidationError as error:
        raise DataError(f"{where}: {_problem(error)}") from None


def read_examples(path: Path, group_by: str | None = None) -> list[Example]:
    """Parse and validate one train or eval file; raises ``DataError`` at the first bad line.

    With ``group_by``, every row must carry that field (a transaction row's key, or an example row's metadata
    key); its value is kept as ``metadata[group_by]`` as a string.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the dataset.*_path option.")
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: row: expected a JSON object, got {type(row).__name__}")
            if "input" in row or "expected" in row:
                examples.append(_grouped(_validated(Example, row, where), row.get("metadata") or {}, group_by, where))
            elif "merchant_name" in row or "expense_category" in row:
                examples.append(_grouped(_validated(Transaction, row, where).to_example(), row, group_by, where))
            else:
                raise DataError(
                    f"{where}: row: neither an example row (input, expected) nor a transaction row "
                    "(merchant_name, ..., expense_category); see docs/data-formats.md for both shapes"
                )
    if not examples:
        raise DataError(f"{path}: no rows; the file must hold at least one example.")
    return examples


def _grouped(example: Example, fields: dict[str, Any], group_by: str | None, where: str) -> Example:
    if group_by is None:
        return example
    if not isinstance(fields, dict) or fields.get(group_by) is None:
        raise DataError(f"{where}: {group_by}: missing; every row needs the dataset.group_by field")
    return example.model_copy(update={"metadata": {**example.metadata, group_by: str(fields[group_by])}})


class _CategoryRow(BaseModel):
    category: str
    description: str = ""


def read_categories(path: Path) -> list[Category]:
    """Parse a categories file: a JSON list of strings or of ``{"category": ..., "description": ...}``."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check dataset.categories_path.")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty JSON list of category names or objects")
    categories: list[Category] = []
    for position, row in enumerate(rows):
        where = f"{path}: item {position}"
        if isinstance(row, str):
            row = {"category": row}
        parsed = _validated(_CategoryRow, row, where)
        if not parsed.category.strip():
            raise DataError(f"{where}: category: must be a non-empty string")
        categories.append(Category(name=parsed.category, description=parsed.description))
    names = [category.name for category in categories]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise DataError(f"{path}: category names must be unique; repeated: {duplicated}")
    return categories


class JsonlDataset:
    """Train/eval examples from the user's files.

    Args:
        train_path: JSON Lines file of train rows (mined and trained on).
        eval_path: JSON Lines file of eval rows (only ever evaluated on).
        categories_path: optional categories file; labels in the data that it lacks are an error.
        group_by: optional field that groups rows (e.g. ``merchant_name`` for transaction rows); see
            ``DatasetSplits.group_key``.
    """

    def __init__(
        self, train_path: str, eval_path: str, categories_path: str | None = None, group_by: str | None = None
    ) -> None:
        self.train_path = train_path
        self.eval_path = eval_path
        self.categories_path = categories_path
        self.group_by = group_by

    def config_dict(self) -> dict[str, object]:
        return {
            "name": "jsonl",
            "train_path": self.train_path,
            "eval_path": self.eval_path,
            "categories_path": self.categories_path,
            "group_by": self.group_by,
        }

    def load(self) -> DatasetSplits:
        train = read_examples(Path(self.train_path), self.group_by)
        evaluation = read_examples(Path(self.eval_path), self.group_by)
        labels = unique([label for example in train + evaluation for label in example.expected])
        if self.categories_path:
            categories = read_categories(Path(self.categories_path))
            known = {category.name for category in categories}
            unknown = [label for label in labels if label not in known]
            if unknown:
                raise DataError(
                    f"{self.categories_path}: labels used in the data are missing from the categories file: "
                    f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
                )
        else:
            categories = [Category(name=label) for label in sorted(labels)]
        return DatasetSplits(
            name="jsonl",
            train=train,
            eval=evaluation,
            categories=categories,
            source=self.config_dict(),
            group_key=self.group_by,
        )
