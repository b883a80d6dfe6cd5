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
import subprocess
import sys
from pathlib import Path

#: The context tags a run carries (MLflow's names; the MLflow UI shows them as "Created by", "Source", "Git").
CONTEXT_TAGS = (
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "mlflow.source.git.branch",
    "mlflow.source.git.repoURL",
)
#: Set to "true" when the checkout had uncommitted changes to tracked files: the commit tag alone would claim code
#: that did not run.
DIRTY_TAG = "experiments.git_dirty"


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
    # MLflow's git provider resolves once per process and keeps the answer; this process's script may have changed
    # since (a notebook, the tests), so the git tags are resolved afresh for it.
    resolved = {**resolve_tags(), **_git_tags()}
    tags = {key: str(resolved[key]) for key in CONTEXT_TAGS if resolved.get(key)}
    if "mlflow.source.git.commit" in tags and _dirty(_source_folder()):
        tags[DIRTY_TAG] = "true"
    return tags


def _git_tags() -> dict[str, str | None]:
    """The git commit, branch and remote of the script that runs (``None`` each outside a git checkout), as
    MLflow's git provider finds them (from ``sys.argv[0]``)."""
    from mlflow.utils.git_utils import get_git_branch, get_git_commit, get_git_repo_url

    script = sys.argv[0] if sys.argv else ""
    if not script:
        return {}
    return {
        "mlflow.source.git.commit": get_git_commit(script),
        "mlflow.source.git.branch": get_git_branch(script),
        "mlflow.source.git.repoURL": get_git_repo_url(script),
    }


def _source_folder() -> Path:
    """The folder of the script that runs (where MLflow looks for the git checkout), else the working folder."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return script.resolve().parent if script is not None and script.is_file() else Path.cwd()


def _dirty(folder: Path) -> bool:
    """Whether the git checkout around ``folder`` has uncommitted changes to tracked files (False when git cannot
    tell within 5 s)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return status.returncode == 0 and bool(status.stdout.strip())


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
