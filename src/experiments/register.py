"""Register a run's categoriser and point an alias at it: ``python -m experiments.register``.

    python -m experiments.register <run id | run folder> --name categoriser [--alias champion]

Then ``models:/categoriser@champion`` names it everywhere: ``python -m experiments.suggest``,
``mlflow.pyfunc.load_model`` and ``mlflow models serve``. Registering is idempotent: a run (or run folder) whose
categoriser already has a version of ``name`` gets no second one, the alias is pointed at that version. Registering
another run makes a new version and moves the alias; older versions stay registered. The rules live in
``experiments.tracking.registry``, which a sweep's MLflow tracker uses to register its winner.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.errors import UserError
from experiments.serving.mlflow_model import DEFAULT_ALIAS, MODEL_NAME, RUN_ID
from experiments.tracking.registry import register_once, run_of_folder


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
    from experiments.serving.mlflow_model import connect, quiet_artifacts, tracking_uri

    try:
        connect(tracking_uri(args.tracking_uri))
        run_id = args.source if RUN_ID.match(args.source) else run_of_folder(Path(args.source))
        with quiet_artifacts():
            registration = register_once(run_id, args.name, args.alias)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if registration.created:
        print(f"registered {args.name} version {registration.version} from run {run_id}")
    else:
        print(f"{args.name} version {registration.version} already holds run {run_id}'s categoriser: no new version")
    print(f"models:/{args.name}@{args.alias} -> version {registration.version}")


if __name__ == "__main__":
    main()
