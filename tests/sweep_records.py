"""A ``report.json`` record for tests that need one without running a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.records.sweep import SweepRecord


def sweep_record(winner: str, folder: Path, **changes: Any) -> SweepRecord:
    """A sweep record whose winner is ``winner`` in ``folder``, chosen on validation; no rows, ties or plots unless
    ``changes`` say so."""
    fields: dict[str, Any] = {
        "sweep_dir": str(folder.parent),
        "metric": "mrr@1",
        "selection_split": "validation",
        "selection_seeds": None,
        "winner": winner,
        "winner_folder": str(folder),
        "winner_value": 0.5,
        "winner_metrics": {},
        "winner_overrides": {},
        "winner_choices": {},
        "ties": [],
        "tie_rule": "the shorter stored training time first, then the configuration name",
        "n_queries": 0,
        "rows": [],
        "failed": [],
        "plots": [],
    }
    return SweepRecord(**{**fields, **changes})
