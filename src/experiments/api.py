"""The Python API: one experiment (or a sweep) from a notebook or a script, as ``python run.py`` would run it.

``experiments.run(overrides=["miner=cosine", "k=2"])`` composes the project's configs with Hydra's compose API
(the same ``conf/`` and the same overrides as the command line), runs the experiment into a fresh run folder, and
returns a ``RunResult``: the headline metrics, the run folder, the MLflow run and its logged model's URI.

``experiments.sweep(["miner=random,cosine", "k=2"])`` runs a sweep in the same process, as ``python run.py -m``
would (its sweeper, launcher and callbacks), and returns a ``SweepResult``: the sweep folder, its exit code and its
report.

A bad option or file raises ``UserError`` with the same one-line message the command line prints.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.errors import UserError
from experiments.metrics import DEFAULT_METRIC

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from experiments.outcome import RunOutcome
    from experiments.run_folder import RunRecord

#: The checkout's config folder (the package is installed from ``src/`` of the checkout).
CHECKOUT_CONF = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class RunResult:
    """What one run produced.

    Attributes:
        metric: the reranker's ``optimized_metric`` (``mrr@1`` by default), as ``python run.py`` returns it.
        metrics: the headline numbers under their tracked names (``mrr_at_1``, ``baseline_mrr_at_1``,
            ``delta_mrr_at_1_ci_low``...), the same as in MLflow.
        record: the run folder's ``metrics.json`` as read back, typed (``experiments.run_folder.RunRecord``:
            dataset, fine-tuning set, fit, metrics, validation, timings).
        run_folder: the run's folder (``config.json``, ``finetune.jsonl``, ``metrics.json``, ``per_query.jsonl``).
        mlflow_run_id: the MLflow run that recorded it (None without the MLflow tracker, or when it failed).
        model_uri: ``models:/<id>`` of the logged categoriser, for ``mlflow.pyfunc.load_model`` (None with
            ``log_model=false`` or without MLflow).
        outcome: the pipeline's own record (splits, fine-tuning set, fit, per-query results).
    """

    metric: float
    metrics: dict[str, float]
    record: RunRecord
    run_folder: Path
    mlflow_run_id: str | None
    model_uri: str | None
    outcome: RunOutcome

    @property
    def table(self) -> str:
        """The console table (reranker, baseline and delta with 95% intervals)."""
        return self.outcome.table


def config_dir(explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$EXPERIMENTS_ROOT/conf``, else the checkout's ``conf/``."""
    if explicit is not None:
        return Path(explicit).resolve()
    root = os.environ.get("EXPERIMENTS_ROOT")
    return (Path(root) / "conf").resolve() if root else CHECKOUT_CONF


def compose(overrides: Sequence[str] = (), *, conf: str | Path | None = None, name: str = "config") -> DictConfig:
    """The config ``name`` composed with ``overrides`` as the command line would, its ``hydra`` node included.

    Raises:
        UserError: a secret typed on the command line, an option whose extra is missing, or a bad option or key
            (Hydra's message in one line).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from experiments.extras import check_extras
    from experiments.hydra_errors import one_line
    from experiments.secrets import refuse_secret_overrides

    listed = [str(override) for override in overrides]
    refuse_secret_overrides(listed)
    check_extras(listed)
    folder = config_dir(conf)
    os.environ.setdefault("EXPERIMENTS_ROOT", str(folder.parent))
    if GlobalHydra.instance().is_initialized():  # a notebook cell run twice, or a caller's own Hydra context
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
            return hydra_compose(name, overrides=listed, return_hydra_config=True)
    except HydraException as error:
        raise UserError(one_line(str(error))) from None


def run(
    overrides: Sequence[str] = (),
    *,
    output_dir: str | Path | None = None,
    conf: str | Path | None = None,
) -> RunResult:
    """Run one experiment, exactly as ``python run.py <overrides>`` would, and return what it produced.

    Args:
        overrides: Hydra overrides as typed on the command line (``["miner=cosine", "k=2", "reranker=none"]``).
        output_dir: the run folder; default: Hydra's ``hydra.run.dir`` (``outputs/runs/<date>/<time>``).
        conf: the config folder; default: ``$EXPERIMENTS_ROOT/conf`` or the checkout's ``conf/``.

    Raises:
        UserError: a bad option or file (the message names it and how to fix it); nothing is recorded.

    What it prints or logs, and the message of any error it raises, are redacted as the command line's console is
    (``experiments.secrets.redacted``): a key a service echoes back never reaches a notebook's saved output.
    """
    from experiments.secrets import redacted

    with redacted():
        return _run(overrides, output_dir, conf)


def _run(overrides: Sequence[str], output_dir: str | Path | None, conf: str | Path | None) -> RunResult:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from experiments import app
    from experiments.folders import Before
    from experiments.secrets import refuse_resolved_secrets

    cfg = compose(overrides, conf=conf)
    # What HydraConfig holds under the CLI: the chosen options (short run names), ${hydra:...} interpolations.
    # Only for this run: a later run in the same process must not see this one's choices.
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        run_dir = Path(output_dir) if output_dir is not None else Path(str(cfg.hydra.run.dir))
        with open_dict(cfg):
            del cfg["hydra"]  # as under the CLI, where the job's config holds no hydra node
        refuse_resolved_secrets({"hydra.run.dir": str(run_dir)})  # before a folder is named with a key
        before = Before.survey(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            outcome = app.run(cfg, run_dir)
        except UserError:
            before.discard_rejected()  # a rejected run leaves nothing it made; what stood there before stays
            raise
    finally:
        HydraConfig.instance().cfg = previous
    with_mlflow = "mlflow" in (cfg.get("trackers") or {})
    return _result(outcome, str(cfg.get("optimized_metric", DEFAULT_METRIC)), with_mlflow)


def _result(outcome: RunOutcome, optimized: str, with_mlflow: bool) -> RunResult:
    from experiments import run_folder
    from experiments.tracking.base import run_metrics

    record = run_folder.read(outcome.output_dir)
    run_id, model_uri = _mlflow_run(outcome.output_dir) if with_mlflow else (None, None)
    return RunResult(
        metric=outcome.metric(optimized),
        metrics=run_metrics(record),
        record=record,
        run_folder=outcome.output_dir,
        mlflow_run_id=run_id,
        model_uri=model_uri,
        outcome=outcome,
    )


def _mlflow_run(folder: Path) -> tuple[str | None, str | None]:
    """The MLflow run that recorded ``folder`` and its categoriser's URI (the tracker left MLflow pointing at its
    store), or None where the tracker failed to record it."""
    import mlflow

    from experiments.serving.mlflow_model import run_model_uri
    from experiments.tracking.registry import run_of_folder

    try:
        run_id = run_of_folder(folder)
    except (UserError, mlflow.exceptions.MlflowException):
        return None, None
    try:
        return run_id, run_model_uri(run_id)
    except UserError:
        return run_id, None


@dataclass(frozen=True)
class SweepResult:
    """What one sweep produced (its report files are those ``python run.py -m`` writes).

    Attributes:
        sweep_dir: the sweep's folder: one folder per job, ``report.md``, ``report.html``, ``report.json``, plots.
        exit_code: what ``python run.py -m`` would exit with: 0 when every job completed, 1 when any failed or did
            not finish (``report.md`` lists them; the same call again redoes only those).
        report: ``report.json`` as written (the winner, its folder and value, the rows, the plots); {} when no job
            completed.
    """

    sweep_dir: Path
    exit_code: int
    report: dict[str, Any]

    @property
    def markdown(self) -> str:
        """``report.md``: the table, the winner, the caveats (the failures alone when no job completed)."""
        return (self.sweep_dir / "report.md").read_text(encoding="utf-8")

    @property
    def plots(self) -> list[Path]:
        """The report's plots (PNG files), in the report's order."""
        return [Path(plot) for plot in self.report.get("plots", [])]


def sweep(overrides: Sequence[str] = (), *, conf: str | Path | None = None) -> SweepResult:
    """Run a sweep in this process, exactly as ``python run.py -m <overrides>`` would, and return its report.

    Args:
        overrides: Hydra overrides as typed after ``-m`` (``["miner=random,cosine", "k=2"]``, ``+experiment=<name>``,
            ``hparams_search=optuna``, ``hydra/launcher=joblib``, ``hydra.sweep.dir=<folder>`` to resume one).
        conf: the config folder; default: ``$EXPERIMENTS_ROOT/conf`` or the checkout's ``conf/``.

    Raises:
        UserError: a bad option, key or file that stops the whole sweep before any job (a job's own failure is
            recorded in its folder and counted in ``exit_code`` instead, as on the command line).
    """
    from experiments.secrets import redacted

    with redacted():
        return _sweep(overrides, conf)


def _sweep(overrides: Sequence[str], conf: str | Path | None) -> SweepResult:
    import json

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from hydra.types import RunMode

    from experiments import run_folder
    from experiments.extras import check_extras
    from experiments.hydra_errors import one_line
    from experiments.secrets import refuse_secret_overrides
    from experiments.sweeps.callback import SweepFailed

    listed = [str(override) for override in overrides]
    exit_code = 0  # 1: SweepFailed, as run.py -m exits
    refuse_secret_overrides(listed)
    check_extras(listed)
    folder = config_dir(conf)
    os.environ.setdefault("EXPERIMENTS_ROOT", str(folder.parent))
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    previous = HydraConfig.instance().cfg
    try:
        # job_name: Hydra names each job's log after it (run.log, as under run.py).
        with initialize_config_dir(str(folder), job_name="run", version_base="1.3"), _process_restored():
            hydra = GlobalHydra.instance().hydra
            assert hydra is not None
            # The sweep folder is named once (its default holds the time), so the result can point at it.
            cfg = hydra.compose_config("config", listed, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
            sweep_dir = Path(str(cfg.hydra.sweep.dir))
            # Hydra has no public in-process multirun: this is the call ``@hydra.main`` makes for ``-m`` (sweeper,
            # launcher and the sweep callbacks included), without reconfiguring this process's logging up front.
            # hydra.mode: what ``-m`` adds (a job tells a sweep by it: a failing job is recorded, not fatal).
            swept = [*listed, "hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep_dir}"]
            hydra.multirun("config", task, swept, False)
    except SweepFailed:
        exit_code = 1
    except HydraException as error:
        raise UserError(one_line(str(error))) from None
    finally:
        HydraConfig.instance().cfg = previous
    record = run_folder.read_report(sweep_dir)
    report = json.loads(record.to_json()) if record is not None else {}
    return SweepResult(sweep_dir=sweep_dir, exit_code=exit_code, report=report)


def task(cfg: DictConfig) -> float:
    """Hydra's task function, for ``run.py`` and ``sweep`` alike: one run (or one job of a sweep) into Hydra's output
    folder; prints the table, returns ``optimized_metric``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from experiments.app import main as run_app

    hydra_cfg = HydraConfig.get()
    return run_app(
        cfg,
        Path(hydra_cfg.runtime.output_dir),
        in_sweep=hydra_cfg.mode == RunMode.MULTIRUN,
        parallel_jobs=hydra_cfg.launcher.get("n_jobs"),
    )


@contextmanager
def _process_restored() -> Iterator[None]:
    """The root logger and the SIGTERM handler as they were before: Hydra gives every job a console handler and a
    file handler (its ``run.log``), and a job sets its own SIGTERM handler; none of them may outlive the sweep in the
    caller's process (a notebook's later cells, its kernel's shutdown)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        if on_sigterm is not None:  # None: a handler not set from Python, which no job replaced either
            signal.signal(signal.SIGTERM, on_sigterm)
