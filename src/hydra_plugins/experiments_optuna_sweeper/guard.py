"""Refuse a search that cannot run before the sweep opens anything, and let one process at a time search a study.

``SearchGuard`` is the first of the sweep callbacks (``conf/config.yaml``): Hydra calls ``on_multirun_start`` before
it builds the sweeper and after nothing else, so a refusal here leaves no parent run open, no progress file
rewritten and no trial asked. Hydra turns an exception raised in a callback into a warning and goes on, so a refusal
is one ``error:`` line and ``SystemExit(2)``.

It takes the study's lock (``experiments.sweeps.lock``): a second invocation on a study being searched refuses in
one line naming the holder's process; it never closes the first one's running trial (Optuna's
``UpdateFinishedTrialError``) nor asks a trial beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

from experiments.errors import UserError
from experiments.sweeps import callback
from experiments.sweeps.callback import sweeper_params
from experiments.sweeps.lock import hold_study, release_studies

SEARCH_SWEEPER = "hydra_plugins.experiments_optuna_sweeper.sweeper.OptunaSweeper"


def check_search(config: DictConfig) -> None:
    """Everything about a ``-m`` sweep's search that can be told before it starts; a one-line ``UserError``."""
    sweeper = config.hydra.sweeper
    callback.search_spent = 0
    if sweeper.get("_target_") != SEARCH_SWEEPER:
        # The grid sweeper takes params too (a named sweep in an experiment file: k: 2,4); an interval it cannot
        # expand is a search space, which only the search runs.
        for key, value in sweeper_params(config).items():
            if is_interval(f"{key}={value}"):
                raise UserError(
                    f"hydra.sweeper.params.{key}={value}: an interval is a search space, which needs "
                    f"hparams_search=optuna; a grid sweep takes a list of values ({key}=a,b)."
                )
        return
    search = instantiate(sweeper)
    search.check(list(config.hydra.overrides.task))
    hold_study(search.storage, Path(str(config.hydra.sweep.dir)))
    # The monitor counts the jobs this invocation runs: n_trials less the trials a resumed study has spent.
    callback.search_spent = search.trials_spent()


def is_interval(line: str) -> bool:
    """Whether ``key=value`` sweeps an interval (a grammar error is left to the sweeper, which says it in one line)."""
    try:
        return isinstance(OverridesParser.create().parse_override(line).value(), IntervalSweep)
    except HydraException:
        return False


class SearchGuard(Callback):
    """The first sweep callback: a search that cannot run ends here, in one line with exit 2."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_search(config)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_studies()
