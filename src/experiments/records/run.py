"""The run folder's records as pydantic models: ``RunRecord`` (``metrics.json``) and ``QueryRecord`` (a
``per_query.jsonl`` row), with the nested blocks they are made of. The data contract is ``docs/run-folder.md``.

The evaluation step builds ``Estimate`` and ``Summary`` itself: what it computes is what the file holds.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, Field, model_serializer

from experiments.metrics import METRIC_NAMES
from experiments.records.base import Record

#: A number as written: an int stays an int and a float a float, so a record reads and writes back byte for byte.
Number = int | float


class DatasetInfo(Record):
    """The data set a run read: its name, a content hash of examples and categories, and the split sizes."""

    name: str
    digest: str
    train: int
    eval: int
    categories: int


class FinetuneSetInfo(Record):
    """The fine-tuning set: item count, the sha256 of ``finetune.jsonl``, negatives each strategy topped up."""

    items: int
    digest: str
    fill_notes: dict[str, int]


class ValidationScore(Record):
    mean: float


class ChosenScores(Record):
    """The chosen setting's scores on the validation split carved from train (what a sweep picks winners by)."""

    reranker: dict[str, ValidationScore]
    queries: int | None
    chosen: Number


class Selection(Record):
    """What a fit chose on the validation split, and the curve it chose from; no field set when nothing was chosen.

    ``epochs`` (an epoch count, ``rerankers.trained``) or ``weight`` (the fusion weight, ``rerankers.fused``) is the
    choice; ``curve`` holds ``[option, *criterion values]`` per option tried, ``criterion`` names those values.
    ``category`` is the selection of a fused reranker's category part. Only the fields a reranker set are written.
    """

    epochs: Number | None = None
    max_epochs: Number | None = None
    weight: Number | None = None
    criterion: list[str] = Field(default_factory=list)
    curve: list[list[Number]] = Field(default_factory=list)
    fit_items: int | None = None
    validation_queries: int | None = None
    select_seconds: float | None = None
    reused: bool | None = None
    category: Selection | None = None

    @property
    def chosen(self) -> Number | None:
        """The option chosen: the epoch count, else the fusion weight (None when nothing was chosen)."""
        return self.epochs if self.epochs is not None else self.weight

    def scores(self) -> ChosenScores | None:
        """The chosen option's validation scores, when the reranker chose on the validation split (a model trained
        without it) and recorded the curve it chose from."""
        if not self.curve or not self.criterion:
            return None
        for point in self.curve:
            if point[0] == self.chosen:
                values = dict(zip(self.criterion, point[1:], strict=True))
                return ChosenScores(
                    reranker={name: ValidationScore(mean=float(value)) for name, value in values.items()},
                    queries=self.validation_queries,
                    chosen=self.chosen,
                )
        return None


class Fit(Record):
    """What training did (``null`` in ``metrics.json`` for rerankers that do not train).

    The reranker's own details (``loss``, ``train_loss``, ``steps``, ``epochs``...) are extra keys, between
    ``train_pairs`` and ``loss_history``; ``selection`` is what was chosen on the validation split (``{}`` when
    nothing was; see ``Selection``).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    reused: bool
    train_seconds: Number
    train_pairs: int
    loss_history: list[tuple[int, Number]] = Field(default_factory=list)
    selection: Selection = Field(default_factory=Selection)

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


class Estimate(Record):
    """A mean with its 95% bootstrap interval (``ci_low``, ``ci_high``: in every file that holds one)."""

    mean: float
    ci_low: float
    ci_high: float

    def cell(self, signed: bool = False) -> str:
        """``0.733 [0.700, 0.766]`` (``+0.033 [+0.010, +0.056]`` signed): how every table shows an estimate."""
        sign = "+" if signed else ""
        return f"{self.mean:{sign}.3f} [{self.ci_low:{sign}.3f}, {self.ci_high:{sign}.3f}]"


class Summary(Record):
    """``metrics.json["metrics"]``: every metric for the baseline, the reranker and their paired delta.

    ``candidate_recall`` is the share of expected labels among the first stage's candidates: the ceiling of any
    reranker's recall.
    """

    n_queries: int
    baseline: dict[str, Estimate]
    reranker: dict[str, Estimate]
    delta: dict[str, Estimate]
    latency_ms: dict[str, Number]
    candidate_recall: float

    def table_rows(self) -> list[dict[str, object]]:
        """One row per metric (``recall@1`` ...): each system and the delta, with their intervals."""
        rows: list[dict[str, object]] = []
        for name in METRIC_NAMES:
            row: dict[str, object] = {"metric": name}
            columns = {"baseline": self.baseline[name], "reranker": self.reranker[name], "delta": self.delta[name]}
            for column, value in columns.items():
                row.update({column: value.mean, f"{column}_ci_low": value.ci_low, f"{column}_ci_high": value.ci_high})
            rows.append(row)
        return rows


class ReplicateStat(Record):
    """One reranked metric over the replicate seeds: mean, sample standard deviation, the per-seed values."""

    mean: float
    sd: float
    values: list[float]


class Replicates(Record):
    """``replicates=N``: the seeds and, under each metric name (``mrr@1``...), its ``ReplicateStat``; with
    ``validation``, the chosen settings' validation scores over the same seeds (each seed chose its own)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, ReplicateStat]

    n: int
    seeds: list[int]
    validation: dict[str, ReplicateStat] | None = None

    def stat(self, metric: str) -> ReplicateStat:
        return (self.model_extra or {})[metric]


class Timings(Record):
    """Seconds per step of the run (the first seed's, with replicates)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    load_s: float | None = None
    embed_s: float | None = None
    index_s: float | None = None
    mine_s: float | None = None
    fit_s: float | None = None
    evaluate_s: float | None = None


class RunRecord(Record):
    """``metrics.json``: a completed run's aggregates (see ``docs/run-folder.md``).

    ``validation`` and ``replicates`` are absent from the file when the run has none; ``scored_pairs`` and
    ``cached_pairs`` count reranker scores computed and found in the score cache (``null`` without a cache).
    """

    dataset: DatasetInfo
    finetune_set: FinetuneSetInfo
    finetune_id: str | None
    fit: Fit | None
    metrics: Summary
    validation: ChosenScores | None = None
    replicates: Replicates | None = None
    scored_pairs: int | None
    cached_pairs: int | None
    timings: Timings

    def reranked(self, metric: str) -> float:
        """The reranker's eval mean of ``metric`` (``mrr@1``)."""
        return self.metrics.reranker[metric].mean

    def validation_score(self, metric: str) -> float | None:
        """The chosen setting's validation mean of ``metric``, when the run chose on validation and scored it; with
        replicates, its mean over the seeds (one seed's 100-odd validation queries move by a few of them)."""
        if self.validation is None or metric not in self.validation.reranker:
            return None
        over_seeds = self.replicates.validation if self.replicates is not None else None
        if over_seeds and metric in over_seeds:
            return over_seeds[metric].mean
        return self.validation.reranker[metric].mean

    def to_json(self) -> str:
        """The file's text: only the keys the record was built or read with, in the documented order."""
        return json.dumps(self.model_dump(exclude_unset=True), indent=2) + "\n"


class QueryRecord(Record):
    """One ``per_query.jsonl`` row: an eval example, both top-5 rankings with scores, and their metrics."""

    query: str
    expected: list[str]
    baseline_top: list[str]
    baseline_scores: list[float]
    reranked_top: list[str]
    reranked_scores: list[float]
    baseline: dict[str, float]
    reranker: dict[str, float]
    rerank_ms: float | None


class RunConfig(Record):
    """``config.json``: the run's resolved config, secret values redacted (``values``, the whole file). What code
    reads from it is a method here, so no reader walks the file by its keys."""

    values: dict[str, Any]

    def _block(self, name: str) -> dict[str, Any] | None:
        block = self.values.get(name)
        return block if isinstance(block, dict) else None

    @property
    def dataset(self) -> dict[str, Any] | None:
        """The ``dataset`` node (None when the file has none)."""
        return self._block("dataset")

    @property
    def models_dir(self) -> str | None:
        """``paths.models_dir``: where the run's trained models are stored."""
        paths = self._block("paths") or {}
        value = paths.get("models_dir")
        return None if value is None else str(value)

    @property
    def k(self) -> Any:
        """The ``k`` knob as written (negatives per fine-tuning item), or None."""
        return self.values.get("k")

    @property
    def seed(self) -> Any:
        """The ``seed`` knob as written, or None."""
        return self.values.get("seed")

    def evaluates_validation(self) -> bool:
        """Whether the eval split was a validation split carved from train (``dataset.evaluate_on=validation``),
        never the test split."""
        return (self.dataset or {}).get("evaluate_on") == "validation"

    def tracker(self, key: str) -> Any:
        """The ``trackers.<key>`` node.

        Raises:
            KeyError, TypeError: the file has no such tracker.
        """
        return self.values["trackers"][key]
