"""Register a run's categoriser and point an alias at it: ``python -m experiments.register``.

    python -m experiments.register <run id | run folder> --name categoriser [--alias champion]

Then ``models:/categoriser@champion`` names it everywhere: ``python -m experiments.suggest``,
``mlflow.pyfunc.load_model`` and ``mlflow models serve``. Registering again moves the alias to the new version;
older versions stay registered. A sweep registers its winner the same way (``experiments.serving.mlflow_model
.register``); the winner must be chosen on validation data, never on the eval split.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import run_folder
from experiments.errors import UserError
from experiments.serving.mlflow_model import DEFAULT_ALIAS, MODEL_NAME, RUN_ID


def run_of_folder(folder: Path) -> str:
    """The MLflow run that recorded a run folder (its ``run_folder`` tag)."""
    import mlflow

    if not (folder / run_folder.METRICS_FILE).is_file():
        if any(folder.glob(f"*/{run_folder.METRICS_FILE}")):
            raise UserError(
                f"{folder} is a sweep folder: pass the folder (or MLflow run id) of the run to register; choose "
                "it on validation data, not on the eval split's metrics."
            )
        raise UserError(f"{folder}: no metrics.json; not a completed run folder.")
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


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry: a user mistake exits 2 with one ``error:`` line, no traceback."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.register", description="Register a run's categoriser model under an alias."
    )
    parser.add_argument("source", help="an MLflow run id or a run folder (outputs/runs/<date>/<time>)")
    parser.add_argument("--name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help=f"alias to point at it (default: {DEFAULT_ALIAS})")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./outputs/mlflow.db)")
    args = parser.parse_args(argv)
    from experiments.serving.mlflow_model import connect, quiet_artifacts, register, tracking_uri

    try:
        connect(tracking_uri(args.tracking_uri))
        run_id = args.source if RUN_ID.match(args.source) else run_of_folder(Path(args.source))
        with quiet_artifacts():
            version = register(run_id, args.name, args.alias)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"registered {args.name} version {version.version} from run {run_id}")
    print(f"models:/{args.name}@{args.alias} -> version {version.version}")


if __name__ == "__main__":
    main()
