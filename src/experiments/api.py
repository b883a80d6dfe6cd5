"""The Python API: one experiment from a notebook or a script, as ``python run.py`` would run it.

``experiments.run(overrides=["miner=cosine", "k=2"])`` composes the project's configs with Hydra's compose API
(the same ``conf/`` and the same overrides as the command line), runs the experiment into a fresh run folder, and
returns a ``RunResult``: the headline metrics, the run folder, the MLflow run and its logged model's URI.

A bad option or file raises ``UserError`` with the same one-line message the command line prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.errors import UserError

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
    return _result(outcome, str(cfg.get("optimized_metric", "mrr@1")), with_mlflow)


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

    from experiments.register import run_of_folder
    from experiments.serving.mlflow_model import run_model_uri

    try:
        run_id = run_of_folder(folder)
    except (UserError, mlflow.exceptions.MlflowException):
        return None, None
    try:
        return run_id, run_model_uri(run_id)
    except UserError:
        return run_id, None
