"""Input rows of the categoriser: a query text, or a transaction (the row shapes of docs/data-formats.md).

A row is a mapping. ``{"input": "<query text>"}`` is ranked as is (other keys of an example row, such as
``expected`` or ``metadata``, are ignored); a row with ``merchant_name`` is a transaction, validated and formatted
into the query text: the seven lines of docs/data-formats.md, or the subset the run was trained on
(``dataset.query_fields``). Each text field is cut to ``MAX_FIELD_CHARS`` characters
(experiments.datasets.fields), as it is in data files. Labels (``expense_category``) and other extra keys are
ignored. Missing values that table formats produce (``None``, NaN) count as absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from experiments.datasets.fields import clip
from experiments.datasets.jsonl import problem
from experiments.datasets.transactions import QUERY_FIELDS, TransactionFields

#: The columns a row may hold, for the model signature: the query text, then the transaction fields.
QUERY_COLUMN = "input"


class RowError(ValueError):
    """A row the categoriser cannot rank; the message is ``field: problem``."""


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (as pandas hands them out) as plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def query_text(row: Any, fields: Sequence[str] = QUERY_FIELDS) -> str:
    """The text to rank categories for, from one input row; a transaction keeps the query lines ``fields``.

    Raises:
        RowError: the row is not a mapping, has an empty or non-string ``input``, or is a transaction with a
            missing or malformed field (``merchant_category: Field required``).
    """
    if isinstance(row, str):
        row = {QUERY_COLUMN: row}
    if not isinstance(row, Mapping):
        raise RowError(f"row: expected a JSON object, got {type(row).__name__}")
    values = {str(key): _plain(value) for key, value in row.items() if _present(value)}
    if QUERY_COLUMN in values:
        text = values[QUERY_COLUMN]
        if not isinstance(text, str) or not text.strip():
            raise RowError(f"{QUERY_COLUMN}: must be a non-empty string")
        return clip(text)
    if "merchant_name" not in values:
        raise RowError(
            "row: neither a query row (input) nor a transaction row (merchant_name, merchant_category, "
            "department, location, amount, spend_program_name, trip_name); see docs/data-formats.md"
        )
    try:
        return TransactionFields.model_validate(values).query_text(fields)
    except ValidationError as error:
        raise RowError(problem(error)) from None
