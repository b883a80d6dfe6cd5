"""A Hydra callback that groups a sweep's runs under one parent run of the configured tracker.

``on_multirun_start`` opens the parent and exports its id in ``EXPERIMENTS_PARENT_RUN_ID``; each job's tracker
config reads it (``parent_run_id: ${oc.env:EXPERIMENTS_PARENT_RUN_ID,null}``), so jobs started in this process or in
worker processes spawned after it (joblib) nest under it. ``on_multirun_end`` closes it.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

PARENT_ENV = "EXPERIMENTS_PARENT_RUN_ID"


class SweepParentRun(Callback):
    """Opens one parent run per ``-m`` sweep in the tracker chosen by ``tracker=``."""

    def __init__(self) -> None:
        self._tracker: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The parent itself nests under nothing; trackers without the notion take no such argument.
        detached = {"parent_run_id": None} if "parent_run_id" in config.tracker else {}
        tracker = instantiate(config.tracker, **detached)
        parent_id = tracker.start_sweep(name=f"sweep {config.hydra.sweep.dir}")
        if parent_id:
            os.environ[PARENT_ENV] = parent_id
            self._tracker = tracker

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._tracker is not None:
            self._tracker.end_sweep()
            os.environ.pop(PARENT_ENV, None)
