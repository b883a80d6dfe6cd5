"""Find the MLflow run of a run folder and register its categoriser once (``python -m experiments.register`` is
the command line over this).

Registering is idempotent: a run (or run folder) whose categoriser already has a version of ``name`` gets no second
one, the alias is pointed at that version. A sweep's MLflow tracker registers its winner the same way
(``register_winner``): only a winner chosen on validation data, never on the eval split, and a tie on validation is
said, with the report's tie rule that chose among the tied rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from experiments import run_folder
from experiments.errors import UserError
from experiments.records.sweep import SweepRecord
from experiments.serving.mlflow_model import DEFAULT_ALIAS


def run_of_folder(folder: Path) -> str:
    """The MLflow run that recorded a run folder (its ``run_folder`` tag)."""
    import mlflow

    if not run_folder.completed(folder):
        if any(folder.glob(f"*/{run_folder.METRICS_FILE}")):
            raise UserError(
                f"{folder} is a sweep folder: pass the folder (or MLflow run id) of the run to register; choose "
                "it on validation data, not on the eval split's metrics."
            )
        raise UserError(f"{folder}: no {run_folder.METRICS_FILE}; not a completed run folder.")
    run_folder.read(folder)  # a corrupt record is one line naming the file, not a registered model
    path = str(folder.resolve())
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.run_folder = '{path}'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    if not runs:
        raise UserError(f"{folder}: no MLflow run in {mlflow.get_tracking_uri()} recorded this folder.")
    return str(runs[0].info.run_id)


@dataclass(frozen=True)
class Registration:
    """A run's categoriser as a version of a registered model; ``created`` is False when it was registered before."""

    name: str
    version: str
    run_id: str
    created: bool


def registered_version(name: str, run_id: str, folder: str | None) -> str | None:
    """The oldest version of ``name`` made from ``run_id``, or from another run of the same run ``folder`` (a run
    folder recorded again), or None."""
    import mlflow

    quoted = name.replace("'", "\\'")
    try:
        versions = mlflow.MlflowClient().search_model_versions(f"name = '{quoted}'")
    except mlflow.exceptions.MlflowException:  # no registered model of that name yet
        return None
    same = [
        version
        for version in versions
        if run_id in (version.run_id, version.tags.get("source_run_id"))
        or (folder is not None and version.tags.get("run_folder") == folder)
    ]
    return str(min(int(version.version) for version in same)) if same else None


def register_once(run_id: str, name: str, alias: str) -> Registration:
    """Register the categoriser of ``run_id`` as a version of ``name`` unless one already holds it; either way
    point ``alias`` at that version."""
    import mlflow

    from experiments.serving.mlflow_model import register

    client = mlflow.MlflowClient()
    try:
        folder = client.get_run(run_id).data.tags.get("run_folder")
    except mlflow.exceptions.MlflowException:
        raise UserError(f"no MLflow run {run_id} in {mlflow.get_tracking_uri()}.") from None
    existing = registered_version(name, run_id, folder)
    if existing is not None:
        client.set_registered_model_alias(name, alias, existing)
        return Registration(name, existing, run_id, created=False)
    version = register(run_id, name, alias)
    if folder:  # found again by folder when the same run folder is recorded as another MLflow run
        client.set_model_version_tag(name, version.version, "run_folder", folder)
    return Registration(name, str(version.version), run_id, created=True)


def said(registration: Registration, alias: str) -> str:
    """``registered: models:/categoriser@champion (version 2, new)`` or ``(version 2, already registered)``."""
    how = "new" if registration.created else f"already registered from run {registration.run_id}, no new version"
    return f"registered: models:/{registration.name}@{alias} (version {registration.version}, {how})"


def register_winner(report: SweepRecord, name: str, alias: str = DEFAULT_ALIAS) -> str:
    """Register a sweep's winner (its ``report.json``) as ``name@alias``; returns what to print.

    The rule: only a winner chosen on the validation split is registered; a winner that shares its validation score
    with other rows is the first of them by the report's tie rule (``report.tie_rule``), and the message says
    the tie and the rule. The same winning run registered again makes no second version.
    """
    if report.selection_split != "validation":
        return (
            f"note: the winner was chosen on the eval split, so it is not registered as {name}@{alias}; sweep with "
            "reranker.select_epochs=true (or another reranker that chooses on validation)"
        )
    try:
        registration = register_once(run_of_folder(Path(report.winner_folder)), name, alias)
    except UserError as error:  # a winner run with log_model=false, say: the sweep's result stands, unregistered
        return f"note: the winner is not registered as {name}@{alias}: {error}"
    tied = [group for group in report.ties if report.winner in group.configurations]
    if not tied:
        return said(registration, alias)
    group = tied[0]
    return (
        f"{said(registration, alias)}; a tie on validation {report.metric}: {', '.join(group.configurations)} "
        f"at {group.value:.3f}, registered {report.winner}, the first by the report's rule ({report.tie_rule})"
    )
