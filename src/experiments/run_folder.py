"""The run folder's records, typed: ``metrics.json`` as a ``RunRecord``, a ``per_query.jsonl`` row as a ``QueryRecord``.

The run folder is the product's contract (``docs/run-folder.md``): the pipeline writes it through ``write``, and
everything that reads a finished run back (sweep reports, the sweep parent run, ``register``, ``sync``, the
scripts) goes through ``read`` and the records' attributes, never through string keys. A record is written with
exactly the keys it was given (``exclude_unset``), so a folder written by an earlier release reads, and writes back,
unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

from experiments.errors import UserError
from experiments.evaluation.metrics import METRIC_NAMES
from experiments.files import write_atomic

if TYPE_CHECKING:
    from experiments.outcome import Evaluation, RunOutcome

METRICS_FILE = "metrics.json"
PER_QUERY_FILE = "per_query.jsonl"
TABLE_FILE = "table.txt"

#: A number as written: an int stays an int and a float a float, so a record reads and writes back byte for byte.
Number = int | float


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class DatasetInfo(_Record):
    """The data set a run read: its name, a content hash of examples and categories, and the split sizes."""

    name: str
    digest: str
    train: int
    eval: int
    categories: int


class FinetuneSetInfo(_Record):
    """The fine-tuning set: item count, the sha256 of ``finetune.jsonl``, negatives each strategy topped up."""

    items: int
    digest: str
    fill_notes: dict[str, int]


class Fit(_Record):
    """What training did (``null`` in ``metrics.json`` for rerankers that do not train).

    The reranker's own details (``loss``, ``train_loss``, ``steps``, ``epochs``...) are extra keys, between
    ``train_pairs`` and ``loss_history``; ``selection`` is what was chosen on the validation split (``{}`` when
    nothing was): its keys depend on the reranker (``epochs`` or ``weight``, ``criterion``, ``curve``...).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    reused: bool
    train_seconds: Number
    train_pairs: int
    loss_history: list[tuple[int, Number]] = []
    selection: dict[str, Any] = {}

    @model_serializer(mode="wrap")
    def _extras_before_history(self, handler: Any) -> dict[str, Any]:
        # The file has always listed the reranker's details before loss_history and selection.
        data: dict[str, Any] = handler(self)
        tail: dict[str, Any] = {key: data.pop(key) for key in ("loss_history", "selection") if key in data}
        return {**data, **tail}

    @property
    def details(self) -> dict[str, Any]:
        """The reranker's own training details (the extra keys)."""
        return dict(self.model_extra or {})


class Estimate(_Record):
    """A mean with its 95% bootstrap interval."""

    mean: float
    ci_low: float
    ci_high: float


class Summary(_Record):
    """``metrics.json["metrics"]``: every metric for the baseline, the reranker and their paired delta."""

    n_queries: int
    baseline: dict[str, Estimate]
    reranker: dict[str, Estimate]
    delta: dict[str, Estimate]
    latency_ms: dict[str, Number]
    candidate_recall: float


class ValidationScore(_Record):
    mean: float


class Validation(_Record):
    """The chosen setting's scores on the validation split carved from train (what a sweep picks winners by)."""

    reranker: dict[str, ValidationScore]
    queries: int | None
    chosen: Number


class ReplicateStat(_Record):
    """One reranked metric over the replicate seeds: mean, sample standard deviation, the per-seed values."""

    mean: float
    sd: float
    values: list[float]


class Replicates(_Record):
    """``replicates=N``: the seeds and, under each metric name (``mrr@1``...), its ``ReplicateStat``."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, ReplicateStat]

    n: int
    seeds: list[int]

    def stat(self, metric: str) -> ReplicateStat:
        return (self.model_extra or {})[metric]


class Timings(_Record):
    """Seconds per step of the run (the first seed's, with replicates)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    load_s: float | None = None
    embed_s: float | None = None
    index_s: float | None = None
    mine_s: float | None = None
    fit_s: float | None = None
    evaluate_s: float | None = None


class RunRecord(_Record):
    """``metrics.json``: a completed run's aggregates (see ``docs/run-folder.md``).

    ``validation`` and ``replicates`` are absent from the file when the run has none; ``scored_pairs`` and
    ``cached_pairs`` count reranker scores computed and found in the score cache (``null`` without a cache).
    """

    dataset: DatasetInfo
    finetune_set: FinetuneSetInfo
    finetune_id: str | None
    fit: Fit | None
    metrics: Summary
    validation: Validation | None = None
    replicates: Replicates | None = None
    scored_pairs: int | None
    cached_pairs: int | None
    timings: Timings

    def reranked(self, metric: str) -> float:
        """The reranker's eval mean of ``metric`` (``mrr@1``)."""
        return self.metrics.reranker[metric].mean

    def validation_score(self, metric: str) -> float | None:
        """The chosen setting's validation mean of ``metric``, when the run chose on validation and scored it."""
        if self.validation is None or metric not in self.validation.reranker:
            return None
        return self.validation.reranker[metric].mean

    def to_json(self) -> str:
        """The file's text: only the keys the record was built or read with, in the documented order."""
        return json.dumps(self.model_dump(exclude_unset=True), indent=2) + "\n"


class QueryRecord(_Record):
    """One ``per_query.jsonl`` row: an eval example, both top-5 rankings with scores, and their metrics."""

    query: str
    expected: list[str]
    baseline_top: list[str]
    baseline_scores: list[float]
    reranked_top: list[str]
    reranked_scores: list[float]
    baseline: dict[str, float]
    reranker: dict[str, float]
    rerank_ms: float


def validation_of(selection: Mapping[str, Any] | None) -> Validation | None:
    """The chosen setting's validation scores from a fit's ``selection``, when the reranker chose on the
    validation split (a model trained without it) and recorded the curve it chose from."""
    if not selection or not selection.get("curve") or not selection.get("criterion"):
        return None
    chosen = selection.get("epochs", selection.get("weight"))
    for point in selection["curve"]:
        if point[0] == chosen:
            scores = dict(zip(selection["criterion"], point[1:], strict=True))
            return Validation(
                reranker={name: ValidationScore(mean=float(value)) for name, value in scores.items()},
                queries=selection.get("validation_queries"),
                chosen=chosen,
            )
    return None


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
    summary: Mapping[str, Any],
    replicates: Mapping[str, Any] | None,
    scored_pairs: int | None,
    cached_pairs: int | None,
    timings: Mapping[str, float],
) -> RunRecord:
    """Assemble a run's ``RunRecord``; ``validation`` comes from the fit's selection, ``replicates`` is left out of
    the record (and the file) when the run has none."""
    optional: dict[str, Any] = {}
    validation = validation_of(fit.selection) if fit else None
    if validation is not None:
        optional["validation"] = validation
    if replicates:
        optional["replicates"] = Replicates.model_validate(replicates)
    return RunRecord(
        dataset=dataset,
        finetune_set=finetune_set,
        finetune_id=finetune_id,
        fit=fit,
        metrics=Summary.model_validate(summary),
        **optional,
        scored_pairs=scored_pairs,
        cached_pairs=cached_pairs,
        timings=Timings.model_validate(timings),
    )


def replicate_summary(seeds: Sequence[int], evaluations: Sequence[Evaluation]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of every reranked metric, with the per-seed values."""
    block: dict[str, Any] = {"n": len(seeds), "seeds": list(seeds)}
    for name in METRIC_NAMES:
        values = [evaluation.summary.systems["reranker"][name].mean for evaluation in evaluations]
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        block[name] = {"mean": float(np.mean(values)), "sd": sd, "values": values}
    return block


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
        summary=evaluation.summary.as_dict(),
        replicates=outcome.replicates,
        scored_pairs=evaluation.scored_pairs,
        cached_pairs=evaluation.cached_pairs,
        timings=outcome.timings,
    )
    queries = [QueryRecord.model_validate(result.row()) for result in evaluation.results]
    write(outcome.output_dir, record, queries, outcome.table)
    return record
