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

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from experiments.datasets.fields import clip
from experiments.datasets.transactions import QUERY_FIELDS, Transaction, check_query_fields
from experiments.errors import DataError
from experiments.records import Category, DatasetSplits, Example, unique

log = logging.getLogger(__name__)


def problem(error: ValidationError) -> str:
    """The first validation problem as ``field: message`` (``row`` for the row as a whole; nested fields dotted)."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "row"
    return f"{field}: {first['msg']}"


def validated(model: type[BaseModel], row: Any, where: str) -> Any:
    try:
        return model.model_validate(row)
    except ValidationError as error:
        raise DataError(f"{where}: {problem(error)}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows; use a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large to be a finite number")
    return value


def _readable(path: Path, option: str) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file; point {option} at a JSON Lines file.")
    if path.exists() and not path.is_file():
        raise DataError(
            f"{path}: not a regular file (a pipe or a device, read only once); save it to a file for {option}."
        )
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the {option} option.")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied); check the file's permissions or {option}.")


def numbered_lines(path: Path, option: str, name: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line; bytes that are not UTF-8 name their line (and the file as
    ``name``, when that is not ``path``: a stream's temporary copy is named as the stream)."""
    _readable(path, option)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{name or path}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                    f"{error.start + 1}); save the file as UTF-8."
                ) from None
            if line.strip():
                yield number, line


def read_numbered_examples(
    path: Path,
    option: str = "dataset.*_path",
    group_by: str | None = None,
    query_fields: tuple[str, ...] = QUERY_FIELDS,
) -> list[tuple[int, Example]]:
    """Parse and validate one train or eval file into ``(line number, example)``; stops at the first bad line.

    With ``group_by``, every row must carry that field (a transaction row's key, or an example row's metadata
    key); its value is kept as ``metadata[group_by]`` as a string. Transaction rows are formatted with the
    ``query_fields`` lines; an example row is refused when they are a subset (its text is already formatted).
    """
    examples: list[tuple[int, Example]] = []
    for number, line in numbered_lines(path, option):
        where = f"{path}:{number}"
        try:
            row = json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        except RecursionError:
            raise DataError(f"{where}: row: JSON nested too deeply (a row is one flat object)") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: row: expected a JSON object, got {type(row).__name__}")
        if "input" in row or "expected" in row:
            if query_fields != QUERY_FIELDS:
                raise DataError(
                    f"{where}: an example row (input, expected), but dataset.query_fields picks lines of "
                    "transaction rows; use transaction rows or set dataset.query_fields=null"
                )
            if isinstance(row.get("input"), str):
                row["input"] = clip(row["input"])
            example = _grouped(validated(Example, row, where), row.get("metadata") or {}, group_by, where)
        elif "merchant_name" in row or "expense_category" in row:
            example = _grouped(validated(Transaction, row, where).to_example(query_fields), row, group_by, where)
        else:
            raise DataError(
                f"{where}: row: neither an example row (input, expected) nor a transaction row "
                "(merchant_name, ..., expense_category); see docs/data-formats.md for both shapes"
            )
        examples.append((number, example))
    if not examples:
        raise DataError(f"{path}: no rows; the file is empty.")
    return examples


def _grouped(example: Example, fields: dict[str, Any], group_by: str | None, where: str) -> Example:
    if group_by is None:
        return example
    if not isinstance(fields, dict) or fields.get(group_by) is None:
        raise DataError(f"{where}: {group_by}: missing; every row needs the dataset.group_by field")
    return example.model_copy(update={"metadata": {**example.metadata, group_by: str(fields[group_by])}})


def duplicate_rows(numbered: list[tuple[int, Example]]) -> list[tuple[int, int]]:
    """``(line, line of its first copy)`` for every row that repeats an earlier row's input and labels."""
    first: dict[tuple[str, tuple[str, ...]], int] = {}
    repeats: list[tuple[int, int]] = []
    for number, example in numbered:
        key = (example.input, tuple(example.expected))
        if key in first:
            repeats.append((number, first[key]))
        else:
            first[key] = number
    return repeats


class _CategoryRow(BaseModel):
    category: str
    description: str = ""


def read_categories(path: Path) -> list[Category]:
    """Parse a categories file: a JSON list of strings or of ``{"category": ..., "description": ...}``."""
    _readable(path, "dataset.categories_path")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the file as UTF-8.") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply (a list of names or of flat objects)") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty JSON list of category names or objects")
    categories: list[Category] = []
    for position, row in enumerate(rows):
        where = f"{path}: item {position}"
        if isinstance(row, str):
            row = {"category": row}
        parsed = validated(_CategoryRow, row, where)
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
        query_fields: for transaction rows, the lines of the query text to keep (``transactions.QUERY_FIELDS``);
            None: all seven.
    """

    def __init__(
        self,
        train_path: str,
        eval_path: str,
        categories_path: str | None = None,
        group_by: str | None = None,
        query_fields: list[str] | None = None,
    ) -> None:
        self.train_path = train_path
        self.eval_path = eval_path
        self.categories_path = categories_path
        self.group_by = group_by
        self.query_fields = None if query_fields is None else list(query_fields)
        self._fields = check_query_fields(type(self).__name__, self.query_fields)

    def config_dict(self) -> dict[str, object]:
        return {
            "name": "jsonl",
            "train_path": self.train_path,
            "eval_path": self.eval_path,
            "categories_path": self.categories_path,
            "group_by": self.group_by,
            "query_fields": self.query_fields,
        }

    def load(self) -> DatasetSplits:
        numbered = {
            "train": read_numbered_examples(Path(self.train_path), "dataset.train_path", self.group_by, self._fields),
            "eval": read_numbered_examples(Path(self.eval_path), "dataset.eval_path", self.group_by, self._fields),
        }
        paths = {"train": self.train_path, "eval": self.eval_path}
        source: dict[str, Any] = self.config_dict()
        for split, rows in numbered.items():
            repeats = duplicate_rows(rows)
            source[f"{split}_duplicate_rows"] = len(repeats)
            if repeats:
                line, first = repeats[0]
                log.warning(
                    "%s: %d duplicate rows (e.g. line %d repeats line %d); each copy counts as its own example",
                    paths[split],
                    len(repeats),
                    line,
                    first,
                )
        splits = with_categories(
            "jsonl",
            [example for _, example in numbered["train"]],
            [example for _, example in numbered["eval"]],
            self.categories_path,
            source,
            locate=lambda split, position: f"{paths[split]}:{numbered[split][position][0]}",
            group_key=self.group_by,
        )
        return dataclasses.replace(splits, query_fields=self.query_fields)


def with_categories(
    name: str,
    train: list[Example],
    evaluation: list[Example],
    categories_path: str | None,
    source: dict[str, Any],
    locate: Callable[[str, int], str] | None = None,
    group_key: str | None = None,
) -> DatasetSplits:
    """The splits with their categories: from the categories file (which must hold every label), else the labels.

    Args:
        locate: where example ``position`` of split ``"train"``/``"eval"`` came from (``file:line``), for errors.
        group_key: the metadata field that groups examples (see ``DatasetSplits.group_key``).
    """
    if categories_path:
        categories = read_categories(Path(categories_path))
        known = {category.name for category in categories}
        for split, examples in (("train", train), ("eval", evaluation)):
            for position, example in enumerate(examples):
                missing = [label for label in example.expected if label not in known]
                if missing:
                    where = locate(split, position) if locate else f"{split} example {position + 1}"
                    raise DataError(
                        f"{where}: expected: {missing[0]!r} is not in the categories file {categories_path}; "
                        "add it there or fix the label."
                    )
    else:
        labels = unique([label for example in train + evaluation for label in example.expected])
        categories = [Category(name=label) for label in sorted(labels)]
    return DatasetSplits(
        name=name, train=train, eval=evaluation, categories=categories, source=source, group_key=group_key
    )
