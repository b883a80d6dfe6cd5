"""The run folder's files, typed: ``metrics.json`` as a ``RunRecord``, a ``per_query.jsonl`` row as a ``QueryRecord``,
``config.json`` as a ``RunConfig``; and the sweep folder's ``report.json`` (a ``SweepRecord``) and a job's
``failed.json`` (a ``FailedJob``).

The run folder is the product's contract (``docs/run-folder.md``): this module is the one that names its files and
reads or writes them. The pipeline writes a run through ``write_run``, ``write_config`` and ``write_finetune_set``;
everything that reads a finished run back (sweep reports, the sweep parent run, ``register``, the scripts) goes
through ``read``, ``read_queries`` and ``read_config`` and the records' attributes, never through string keys. A
record is written with exactly the keys it was given (``exclude_unset``), so a folder written by an earlier release
reads, and writes back, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from experiments.errors import UserError
from experiments.files import write_atomic
from experiments.records.run import (
    ChosenScores,
    DatasetInfo,
    Estimate,
    FinetuneSetInfo,
    Fit,
    QueryRecord,
    Replicates,
    ReplicateStat,
    RunConfig,
    RunRecord,
    Summary,
    Timings,
    ValidationScore,
)
from experiments.records.sweep import FailedJob, SweepRecord
from experiments.secrets import redact

if TYPE_CHECKING:
    from experiments.outcome import RunOutcome
    from experiments.records import FinetuneSet

METRICS_FILE = "metrics.json"
PER_QUERY_FILE = "per_query.jsonl"
TABLE_FILE = "table.txt"
CONFIG_FILE = "config.json"
FINETUNE_FILE = "finetune.jsonl"
#: A sweep job that failed: its reason (written by the job; it wins over ``metrics.json``).
FAILED_FILE = "failed.json"
#: In the sweep folder: the sweep's verdict for code.
REPORT_FILE = "report.json"

__all__ = [
    "CONFIG_FILE",
    "FAILED_FILE",
    "FINETUNE_FILE",
    "METRICS_FILE",
    "PER_QUERY_FILE",
    "REPORT_FILE",
    "TABLE_FILE",
    "ChosenScores",
    "DatasetInfo",
    "Estimate",
    "FinetuneSetInfo",
    "Fit",
    "QueryRecord",
    "ReplicateStat",
    "Replicates",
    "RunConfig",
    "RunRecord",
    "Summary",
    "Timings",
    "ValidationScore",
    "clear_failure",
    "completed",
    "completed_at",
    "failed",
    "failure_reason",
    "load_config",
    "read",
    "read_config",
    "read_queries",
    "read_report",
    "record_of",
    "write",
    "write_config",
    "write_failure",
    "write_finetune_set",
    "write_report",
    "write_run",
]


def _bad(path: Path, problem: str) -> UserError:
    return UserError(f"{path}: {problem}")


def read(folder: Path) -> RunRecord:
    """The ``RunRecord`` of a completed run folder.

    Raises:
        UserError: one line naming the file when ``metrics.json`` is missing (the run did not complete) or is not a
            valid record.
    """
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        raise _bad(path, "not found; a folder without metrics.json is not a completed run (it was stopped or failed).")
    try:
        return RunRecord.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise _bad(
            path, f"not a valid run record: {where}: {first['msg']}; rerun the experiment to rewrite it."
        ) from None
    except OSError as error:
        raise _bad(path, f"cannot be read: {error.strerror or error}.") from None


def read_queries(folder: Path) -> list[QueryRecord]:
    """The ``per_query.jsonl`` rows of a run folder, in eval-file order.

    Raises:
        UserError: one line naming ``file:line`` when the file is missing or a row is not a valid record.
    """
    path = Path(folder) / PER_QUERY_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise _bad(path, f"cannot be read: {getattr(error, 'strerror', None) or error}.") from None
    rows: list[QueryRecord] = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(QueryRecord.model_validate_json(line))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(row)"
            raise UserError(f"{path}:{number}: {where}: {first['msg']}") from None
    return rows


def write(folder: Path, record: RunRecord, queries: Iterable[QueryRecord], table: str) -> None:
    """Write ``per_query.jsonl``, ``table.txt`` and, last, ``metrics.json`` (each atomically): a folder with
    ``metrics.json`` is a completed run."""
    write_atomic(folder / PER_QUERY_FILE, "".join(json.dumps(query.model_dump()) + "\n" for query in queries))
    write_atomic(folder / TABLE_FILE, table + "\n")
    write_atomic(folder / METRICS_FILE, record.to_json())


def record_of(
    *,
    dataset: DatasetInfo,
    finetune_set: FinetuneSetInfo,
    fit: Fit | None,
    finetune_id: str | None,
    summary: Summary,
    replicates: Replicates | None,
    scored_pairs: int | None,
    cached_pairs: int | None,
    timings: Mapping[str, float],
) -> RunRecord:
    """Assemble a run's ``RunRecord``; ``validation`` comes from the fit's selection, ``replicates`` is left out of
    the record (and the file) when the run has none."""
    optional: dict[str, Any] = {}
    validation = fit.selection.scores() if fit else None
    if validation is not None:
        optional["validation"] = validation
    if replicates is not None:
        optional["replicates"] = replicates
    return RunRecord(
        dataset=dataset,
        finetune_set=finetune_set,
        finetune_id=finetune_id,
        fit=fit,
        metrics=summary,
        **optional,
        scored_pairs=scored_pairs,
        cached_pairs=cached_pairs,
        timings=Timings.model_validate(timings),
    )


def write_run(outcome: RunOutcome) -> RunRecord:
    """Write ``per_query.jsonl``, ``table.txt`` and, last, ``metrics.json`` (the run's ``RunRecord``)."""
    fit, splits, evaluation, finetune_set = outcome.fit, outcome.splits, outcome.evaluation, outcome.finetune_set
    record = record_of(
        dataset=DatasetInfo(
            name=splits.name,
            digest=splits.digest(),
            train=len(splits.train),
            eval=len(splits.eval),
            categories=len(splits.categories),
        ),
        finetune_set=FinetuneSetInfo(
            items=len(finetune_set), digest=finetune_set.digest(), fill_notes=finetune_set.fill_notes
        ),
        fit=None
        if fit is None
        else Fit(
            reused=fit.reused,
            train_seconds=fit.train_seconds,
            train_pairs=fit.train_pairs,
            **fit.extra,
            loss_history=fit.loss_history,
            selection=fit.selection,
        ),
        finetune_id=fit.finetune_id if fit else None,
        summary=evaluation.summary,
        replicates=outcome.replicates,
        scored_pairs=evaluation.scored_pairs,
        cached_pairs=evaluation.cached_pairs,
        timings=outcome.timings,
    )
    queries = [result.record() for result in evaluation.results]
    write(outcome.output_dir, record, queries, outcome.table)
    return record


def completed(folder: Path) -> bool:
    """Whether ``folder`` holds a completed run (``metrics.json`` is written last)."""
    return (Path(folder) / METRICS_FILE).is_file()


def completed_at(folder: Path) -> float | None:
    """When the run in ``folder`` completed (``metrics.json``'s modification time), or None when it has not."""
    path = Path(folder) / METRICS_FILE
    return path.stat().st_mtime if path.is_file() else None


def write_config(folder: Path, config: Mapping[str, Any]) -> None:
    """``config.json``: the resolved config (its secret values already redacted), keys sorted."""
    write_atomic(Path(folder) / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_config(folder: Path) -> RunConfig:
    """The run's ``config.json``.

    Raises:
        OSError, ValueError (``UnicodeDecodeError``, ``json.JSONDecodeError``), RecursionError (nested too deep):
            the file cannot be read or parsed; TypeError: it is not a JSON object.
    """
    values = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise TypeError(f"{CONFIG_FILE} holds a {type(values).__name__}, not an object")
    return RunConfig(values=values)


def read_config(folder: Path) -> RunConfig | None:
    """The run's ``config.json``; None when it is missing, unreadable or not a JSON object."""
    try:
        return load_config(folder)
    except (OSError, ValueError, RecursionError, TypeError):
        return None


def write_finetune_set(folder: Path, finetune_set: FinetuneSet) -> None:
    """``finetune.jsonl``: the fine-tuning set, one item a line (``docs/data-formats.md``)."""
    write_atomic(Path(folder) / FINETUNE_FILE, finetune_set.to_jsonl())


def write_report(sweep_dir: Path, record: SweepRecord) -> None:
    """``report.json`` in the sweep folder; folder names in it never carry a secret (a sweep dir read from the
    environment, say)."""
    write_atomic(Path(sweep_dir) / REPORT_FILE, redact(record.to_json()))


def read_report(sweep_dir: Path) -> SweepRecord | None:
    """The sweep's ``report.json``; None when the sweep wrote none (no job completed).

    Raises:
        UserError: one line naming the file when it cannot be read or is not a sweep record.
    """
    path = Path(sweep_dir) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        return SweepRecord.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise _bad(path, f"not a valid sweep report: {where}: {first['msg']}") from None
    except OSError as error:
        raise _bad(path, f"cannot be read: {error.strerror or error}.") from None


def failed(folder: Path) -> bool:
    """Whether the job in ``folder`` recorded a failure (``failed.json``)."""
    return (Path(folder) / FAILED_FILE).is_file()


def write_failure(folder: Path, record: FailedJob) -> None:
    """``failed.json`` into a job's folder (made when missing).

    Raises:
        OSError: the folder or the file could not be written.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(folder) / FAILED_FILE, record.to_json())


def failure_reason(folder: Path) -> str:
    """The reason a job's ``failed.json`` gives, or a line naming the file when it gives none or cannot be read."""
    path = Path(folder) / FAILED_FILE
    try:
        record = FailedJob.model_validate(json.loads(path.read_text("utf-8")))
    except ValidationError:
        return f"{path}: names no reason; the job failed"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"{path}: unreadable ({type(error).__name__}); the job failed"
    return record.reason or f"{path}: names no reason; the job failed"


def clear_failure(folder: Path) -> None:
    """Forget an earlier failure of this job (it is being run again)."""
    (Path(folder) / FAILED_FILE).unlink(missing_ok=True)
