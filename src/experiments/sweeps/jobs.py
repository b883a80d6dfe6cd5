"""A sweep job's state, read from its folder alone: completed (``metrics.json``), failed (``failed.json``) or neither.

Every job of a ``-m`` sweep gets a folder under the sweep folder (named after its overrides). Reading state from
the folders, not from memory, makes the monitor and the report work the same with the serial, joblib and Ray
launchers, and lets a rerun of the same sweep skip what already completed.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from experiments import run_folder
from experiments.files import write_atomic
from experiments.run_folder import METRICS_FILE, RunRecord
from experiments.secrets import redact

Status = Literal["completed", "failed", "unfinished"]

FAILED_FILE = "failed.json"


@dataclass(frozen=True)
class Job:
    """One job of a sweep, as its folder tells it.

    Attributes:
        folder: the job's run folder.
        overrides: the job's command-line overrides (``{"miner": "cosine", "k": "4"}``), in the order given.
        status: ``completed`` when ``metrics.json`` exists, ``failed`` when ``failed.json`` does, else ``unfinished``.
        record: the job's ``metrics.json`` as a ``RunRecord`` (None unless completed).
        reason: the one-line failure reason (empty unless failed).
    """

    folder: Path
    overrides: dict[str, str]
    status: Status
    record: RunRecord | None = None
    reason: str = ""

    @property
    def label(self) -> str:
        """The job's folder name (its overrides, paths left out: ``k=4,miner=cosine``)."""
        return self.folder.name


def read_job(folder: Path) -> Job:
    """The state of the job whose run folder is ``folder``."""
    overrides_file = folder / ".hydra" / "overrides.yaml"
    listed = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) if overrides_file.is_file() else []
    overrides = dict(item.split("=", 1) for item in listed or [] if "=" in item)
    if (folder / METRICS_FILE).is_file():
        return Job(folder, overrides, "completed", record=run_folder.read(folder))
    if (folder / FAILED_FILE).is_file():
        reason = json.loads((folder / FAILED_FILE).read_text("utf-8")).get("reason", "")
        return Job(folder, overrides, "failed", reason=reason)
    return Job(folder, overrides, "unfinished")


def sweep_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder directly under ``sweep_dir`` (those with a ``.hydra`` folder), sorted by name."""
    folders = sorted(path.parent for path in Path(sweep_dir).glob("*/.hydra"))
    return [read_job(folder) for folder in folders]


def record_failure(folder: Path, error: BaseException, user_error: bool) -> str:
    """Write ``failed.json`` (the reason, and the traceback for a bug) into a job's folder; returns the reason."""
    reason = str(error) if user_error else f"{type(error).__name__}: {error}"
    reason = redact(" ".join(reason.split()))
    record = {
        "reason": reason,
        "kind": "user_error" if user_error else "exception",
        "traceback": None if user_error else redact("".join(traceback.format_exception(error))),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / FAILED_FILE, json.dumps(record, indent=2) + "\n")
    except OSError:  # a full or read-only disk: the console line is all that can be said
        pass
    return reason


def clear_failure(folder: Path) -> None:
    """Forget an earlier failure of this job (it is being run again)."""
    (folder / FAILED_FILE).unlink(missing_ok=True)


#: Config keys that change where a run is recorded or how it prints, not what it computes.
NOT_RESULTS = ("tracker", "trackers", "progress")
#: Keys, at any depth, naming where a component keeps its cache by content (``miner.cache_dir``), or whether it
#: draws progress bars: a cache moved, added or removed computes the same run.
NOT_RESULTS_ANYWHERE = ("cache_dir", "progress")


def _results_config(config: dict[str, Any]) -> dict[str, Any]:
    return {key: _results_value(value) for key, value in config.items() if key not in NOT_RESULTS}


def _results_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _results_value(item) for key, item in value.items() if key not in NOT_RESULTS_ANYWHERE}
    return value


def completed_metric(folder: Path, config: dict[str, Any], metric: str) -> float | None:
    """The reranker's ``metric`` of an earlier completed run of the same config in ``folder``, else None.

    "The same" ignores the tracking settings (a rerun's sweep has a new parent run id).
    """
    metrics_file, config_file = folder / METRICS_FILE, folder / "config.json"
    if not (metrics_file.is_file() and config_file.is_file()):
        return None
    earlier = json.loads(config_file.read_text("utf-8"))
    if _results_config(earlier) != _results_config(json.loads(json.dumps(config))):
        return None
    return run_folder.read(folder).reranked(metric)
