"""Who ran a run, from what code: MLflow's own context tags (``mlflow.user``, ``mlflow.source.name``,
``mlflow.source.type``, ``mlflow.source.git.commit`` in a git checkout), resolved in the run's own process.

They are resolved once, when the run starts, and travel with the run's tags, so the live run, the final record
and a record sent later by ``python -m experiments.sync`` (another process, another script) all say the same.
MLflow's context registry (``mlflow.tracking.context.registry.resolve_tags``) is used when the installed MLflow
has it; otherwise the user and the script are named directly.
"""

from __future__ import annotations

import getpass
import logging
import sys

#: The context tags a run carries (MLflow's names; the MLflow UI shows them as "Created by", "Source", "Git").
CONTEXT_TAGS = (
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "mlflow.source.git.branch",
    "mlflow.source.git.repoURL",
)


def run_context() -> dict[str, str]:
    """This process's context tags, as MLflow itself would set them on a run started here."""
    try:
        from mlflow.tracking.context.registry import resolve_tags
    except ImportError:  # an MLflow without the registry: the two that matter most
        return {
            "mlflow.user": _user(),
            "mlflow.source.name": sys.argv[0] if sys.argv else "",
            "mlflow.source.type": "LOCAL",
        }
    logging.getLogger("mlflow.tracking.context.registry").setLevel(logging.ERROR)  # a provider that fails: no tag
    resolved = resolve_tags()
    return {key: str(resolved[key]) for key in CONTEXT_TAGS if resolved.get(key)}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
