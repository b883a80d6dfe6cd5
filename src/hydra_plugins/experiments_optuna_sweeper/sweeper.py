"""A Hydra sweeper that searches with Optuna's TPE through the ask-and-tell API, maximising the VALIDATION metric.

Why not hydra-optuna-sweeper: its newest release pins ``optuna<3`` (this project uses Optuna 4) and its SQLite
storage path fails with SQLAlchemy 2. This one is small: each trial is asked for its parameters, launched as one
Hydra job (so it is a child run of the sweep's MLflow parent, with its own run folder), and told the job's score
on the **validation** split carved from train (``metrics.json["validation"]``), never the eval split's: a search
that read eval would be tuning on the test set. The study lives in ``storage`` (SQLite by default, in the sweep
folder), so rerunning the same command with ``hydra.sweep.dir=<that folder>`` resumes an interrupted search: the
trials it finished are kept, a trial it was killed in is asked again with the same parameters, and only the
missing trials run.

The budget: ``n_trials`` counts every trial whose job ran to an end, completed or failed (a failing trial is spent,
so a search whose every trial fails still ends), over the study's whole life; a trial cut short by a kill is asked
again and counted once. A configuration already finished is never run again: the sampler of a resumed study is
seeded with ``seed`` plus the trials it holds (the same seed would replay its first proposals), and a proposal equal
to a finished trial is told that trial's outcome without a job (``repeat_of``) and not counted; the search stops
when its space holds no untried configuration. One process at a time searches a study (``experiments.sweeps.lock``), and
every setting is checked before the sweep opens anything (``OptunaSweeper.check``).

The winner: Optuna's ``best_trial`` is the sweep report's winner. Optuna keeps no order among equal values, so a
trial whose validation score ties the best one (within ``TIE_TOLERANCE``) is told a value one float step above the
tied best when the report's ``TIE_RULE`` ranks it first, else one step below (a repeat is told one step below the
trial it repeats); the score itself is kept as the trial's ``validation`` attribute and in ``trials.json``. The study
is found again from the sweep folder (``search.json``: its storage and name) for the report's Optuna plots.
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
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from experiments.errors import UserError
from experiments.files import write_atomic
from experiments.metrics import DEFAULT_METRIC
from experiments.secrets import redact
from experiments.sweeps.search_plots import STUDY_FILE
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

    def check(self, arguments: list[str]) -> dict[str, Override]:
        """The search space, parsed; a setting the search cannot run with is a one-line ``UserError``."""
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise UserError(f"hydra.sweeper.n_trials={self.n_trials}: a search runs at least 1 trial.")
        if self.direction not in ("maximize", "minimize"):
            raise UserError(f"hydra.sweeper.direction={self.direction}: choose maximize or minimize.")
        if not self.params:
            raise UserError("hydra.sweeper.params is empty: give the search a knob, e.g. hydra.sweeper.params.k=...")
        parser = OverridesParser.create()
        for override in parser.parse_overrides(arguments):
            if override.is_sweep_override():
                key = override.get_key_element()
                raise UserError(
                    f"{override.input_line}: hparams_search=optuna searches hydra.sweeper.params; give {key} one "
                    f"value, or search it: hydra.sweeper.params.{key}='choice(...)'."
                )
        space = {}
        for key, value in self.params.items():
            try:
                space[key] = parser.parse_override(f"{key}={value}")
            except HydraException as error:
                raise UserError(f"hydra.sweeper.params.{key}={value}: {str(error).splitlines()[0]}") from None
            check_knob(key, space[key])
        return space

    def open_study(self) -> Any:
        """The study in ``storage``, created when new; one that cannot be opened is a ``UserError`` naming it."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            return optuna.create_study(
                study_name=self.study_name, storage=self.storage, direction=self.direction, load_if_exists=True
            )
        except Exception as error:  # a corrupt or foreign file, a study of the other direction: say which
            problem = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(
                f"hydra.sweeper.storage={self.storage}: cannot open study {self.study_name!r}: {problem}"
            ) from None

    def trials_spent(self) -> int:
        """How many of ``n_trials`` the study has spent (0 for a new one); opening it as ``open_study`` does."""
        return len(spent(self.open_study()))

    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna

        from experiments.sweeps.jobs import record_failure
        from experiments.sweeps.lock import hold_study

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        space = self.check(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        hold_study(self.storage, sweep_dir)  # taken by the guard before the sweep opened; here when it is not set
        study = self.open_study()
        # Seeded by what the study holds: a resumed search proposes anew, not its first trials again.
        study.sampler = optuna.samplers.TPESampler(seed=self.seed + len(study.trials))
        resume(study, list(space))
        if spent(study):
            left = max(self.n_trials - len(spent(study)), 0)
            print(
                f"search: study {self.study_name!r} resumed with {len(spent(study))} of its {self.n_trials} trials "
                f"spent; up to {left} more"
            )
        metric = str(self.config.get("optimized_metric", DEFAULT_METRIC))
        # Where the report finds the study again (an in-memory one, storage None, is not found again).
        storage = redact(self.storage) if self.storage else None
        note = {"storage": storage, "study_name": self.study_name, "objective": f"validation {metric}"}
        write_atomic(sweep_dir / STUDY_FILE, json.dumps(note) + "\n")
        returns, in_a_row, size = [], 0, space_size(space)
        while (used := len(spent(study))) < self.n_trials:
            if size is not None and len(tried(study)) >= size:
                print(f"search: all {size} configurations of the space are tried; stopping at {used} trials")
                break
            trial = study.ask()
            overrides = [*arguments, *(f"{key}={suggest(trial, key, spec)}" for key, spec in space.items())]
            earlier = tried(study).get(frozen_params(trial.params))
            if earlier is not None:
                tell_repeat(study, trial, earlier)
                in_a_row += 1
                if in_a_row >= MAX_REPEATS:
                    print(f"search: the sampler proposed {in_a_row} tried configurations in a row; stopping")
                    break
                continue
            in_a_row = 0
            [result] = self.launcher.launch([overrides], initial_job_idx=trial.number)
            value = validation_score(result)
            folder = Path(str(result.hydra_cfg.hydra.runtime.output_dir)) if result.hydra_cfg is not None else None
            if folder is not None:
                trial.set_user_attr("run_folder", str(folder))
            trial.set_user_attr("outcome", "failed" if value is None else "completed")
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                trial.set_user_attr("validation", value)
                study.tell(trial, told_value(study, value, folder, sweep_dir, metric, self.direction))
            log.info("trial %d (%d/%d): %s -> %s", trial.number, used + 1, self.n_trials, overrides, value)
            returns.append([result])
            unscored = None if value is not None else no_score_reason(result)
            if unscored is not None and folder is not None:
                # The job completed but gave the search nothing: so would every other trial. The job is marked
                # failed (the sweep exits 1 and says why) and no more models are trained for nothing.
                print(f"error: {record_failure(folder, UserError(unscored), user_error=True)}; stopping the search")
                break
        write_trials(study, sweep_dir)
        return returns


def told_value(study: Any, value: float, folder: Path | None, sweep_dir: Path, metric: str, direction: str) -> float:
    """What Optuna is told for a completed trial scored ``value``: ``value`` itself, unless it ties the study's best
    (within the report's ``TIE_TOLERANCE``); then one float step past the best when the sweep report's tie rule
    ranks this trial's job first, else one step short of it, so ``study.best_trial`` is the report's winner."""
    import optuna

    from experiments.sweeps.jobs import sweep_jobs
    from experiments.sweeps.report import TIE_TOLERANCE, build_rows, readable

    values = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not values or folder is None:
        return value
    up = 1.0 if direction == "maximize" else -1.0
    best = max(values) if up > 0 else min(values)
    if abs(value - best) > TIE_TOLERANCE:
        return value
    # The report ranks every completed job of the folder best first, ties ordered by TIE_RULE (it always maximises).
    try:
        rows, _, _ = build_rows([readable(job) for job in sweep_jobs(sweep_dir)], metric)
    except UserError:
        return value
    if rows[0].job.folder.resolve() == folder.resolve():
        past = math.nextafter(best, up * math.inf)
        return max(value, past) if up > 0 else min(value, past)
    short = math.nextafter(best, -up * math.inf)
    return min(value, short) if up > 0 else max(value, short)


#: A search stops when its sampler proposes this many finished configurations in a row (no job is run for them).
MAX_REPEATS = 50


def check_knob(key: str, override: Override) -> None:
    """A knob's search expression is a non-empty choice, range or interval; else a one-line ``UserError``."""
    sweep = override.value()
    where = f"hydra.sweeper.params.{key}={override.input_line.partition('=')[2] if override.input_line else ''}"
    if isinstance(sweep, ChoiceSweep | RangeSweep):
        if not list(override.sweep_iterator()):
            raise UserError(f"{where}: an empty search space.")
        return
    if not isinstance(sweep, IntervalSweep):
        raise UserError(f"{where}: use choice(...), range(...) or interval(...) to give the search a space.")
    low, high = sweep.start, sweep.end
    if low is None or high is None:
        raise UserError(f"{where}: an interval needs both ends.")
    if low > high:
        raise UserError(f"{where}: an empty interval, its low end {low} is above its high end {high}.")
    if "log" in sweep.tags and low <= 0:
        raise UserError(f"{where}: a log interval needs ends above 0.")


def space_size(space: Mapping[str, Override]) -> int | None:
    """How many configurations a space of choices, ranges and integer intervals holds (None with a real interval)."""
    size = 1
    for override in space.values():
        sweep = override.value()
        if isinstance(sweep, ChoiceSweep | RangeSweep):
            size *= len(list(override.sweep_iterator()))
        elif isinstance(sweep, IntervalSweep) and "log" not in sweep.tags and isinstance(sweep.start, int):
            assert isinstance(sweep.end, int)  # int(interval(...)) casts both ends (suggest_int draws from them)
            size *= sweep.end - sweep.start + 1
        else:
            return None
    return size


def frozen_params(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, repr(value)) for key, value in params.items()))


def spent(study: Any) -> list[Any]:
    """The trials spent from ``n_trials``: those whose job ran to its end, completed or failed (their ``outcome``
    said; in a study from before, every COMPLETE trial). Repeats and trials cut short by a kill are not."""
    import optuna

    return [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.user_attrs.get("outcome") in ("completed", "failed")
        or (trial.state == optuna.trial.TrialState.COMPLETE and "repeat_of" not in trial.user_attrs)
    ]


def tried(study: Any) -> dict[tuple[tuple[str, str], ...], Any]:
    """The spent trials by their parameters: what a later proposal must not run again."""
    return {frozen_params(trial.params): trial for trial in spent(study)}


def tell_repeat(study: Any, trial: Any, earlier: Any) -> None:
    """A proposal equal to a finished trial: told that trial's outcome, without running its job again."""
    import optuna

    trial.set_user_attr("repeat_of", earlier.number)
    if earlier.state == optuna.trial.TrialState.COMPLETE:
        # One step short of the trial it repeats: an equal value would let Optuna name the repeat as the best trial.
        worse = -math.inf if study.direction == optuna.study.StudyDirection.MAXIMIZE else math.inf
        study.tell(trial, math.nextafter(earlier.value, worse))
    else:
        study.tell(trial, state=earlier.state)


def resume(study: Any, keys: list[str]) -> None:
    """A trial left RUNNING by a killed search is marked failed and, when its job had been launched (every knob of
    ``keys`` chosen), asked again with the same parameters; one killed while its knobs were being chosen never ran.
    Neither is counted as spent (they carry no ``outcome``). Only the process holding the study's lock resumes it,
    so a RUNNING trial here is never another live search's."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if set(keys) <= set(trial.params):
            study.enqueue_trial(trial.params)


def suggest(trial: Any, key: str, override: Override) -> Any:
    """One value for ``key`` from its Hydra sweep expression (checked by ``check_knob``)."""
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return trial.suggest_categorical(key, [str(value) for value in override.sweep_string_iterator()])
    if isinstance(sweep, RangeSweep):
        return trial.suggest_categorical(key, list(override.sweep_iterator()))
    assert isinstance(sweep, IntervalSweep) and sweep.start is not None and sweep.end is not None
    low, high = sweep.start, sweep.end
    if isinstance(low, int) and isinstance(high, int) and "log" not in sweep.tags:
        return trial.suggest_int(key, low, high)
    return trial.suggest_float(key, float(low), float(high), log="log" in sweep.tags)


def no_score_reason(result: Any) -> str | None:
    """Why a job that completed reports no validation score (None when it did not complete, or reports one)."""
    from experiments import run_folder

    if result.status.name != "COMPLETED" or result.hydra_cfg is None or result.cfg is None:
        return None
    folder = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
    metric = str(result.cfg.get("optimized_metric", DEFAULT_METRIC))
    try:
        if run_folder.read(folder).validation_score(metric) is not None:
            return None
    except UserError:
        return None  # no readable record: the job failed, and says so itself
    return (
        f"{folder}: the run reports no validation {metric}, so the search has nothing to optimise: search a "
        "reranker that chooses on validation (reranker.select_epochs=true, validation_fraction above 0)"
    )


def validation_score(result: Any) -> float | None:
    """The job's ``optimized_metric`` on its validation split, or None when it failed or reports none.

    Read from the job's run record (``metrics.json["validation"]``): the eval split's numbers are never looked at.
    """
    from experiments import run_folder

    if result.status.name != "COMPLETED" or result.hydra_cfg is None or result.cfg is None:
        return None
    folder = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
    if not run_folder.completed(folder):
        return None
    metric = str(result.cfg.get("optimized_metric", DEFAULT_METRIC))
    try:
        value = run_folder.read(folder).validation_score(metric)
    except UserError:  # an unreadable record: the trial failed
        return None
    return None if value is None or math.isnan(value) else value


def write_trials(study: Any, sweep_dir: Path) -> Path:
    """``trials.json`` in the sweep folder: every trial's number, state, parameters, validation score, folder,
    whether it is Optuna's ``best_trial`` (the report's winner) and, for a repeat, the trial it repeats."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = study.best_trial.number if complete else None
    rows = [
        {
            "number": trial.number,
            "state": trial.state.name,
            "params": trial.params,
            # The score measured; Optuna's value differs from it by one float step where a tie was broken.
            "validation": trial.user_attrs.get("validation", trial.value),
            "best": trial.number == best,
            "run_folder": trial.user_attrs.get("run_folder"),
            # A proposal equal to a finished trial: told that trial's outcome, no job run.
            "repeat_of": trial.user_attrs.get("repeat_of"),
        }
        for trial in study.get_trials(deepcopy=False)
    ]
    path = sweep_dir / "trials.json"
    write_atomic(path, json.dumps(rows, indent=2) + "\n")
    return path
