"""Experiment framework for fine-tuning rerankers.

``experiments.run(overrides=[...])`` runs one experiment from Python, ``experiments.sweep(overrides=[...])`` a sweep
(``experiments.api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from experiments.api import RunResult, SweepResult


def run(overrides: Any = (), **kwargs: Any) -> RunResult:
    """``experiments.api.run``: one experiment, as ``python run.py <overrides>`` runs it (imported on first use,
    so ``import experiments`` stays light)."""
    from experiments.api import run as run_api

    return run_api(overrides, **kwargs)


def sweep(overrides: Any = (), **kwargs: Any) -> SweepResult:
    """``experiments.api.sweep``: a sweep in this process, as ``python run.py -m <overrides>`` runs it."""
    from experiments.api import sweep as sweep_api

    return sweep_api(overrides, **kwargs)
