"""Corporate card transactions and the query text the product ranks categories for."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from experiments.datasets.fields import clip
from experiments.errors import ConfigError
from experiments.records import Example

#: The lines of the query text, in layout order; ``dataset.query_fields`` keeps a subset (null: all of them).
QUERY_FIELDS: tuple[str, ...] = ("name", "category", "department", "location", "amount", "card", "trip_name")


def check_query_fields(owner: str, fields: Sequence[str] | None) -> tuple[str, ...]:
    """The chosen query lines in layout order (all of them for ``None``); a ``ConfigError`` names a bad choice."""
    if fields is None:
        return QUERY_FIELDS
    if isinstance(fields, str) or not all(isinstance(name, str) for name in fields):
        raise ConfigError(f"{owner}: query_fields must be a list such as [name, category, department, card].")
    unknown = [name for name in fields if name not in QUERY_FIELDS]
    if unknown or not fields:
        raise ConfigError(
            f"{owner}: query_fields={list(fields)}: {'unknown ' + ', '.join(unknown) if unknown else 'empty'}; "
            f"choose one or more of {list(QUERY_FIELDS)}, or null for all."
        )
    return tuple(name for name in QUERY_FIELDS if name in fields)


class TransactionFields(BaseModel):
    """A transaction row without its label: what the categoriser ranks categories for (docs/data-formats.md).

    Other keys are kept (``model_extra``); ``expense_category``, when a row carries one, is one of them here.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    merchant_name: str = Field(min_length=1)
    merchant_category: list[str]
    department: str
    location: str
    # Finite only: "NaN", "1e400" or "inf" (as strings or numbers) would rank and train on "Amount: nan" or "inf".
    amount: float = Field(allow_inf_nan=False)
    spend_program_name: str
    trip_name: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_a_number(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true/false would otherwise pass as 1.0 / 0.0
            raise ValueError("amount must be a number, not true/false")
        return value

    def query_text(self, fields: Sequence[str] = QUERY_FIELDS) -> str:
        """The seed's layout, one field a line (the contract in docs/data-formats.md), keeping ``fields`` only; each
        field cut by ``clip``."""
        lines = {
            "name": f"Name : {clip(self.merchant_name)}",
            "category": f"Category: {clip(', '.join(self.merchant_category))}",
            "department": f"Department: {clip(self.department)}",
            "location": f"Location: {clip(self.location)}",
            "amount": f"Amount: {self.amount}",
            "card": f"Card: {clip(self.spend_program_name)}",
            "trip_name": f"Trip Name: {clip(self.trip_name or 'unknown')}",
        }
        return "\n".join(lines[name] for name in QUERY_FIELDS if name in fields)


class Transaction(TransactionFields):
    """A labelled transaction row in the shape of docs/data-formats.md; ``expense_category`` is the label."""

    expense_category: str = Field(min_length=1)

    def to_example(self, fields: Sequence[str] = QUERY_FIELDS) -> Example:
        return Example(
            input=self.query_text(fields), expected=[self.expense_category], metadata=dict(self.model_extra or {})
        )
