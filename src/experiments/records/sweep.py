"""A sweep's records as pydantic models: ``SweepRecord`` (``report.json``: the rows, the winner and its ties) and
``FailedJob`` (a job's ``failed.json``). The data contract is ``docs/run-folder.md``."""

from __future__ import annotations

import json
from typing import Literal

from experiments.records.base import Record
from experiments.records.run import Estimate


class Tie(Record):
    """Configurations whose selection values are equal (best first, ordered by ``SweepRecord.tie_rule``)."""

    value: float
    configurations: list[str]


class SweepRow(Record):
    """One completed configuration: its eval metrics, its paired delta and p-values against the best row (None
    for the best row, and for a row scored on other eval queries), and what training took."""

    configuration: str
    folder: str
    selection_value: float
    metrics: dict[str, Estimate]
    delta_vs_best: Estimate | None
    p_value: float | None
    p_holm: float | None
    finetune_id: str | None
    reused: bool
    train_seconds: float | None


class SweepRecord(Record):
    """``report.json``: the verdict of a sweep, for code (``report.md`` and ``report.html`` are for people).

    The winner is the best row on ``metric`` over the ``selection_split`` (``validation`` or ``eval``); with
    replicates that all chose on validation, ``selection_seeds`` says how many seeds each value averages.
    ``failed`` lists ``(job label, reason)`` of every job that did not complete.
    """

    sweep_dir: str
    metric: str
    selection_split: str
    selection_seeds: int | None
    winner: str
    winner_folder: str
    winner_value: float
    winner_metrics: dict[str, Estimate]
    winner_overrides: dict[str, str]
    winner_choices: dict[str, str]
    ties: list[Tie]
    tie_rule: str
    n_queries: int
    rows: list[SweepRow]
    failed: list[tuple[str, str]]
    plots: list[str]

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(self.model_dump(), indent=2) + "\n"


class FailedJob(Record):
    """``failed.json``: why a sweep job failed; ``traceback`` only for a bug (``kind="exception"``), not for a
    user's mistake."""

    reason: str
    kind: Literal["user_error", "exception"]
    traceback: str | None

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(self.model_dump(), indent=2) + "\n"
