"""The run folder's records, typed: ``metrics.json`` as a ``RunRecord``, a ``per_query.jsonl`` row as a ``QueryRecord``.

The run folder is the product's contract (``docs/run-folder.md``): the pipeline writes it through ``write``, and
everything that reads a finished run back (sweep reports, the sweep parent run, ``register``, the
scripts) goes through ``read`` and the records' attributes, never through string keys. A record is written with
exactly the keys it was given (``exclude_unset``), so a folder written by an earlier release reads, and writes back,
unchanged.
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
    RunRecord,
    Summary,
    Timings,
    ValidationScore,
)

if TYPE_CHECKING:
    from experiments.outcome import RunOutcome

METRICS_FILE = "metrics.json"
PER_QUERY_FILE = "per_query.jsonl"
TABLE_FILE = "table.txt"

__all__ = [
    "METRICS_FILE",
    "PER_QUERY_FILE",
    "TABLE_FILE",
    "ChosenScores",
    "DatasetInfo",
    "Estimate",
    "FinetuneSetInfo",
    "Fit",
    "QueryRecord",
    "ReplicateStat",
    "Replicates",
    "RunRecord",
    "Summary",
    "Timings",
    "ValidationScore",
    "read",
    "read_queries",
    "record_of",
    "write",
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
