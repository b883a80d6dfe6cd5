"""A sweep's parent in every configured tracker, opened and closed by the sweep's callback
(``experiments.sweeps.callback``).

``SweepParents.open`` opens the parent in each tracker of ``trackers:`` and exports its id in
``EXPERIMENTS_PARENT_<TRACKER>`` (``EXPERIMENTS_PARENT_MLFLOW``, ``EXPERIMENTS_PARENT_BRAINTRUST``); each job's
tracker config reads it (``parent_run_id: ${oc.env:EXPERIMENTS_PARENT_MLFLOW,null}``), so jobs started in this
process or in worker processes spawned after it (joblib) nest under it. ``SweepParents.close`` hands them the
sweep's record and closes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from experiments.records.sweep import SweepRecord
from experiments.tracking.base import flatten
from experiments.tracking.trackers import Trackers

PARENT_ENV = "EXPERIMENTS_PARENT_"


def parent_env(tracker: str) -> str:
    """The environment variable that carries a sweep's parent id for ``tracker`` to the jobs."""
    return f"{PARENT_ENV}{tracker.upper()}"


def swept_knobs(overrides: Sequence[str]) -> list[str]:
    """The keys a grid sweep varies (``miner=random,cosine k=2,4`` → ``["miner", "k"]``), in command-line order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [override.get_key_element() for override in parsed if override.is_sweep_override()]


def searched_knobs(config: DictConfig) -> list[str]:
    """The keys a search sweeper varies (``hydra.sweeper.params`` of ``hparams_search=optuna``), if any."""
    params = config.hydra.sweeper.get("params") or {}
    nested = OmegaConf.to_container(params, resolve=False) if isinstance(params, DictConfig) else dict(params)
    return list(flatten({str(key): value for key, value in nested.items()})) if isinstance(nested, dict) else []


def sweep_name(knobs: Sequence[str], started_at: float) -> str:
    """``sweep 2026-12-01 02:53 miner x k``: when (local time) and what varies; no path."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started_at))
    varied = " x ".join(dict.fromkeys(knobs))
    return f"sweep {when} {varied}".rstrip()


class SweepParents:
    """One parent per ``-m`` sweep in every tracker chosen by ``trackers=``."""

    def __init__(self) -> None:
        self._trackers = Trackers()
        self._opened: list[str] = []

    def open(self, config: DictConfig) -> None:
        """Open the parents of the sweep ``config`` describes and export their ids to its jobs."""
        nodes = config.get("trackers") or {}
        for key in nodes:
            os.environ.pop(parent_env(key), None)  # the parent itself nests under nothing
        self._trackers = Trackers(instantiate(nodes))
        swept = [*swept_knobs(list(config.hydra.overrides.task)), *searched_knobs(config)]
        sweep_dir = Path(config.hydra.sweep.dir)
        parents = self._trackers.start_sweep(name=sweep_name(swept, time.time()), sweep_dir=sweep_dir)
        for key, parent_id in parents.items():
            os.environ[parent_env(key)] = parent_id
        self._opened = list(parents)

    def close(self, record: SweepRecord | None, sweep_dir: Path) -> None:
        """Hand the parents the sweep's record (None: no job completed, or the report failed) and close them."""
        self._trackers.end_sweep(self._opened, record, sweep_dir)
        for key in self._opened:
            os.environ.pop(parent_env(key), None)
