"""A sweep job's state, read from its folder alone: completed (``metrics.json``), failed (``failed.json``) or neither.

Every job of a ``-m`` sweep gets a folder under the sweep folder, named by ``job_folder_name``: its overrides,
readable, then a digest of all of them, so two jobs never share a folder whatever they differ in. Reading state from
the folders, not from memory, makes the monitor and the report work the same with the serial, joblib and Ray
launchers, and lets a rerun of the same sweep skip what already completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import OmegaConf

from experiments import run_folder
from experiments.errors import UserError
from experiments.records.sweep import FailedJob
from experiments.run_folder import RunRecord
from experiments.secrets import redact

Status = Literal["completed", "failed", "unfinished"]

#: The resolver naming a sweep job's folder (``hydra.sweep.subdir`` in ``conf/config.yaml``).
JOB_FOLDER_RESOLVER = "job_folder"
#: Hex digits of the override list's digest that end every job folder's name.
DIGEST_CHARS = 10
#: The readable part of a folder name is cut to this many bytes (a file name may hold 255).
READABLE_BYTES = 200


def job_folder_name(overrides: Sequence[str], exclude_keys: Sequence[str] = ()) -> str:
    """A sweep job's folder name: ``k=4,miner=cosine_<digest>``.

    The readable part is Hydra's ``override_dirname`` (the overrides sorted, joined by ``,``) less the keys in
    ``exclude_keys``, every ``paths.*`` key and every value holding a path separator, so a folder name never nests.
    The digest covers the FULL override list, those left out included: jobs that differ only in an excluded key
    (``dataset.eval_path=a.jsonl,b.jsonl``) get folders of their own, and the same overrides in another order the
    same folder (a rerun of the sweep finds its jobs).
    """
    lines = sorted(str(line) for line in overrides)
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    excluded = {str(key) for key in exclude_keys}
    readable = []
    for line in lines:
        key, _, value = line.partition("=")
        key = key.lstrip("+~")
        if key in excluded or key == "paths" or key.startswith("paths.") or any(c in value for c in "/\\\0"):
            continue
        readable.append(line)
    prefix = ",".join(readable).encode("utf-8")[:READABLE_BYTES].decode("utf-8", errors="ignore")
    return f"{prefix}_{digest}" if prefix else digest


def register_job_folder_resolver() -> None:
    """Make ``${job_folder:<overrides>,<excluded keys>}`` resolvable. Called when this module is imported: a
    launcher's worker (joblib, Ray) resolves a job's folder after unpickling the sweep's callbacks, which import it."""
    if not OmegaConf.has_resolver(JOB_FOLDER_RESOLVER):
        OmegaConf.register_new_resolver(
            JOB_FOLDER_RESOLVER,
            lambda overrides, exclude_keys=(): job_folder_name(list(overrides), list(exclude_keys or ())),
        )


register_job_folder_resolver()


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
    """The state of the job whose run folder is ``folder``.

    ``failed.json`` wins over ``metrics.json``: a job clears it when it starts, so it is the latest attempt's
    verdict (a search writes it into a completed job that gave it no score). A record that cannot be read makes
    the job failed, its reason naming the file: never a completed job without numbers, never a crash of the report.
    """
    overrides_file = folder / ".hydra" / "overrides.yaml"
    try:
        listed = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) if overrides_file.is_file() else []
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        listed = []
    overrides = dict(str(item).split("=", 1) for item in listed if "=" in str(item)) if isinstance(listed, list) else {}
    if run_folder.failed(folder):
        return Job(folder, overrides, "failed", reason=run_folder.failure_reason(folder))
    if run_folder.completed(folder):
        try:
            return Job(folder, overrides, "completed", record=run_folder.read(folder))
        except UserError as error:
            return Job(folder, overrides, "failed", reason=str(error))
    return Job(folder, overrides, "unfinished")


def sweep_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder directly under ``sweep_dir`` (those with a ``.hydra`` folder), sorted by name."""
    folders = sorted(path.parent for path in Path(sweep_dir).glob("*/.hydra"))
    return [read_job(folder) for folder in folders]


def record_failure(folder: Path, error: BaseException, user_error: bool) -> str:
    """Write ``failed.json`` (the reason, and the traceback for a bug) into a job's folder; returns the reason."""
    reason = str(error) if user_error else f"{type(error).__name__}: {error}"
    reason = redact(" ".join(reason.split()))
    record = FailedJob(
        reason=reason,
        kind="user_error" if user_error else "exception",
        traceback=None if user_error else redact("".join(traceback.format_exception(error))),
    )
    with contextlib.suppress(OSError):  # a full or read-only disk: the console line is all that can be said
        run_folder.write_failure(folder, record)
    return reason


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

    "The same" ignores the tracking settings (a rerun's sweep has a new parent run id). An unreadable
    ``config.json``, ``metrics.json`` or ``per_query.jsonl``, or a ``failed.json`` beside them, is no completed run:
    the job runs again.
    """
    if not run_folder.completed(folder) or run_folder.failed(folder):
        return None
    earlier = run_folder.read_config(folder)
    if earlier is None or _results_config(earlier.values) != _results_config(json.loads(json.dumps(config))):
        return None
    try:
        value = run_folder.read(folder).reranked(metric)
        run_folder.read_queries(folder)  # a record the report could not read is no completed run either
        return value
    except (OSError, UnicodeDecodeError, ValueError, KeyError, UserError):
        return None
