"""A Hydra callback that opens a sweep's parent in every configured tracker.

``on_multirun_start`` opens the parent in each tracker of ``trackers:`` and exports its id in
``EXPERIMENTS_PARENT_<TRACKER>`` (``EXPERIMENTS_PARENT_MLFLOW``, ``EXPERIMENTS_PARENT_BRAINTRUST``); each job's
tracker config reads it (``parent_run_id: ${oc.env:EXPERIMENTS_PARENT_MLFLOW,null}``), so jobs started in this
process or in worker processes spawned after it (joblib) nest under it. ``on_multirun_end`` closes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

from experiments.tracking.trackers import Trackers

PARENT_ENV = "EXPERIMENTS_PARENT_"


def parent_env(tracker: str) -> str:
    """The environment variable that carries a sweep's parent id for ``tracker`` to the jobs."""
    return f"{PARENT_ENV}{tracker.upper()}"


class SweepParentRun(Callback):
    """Opens one parent per ``-m`` sweep in every tracker chosen by ``trackers=``."""

    def __init__(self) -> None:
        self._trackers = Trackers()
        self._opened: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        nodes = config.get("trackers") or {}
        for key in nodes:
            os.environ.pop(parent_env(key), None)  # the parent itself nests under nothing
        self._trackers = Trackers(instantiate(nodes))
        parents = self._trackers.start_sweep(name=f"sweep {config.hydra.sweep.dir}")
        for key, parent_id in parents.items():
            os.environ[parent_env(key)] = parent_id
        self._opened = list(parents)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._trackers.end_sweep(self._opened, Path(config.hydra.sweep.dir))
        for key in self._opened:
            os.environ.pop(parent_env(key), None)
