"""Corporate card transactions and the query text the product ranks categories for."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from experiments.datasets.fields import clip
from experiments.records import Example


class TransactionFields(BaseModel):
    """A transaction row without its label: what the categoriser ranks categories for (docs/data-formats.md).

    Other keys are kept (``model_extra``); ``expense_category``, when a row carries one, is one of them here.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    merchant_name: str = Field(min_length=1)
    merchant_category: list[str]
    department: str
    location: str
    amount: float
    spend_program_name: str
    trip_name: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_a_number(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true/false would otherwise pass as 1.0 / 0.0
            raise ValueError("amount must be a number, not true/false")
        return value

    def query_text(self) -> str:
        """The seed's layout, one field a line (the contract in docs/data-formats.md); each field cut by ``clip``."""
        return "\n".join(
            [
                f"Name : {clip(self.merchant_name)}",
                f"Category: {clip(', '.join(self.merchant_category))}",
                f"Department: {clip(self.department)}",
                f"Location: {clip(self.location)}",
                f"Amount: {self.amount}",
                f"Card: {clip(self.spend_program_name)}",
                f"Trip Name: {clip(self.trip_name or 'unknown')}",
            ]
        )


class Transaction(TransactionFields):
    """A labelled transaction row in the shape of docs/data-formats.md; ``expense_category`` is the label."""

    expense_category: str = Field(min_length=1)

    def to_example(self) -> Example:
        return Example(input=self.query_text(), expected=[self.expense_category], metadata=dict(self.model_extra or {}))
