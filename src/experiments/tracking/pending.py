"""A run a tracker has not recorded yet, kept in its run folder as data: ``pending-trackers/<tracker>.json``.

The record is JSON checked against a schema (``PendingRecord``) when it is read back, so nothing in a run folder is
ever executed: a folder shared with others (``outputs/`` on a cluster) can hold only data for
``python -m experiments.sync`` to send. The earlier ``<tracker>.pickle`` records are never loaded (unpickling a file
runs whatever code it names); ``legacy_records`` finds them so that sync can refuse them in one line.

A finished run's categoriser is kept as the descriptions its package is built from (``Portable``: a class of this
project, its JSON arguments and its model folder) and its category vectors as float32 bytes; a failed or stopped run
as its params, tags and reason.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from experiments.errors import UserError
from experiments.evaluation.evaluate import QueryResult
from experiments.files import write_atomic
from experiments.models import Portable
from experiments.records import Category, DatasetSplits, FinetuneSet
from experiments.records.run import Summary
from experiments.serving.package import PART, CategoriserPackage
from experiments.tracking.base import FailedRun, TrackedRun

#: The folder of a run folder holding the runs a tracker could not record yet, one ``<tracker>.json`` each.
PENDING = "pending-trackers"
SUFFIX = ".json"
#: The suffix of the records of earlier versions: pickles, never loaded.
LEGACY_SUFFIX = ".pickle"
FORMAT: Literal[1] = 1
#: A categoriser part is a class of this project: the logged model ships this package's code and nothing else.
PROJECT_CLASS = r"^experiments(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class _Record(BaseModel):
    # NaN metrics (an empty split) round-trip as the JSON constants NaN / Infinity instead of becoming null.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class PartRecord(_Record):
    """One ``Portable``: a nested part (``reranker=fused``) is the argument ``{"part": <record>}``."""

    target: str = Field(pattern=PROJECT_CLASS)
    kwargs: dict[str, JsonValue]
    model_arg: str | None = None
    model_dir: str | None = None
    weights_sha256: str | None = None

    @classmethod
    def of(cls, part: Portable) -> PartRecord:
        kwargs = {
            key: {PART: cls.of(value).model_dump(mode="json")} if isinstance(value, Portable) else value
            for key, value in part.kwargs.items()
        }
        return cls(
            target=part.target,
            kwargs=json.loads(json.dumps(kwargs)),  # tuples become lists, as in the package's categoriser.json
            model_arg=part.model_arg,
            model_dir=None if part.model_dir is None else str(part.model_dir),
            weights_sha256=part.weights_sha256,
        )

    def portable(self) -> Portable:
        kwargs: dict[str, object] = {
            key: PartRecord.model_validate(value[PART]).portable()
            if isinstance(value, dict) and set(value) == {PART}
            else value
            for key, value in self.kwargs.items()
        }
        model_dir = None if self.model_dir is None else Path(self.model_dir)
        return Portable(self.target, kwargs, self.model_arg, model_dir, self.weights_sha256)


class CategoriserRecord(_Record):
    """A ``CategoriserPackage``; ``vectors`` is the base64 of its little-endian float32 matrix of ``shape``."""

    categories: list[Category]
    documents: list[str]
    shape: tuple[int, int]
    vectors: str
    top_k: int | None
    embedder: PartRecord
    reranker: PartRecord
    finetune_id: str | None = None
    query_fields: list[str] | None = None

    @classmethod
    def of(cls, package: CategoriserPackage) -> CategoriserRecord:
        matrix = np.ascontiguousarray(package.vectors, dtype="<f4")
        return cls(
            categories=package.categories,
            documents=package.documents,
            shape=(int(matrix.shape[0]), int(matrix.shape[1])),
            vectors=base64.b64encode(matrix.tobytes()).decode("ascii"),
            top_k=package.top_k,
            embedder=PartRecord.of(package.embedder),
            reranker=PartRecord.of(package.reranker),
            finetune_id=package.finetune_id,
            query_fields=package.query_fields,
        )

    def package(self) -> CategoriserPackage:
        raw = base64.b64decode(self.vectors, validate=True)
        if len(raw) != 4 * self.shape[0] * self.shape[1]:
            raise ValueError(f"vectors: {len(raw)} bytes, not the float32 matrix of shape {self.shape}")
        vectors = np.frombuffer(raw, dtype="<f4").reshape(self.shape).astype(np.float32)
        embedder, reranker = self.embedder.portable(), self.reranker.portable()
        return CategoriserPackage(
            list(self.categories), list(self.documents), vectors, self.top_k, embedder, reranker,
            self.finetune_id, self.query_fields,
        )  # fmt: skip


def summary_of_earlier_records(value: Any) -> Any:
    """A summary as records kept before the typed run files wrote it (``systems``; ``low``/``high``), in today's
    shape (``baseline``/``reranker``; ``ci_low``/``ci_high``); any other value unchanged.

    Runs kept pending by that version stay sendable: sync delivers them instead of asking for a rerun.
    """
    if not isinstance(value, dict) or "systems" not in value or not isinstance(value["systems"], dict):
        return value

    def estimates(column: Any) -> Any:
        if not isinstance(column, dict):
            return column
        return {
            name: {"mean": e["mean"], "ci_low": e["low"], "ci_high": e["high"]}
            if isinstance(e, dict) and {"mean", "low", "high"} <= e.keys()
            else e
            for name, e in column.items()
        }

    shaped = {key: item for key, item in value.items() if key != "systems"}
    shaped.update({system: estimates(column) for system, column in value["systems"].items()})
    shaped["delta"] = estimates(value.get("delta"))
    return shaped


class FinishedRecord(_Record):
    """A ``TrackedRun`` without its folders (sync hands the run folder the record is found in)."""

    @field_validator("summary", mode="before")
    @classmethod
    def _earlier_summary(cls, value: Any) -> Any:
        return summary_of_earlier_records(value)

    name: str
    params: dict[str, JsonValue]
    tags: dict[str, str]
    metrics: dict[str, float]
    splits: DatasetSplits
    finetune_set: FinetuneSet
    summary: Summary
    results: list[QueryResult]
    finetune_id: str | None
    loss_history: list[tuple[int, float]] = []
    categoriser: CategoriserRecord | None = None
    started_at: float | None = None
    ended_at: float | None = None


class PendingRecord(_Record):
    """What ``pending-trackers/<tracker>.json`` holds: exactly one of a finished run and a failed (stopped) one."""

    format: Literal[1] = FORMAT
    finished: FinishedRecord | None = None
    failed: FailedRun | None = None

    @classmethod
    def of(cls, run: TrackedRun | FailedRun) -> PendingRecord:
        if isinstance(run, FailedRun):
            return cls(failed=run)
        fields: dict[str, Any] = {name: getattr(run, name) for name in FinishedRecord.model_fields}
        fields["params"] = json.loads(json.dumps(dict(run.params), default=str))
        fields["categoriser"] = None if run.categoriser is None else CategoriserRecord.of(run.categoriser)
        return cls(finished=FinishedRecord(**fields))

    def run(self, run_folder: Path) -> TrackedRun | FailedRun:
        """The run as its tracker receives it, ``run_folder`` its folder (and the files it uploads)."""
        if self.failed is not None:
            return self.failed
        if self.finished is None:
            raise ValueError("neither a finished nor a failed run")
        finished = self.finished
        fields: Mapping[str, Any] = {name: getattr(finished, name) for name in FinishedRecord.model_fields}
        categoriser = None if finished.categoriser is None else finished.categoriser.package()
        return TrackedRun(**{**fields, "categoriser": categoriser}, run_folder=run_folder, artifacts=run_folder)


def save_pending(run: TrackedRun | FailedRun, run_folder: Path, key: str) -> Path:
    """Keep a run for tracker ``key`` until it has recorded it (``python -m experiments.sync`` sends it).

    Written under a temporary name and renamed; a write that fails (a full disk) leaves no ``.partial`` behind.

    Raises:
        ValueError: the run cannot be kept as data (a categoriser part that is no class of this project).
        OSError: the folder or the file could not be written.
    """
    data = PendingRecord.of(run).model_dump_json()  # before the folder: a run that cannot be kept leaves nothing
    folder = run_folder / PENDING
    path = folder / f"{key}{SUFFIX}"
    created = not folder.is_dir()
    try:
        folder.mkdir(exist_ok=True)
        write_atomic(path, data)  # a failed write leaves no .partial
    except BaseException:
        if created:
            remove_if_empty(folder)
        raise
    return path


def load_pending(path: Path, data: bytes) -> TrackedRun | FailedRun:
    """The run kept as ``data`` in ``path`` (``<run folder>/pending-trackers/<tracker>.json``).

    Raises:
        UserError: ``data`` is not JSON, or not a record this version reads; it names the file.
    """
    try:
        record = PendingRecord.model_validate_json(data)
        return record.run(path.parent.parent)
    except ValidationError as error:
        first = error.errors()[0]
        problem = f"{'.'.join(str(part) for part in first['loc']) or 'the record'}: {first['msg']}"
    except ValueError as error:
        problem = str(error)
    raise UserError(f"{path}: not a pending run this version reads ({problem}); delete it and rerun the run.")


def pending_name(key: str) -> str:
    """The file name of tracker ``key``'s pending record."""
    return f"{key}{SUFFIX}"


def legacy_records(outputs: Path) -> list[Path]:
    """The pending records of earlier versions (pickles, claimed or not) under ``outputs``: never loaded."""
    return sorted(path for path in outputs.rglob(f"{PENDING}/*{LEGACY_SUFFIX}*") if path.is_file())


def remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
