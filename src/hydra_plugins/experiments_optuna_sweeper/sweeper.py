"""A Hydra sweeper that searches with Optuna's TPE through the ask-and-tell API, maximising the VALIDATION metric.

Why not hydra-optuna-sweeper: its newest release pins ``optuna<3`` (this project uses Optuna 4) and its SQLite
storage path fails with SQLAlchemy 2. This one is small: each trial is asked for its parameters, launched as one
Hydra job (so it is a child run of the sweep's MLflow parent, with its own run folder), and told the job's score
on the **validation** split carved from train (``metrics.json["validation"]``), never the eval split's: a search
that read eval would be tuning on the test set. The study lives in ``storage`` (SQLite by default, in the sweep
folder), so rerunning the same command with ``hydra.sweep.dir=<that folder>`` resumes an interrupted search: the
trials it finished are kept, a trial it was killed in is asked again with the same parameters, and only the
missing trials run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from experiments.errors import UserError
from experiments.files import write_atomic
from experiments.tracking.base import flatten

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    """Runs ``n_trials`` trials of a TPE search over ``params``; see the module docstring."""

    def __init__(
        self,
        n_trials: int = 20,
        seed: int = 0,
        direction: str = "maximize",
        storage: str | None = None,
        study_name: str = "search",
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.n_trials = n_trials
        self.seed = seed
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.params = {key: str(value) for key, value in flatten(params or {}).items() if value is not None}
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed = [override for override in parser.parse_overrides(arguments) if not override.is_sweep_override()]
        if len(fixed) != len(arguments):
            raise UserError("hparams_search=optuna searches hydra.sweeper.params: give other knobs one value each.")
        space = {key: parser.parse_override(f"{key}={value}") for key, value in self.params.items()}
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            direction=self.direction,
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            load_if_exists=True,
        )
        resume(study, list(space))
        returns = []
        while (done := finished(study)) < self.n_trials:
            trial = study.ask()
            overrides = [*arguments, *(f"{key}={suggest(trial, key, spec)}" for key, spec in space.items())]
            [result] = self.launcher.launch([overrides], initial_job_idx=trial.number)
            value = validation_score(result)
            if result.hydra_cfg is not None:
                trial.set_user_attr("run_folder", str(result.hydra_cfg.hydra.runtime.output_dir))
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
            log.info("trial %d (%d/%d): %s -> %s", trial.number, done + 1, self.n_trials, overrides, value)
            returns.append([result])
        write_trials(study, sweep_dir)
        return returns


def resume(study: Any, keys: list[str]) -> None:
    """A trial left RUNNING by a killed search is marked failed and, when its job had been launched (every knob of
    ``keys`` chosen), asked again with the same parameters; one killed while its knobs were being chosen never ran."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if set(keys) <= set(trial.params):
            study.enqueue_trial(trial.params)


def finished(study: Any) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def suggest(trial: Any, key: str, override: Override) -> Any:
    """One value for ``key`` from its Hydra sweep expression."""
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return trial.suggest_categorical(key, [str(value) for value in override.sweep_string_iterator()])
    if isinstance(sweep, RangeSweep):
        return trial.suggest_categorical(key, list(override.sweep_iterator()))
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if low is None or high is None:
            raise UserError(f"hydra.sweeper.params.{key}: an interval needs both ends, not {override}")
        if isinstance(low, int) and isinstance(high, int) and "log" not in sweep.tags:
            return trial.suggest_int(key, low, high)
        return trial.suggest_float(key, float(low), float(high), log="log" in sweep.tags)
    raise UserError(f"hydra.sweeper.params.{key}: use choice(...), range(...) or interval(...), not {override}")


def validation_score(result: Any) -> float | None:
    """The job's ``optimized_metric`` on its validation split, or None when it failed or reports none.

    Read from the job's run record (``metrics.json["validation"]``): the eval split's numbers are never looked at.
    """
    from experiments import run_folder

    if result.status.name != "COMPLETED" or result.hydra_cfg is None or result.cfg is None:
        return None
    folder = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
    if not (folder / "metrics.json").is_file():
        return None
    metric = str(result.cfg.get("optimized_metric", "mrr@1"))
    value = run_folder.read(folder).validation_score(metric)
    if value is None:
        log.warning(
            "%s reports no validation %s: the search needs a reranker that chooses on validation "
            "(reranker.select_epochs=true)",
            folder,
            metric,
        )
        return None
    return None if math.isnan(value) else value


def write_trials(study: Any, sweep_dir: Path) -> Path:
    """``trials.json`` in the sweep folder: every trial's number, state, parameters, validation value and folder."""
    rows = [
        {
            "number": trial.number,
            "state": trial.state.name,
            "params": trial.params,
            "validation": trial.value,
            "run_folder": trial.user_attrs.get("run_folder"),
        }
        for trial in study.get_trials(deepcopy=False)
    ]
    path = sweep_dir / "trials.json"
    write_atomic(path, json.dumps(rows, indent=2) + "\n")
    return path
