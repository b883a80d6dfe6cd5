"""The base of every file record: frozen, so a record read back is the record written."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A pydantic record that cannot change once built."""

    model_config = ConfigDict(frozen=True)
