"""The reranker contract: optionally learn from the fine-tuning set, then score (query, document) pairs.

A reranker rescoring the vector-search candidates is the second stage of retrieval. The pipeline calls
``fit`` once (trained rerankers train there, or reuse a model trained on the same inputs before) and then
``score`` for every eval query's candidates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

from experiments.models import Portable, portable
from experiments.records import Example, FinetuneSet, sha256_json
from experiments.records.run import Selection

ModelT = TypeVar("ModelT")


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` did.

    Attributes:
        finetune_id: content hash of the fine-tuning set, base model and training arguments; the trained model
            is stored under this id, and the same inputs give the same id.
        model_path: where the trained model lives.
        reused: True when a model with this id already existed and no training ran.
        train_seconds: wall time of training (0 when reused).
        train_pairs: number of (query, passage) pairs or training rows seen per epoch.
        extra: anything else worth logging (final loss, steps, epochs, ...).
        loss_history: ``(step, training loss)`` as logged during training, for a loss curve.
        selection: what was chosen on the validation split and the curve it was chosen from (no field set when
            the reranker chose nothing), e.g. ``Selection(epochs=2, curve=[...])``.
    """

    finetune_id: str
    model_path: Path
    reused: bool
    train_seconds: float = 0.0
    train_pairs: int = 0
    extra: dict[str, float | int | str] = field(default_factory=dict)
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    selection: Selection = field(default_factory=Selection)


@dataclass(frozen=True)
class Holdout:
    """A holdout carved from the train split (whole groups), for the choices a reranker makes.

    Attributes:
        fit_examples: the train examples outside the holdout.
        fit_set: the fine-tuning set mined from ``fit_examples`` only (same miner, knobs and seed as the run's).
        examples: the held-out validation queries; choices are scored on these. Never eval examples.
        documents: category label → document text for the fit on ``fit_examples``, when the documents are built
            from train rows (``retrieval.prototypes``): then from ``fit_examples`` alone. None: the run's.
    """

    fit_examples: list[Example]
    fit_set: FinetuneSet
    examples: list[Example]
    documents: dict[str, str] | None = None


#: Which fine-tune a training loss comes from: the fit that chooses a setting on validation, or the run's own.
FitStage = Literal["selection", "final"]


class FitProgress(Protocol):
    """Where a fit reports as it goes (the pipeline passes the run's live log). Best-effort and never blocking:
    a call returns at once whatever the receiver does with it."""

    def training_loss(self, step: int, loss: float, stage: FitStage) -> None:
        """The training loss the trainer logged at optimiser step ``step`` of the ``stage`` fine-tune."""
        ...

    def validation(self, step: int, scores: Mapping[str, float]) -> None:
        """Validation scores (``{"mrr@1": 0.61, ...}``) of the setting tried ``step``-th (the epochs so far)."""
        ...


@dataclass(frozen=True)
class FitContext:
    """What a reranker may learn from besides the fine-tuning set. Everything in it comes from the train split.

    Attributes:
        examples: every labelled train example (the fine-tuning set was mined from these).
        documents: category label → the document text the reranker is asked to score for it.
        validation: the holdout for choices; None when the run has no validation split.
        progress: where the fit reports its training loss and validation scores as they happen; None: nowhere.
    """

    examples: list[Example]
    documents: dict[str, str]
    validation: Holdout | None = None
    progress: FitProgress | None = None

    def for_selection(self) -> FitContext:
        """The context of a fit on ``validation.fit_examples`` alone (no nested holdout)."""
        if self.validation is None:
            raise ValueError("no validation split to select on")
        return FitContext(examples=self.validation.fit_examples, documents=self.selection_documents())

    def selection_documents(self) -> dict[str, str]:
        """The documents a choice on validation scores against: the validation fit's own, else the run's."""
        if self.validation is not None and self.validation.documents is not None:
            return self.validation.documents
        return self.documents


def make_finetune_id(finetune_set: FinetuneSet, base_model: dict[str, object], train_args: dict[str, object]) -> str:
    """``ft-`` + the first 16 hex digits of the hash of everything that determines the trained model."""
    digest = sha256_json({"finetune_set": finetune_set.digest(), "base_model": base_model, "train_args": train_args})
    return f"ft-{digest[:16]}"


class Reranker(ABC):
    """Base class of every reranker. ``score`` must be deterministic for a given model and input."""

    #: False only for the pass-through reranker: the pipeline then reports the embedding ranking as is.
    reorders: bool = True
    #: True for rerankers whose scores are paid for (a remote API): the score cache writes them at once, so a
    #: crash mid-evaluation never pays for the same call twice.
    paid: bool = False
    #: How many pairs the last ``score`` call took from a cache instead of the model (``CachedScores``): a timing
    #: of that call measured a look-up, so the evaluation leaves it out of the rerank latency.
    last_cached: int = 0

    @property
    def name(self) -> str:
        return type(self).__name__

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult | None:
        """Train on ``finetune_set`` (or reuse the model stored under its fine-tune id in ``cache_dir``).

        ``context`` carries the labelled train examples and the validation holdout; rerankers that choose a
        setting (epochs, a weight) choose it there and then fit on all of train. Returns ``None`` for rerankers
        that do not train.
        """
        return None

    def chooses_on_validation(self) -> bool:
        """Whether ``fit`` chooses a setting on ``FitContext.validation``; only then does the pipeline carve and
        mine the validation fit's set (a second-round miner trains a teacher for it)."""
        return False

    def score_key(self) -> str | None:
        """What this reranker's scores depend on once ready (after ``fit``), for caching them; None = never cache.

        Trained rerankers are keyed by their fine-tune id instead (the pipeline uses ``FitResult.finetune_id``).
        """
        return None

    def prepare(self, work: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Called once, before any ``score``, with every ``(query, documents)`` the run will score.

        Rerankers that pay per request count (and cap) their requests here; the others ignore it.
        """
        return None

    @abstractmethod
    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Relevance of each document to the query (higher is better), aligned with ``documents``."""

    def score_many(self, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[list[float]]:
        """``score`` for many queries at once, each with its own documents; model rerankers batch the calls.

        Returns the same scores as ``score`` query by query, up to float rounding of batched model calls.
        """
        return [self.score(query, docs) for query, docs in zip(queries, documents, strict=True)]

    def portable(self) -> Portable | None:
        """How to rebuild this reranker, ready to score, inside a served model; None when it cannot be shipped."""
        return None


class ModelReranker(Reranker, Generic[ModelT]):
    """A reranker that scores with a model loaded from a folder on first use (eval mode)."""

    _model: ModelT | None = None
    #: The constructor argument that names the model.
    model_arg: str = "model"

    def _model_ref(self) -> str:
        """The model reference to rebuild this reranker with (``model_arg``'s value, or a trained folder)."""
        return str(getattr(self, self.model_arg))

    def portable(self) -> Portable:
        """The same class scoring with the same model; a model folder on this machine is shipped with it."""
        return portable(self, self.model_arg, **{self.model_arg: self._model_ref(), "progress": False})

    @abstractmethod
    def _model_source(self) -> str:
        """The folder (or cached hub id) to score with now."""

    @abstractmethod
    def _load(self, path: str) -> ModelT:
        """Load the model at ``path`` on the configured device, in eval mode."""

    def _forget_model(self) -> None:
        """Drop the loaded model (and anything computed with it); the next score loads ``_model_source()``."""
        self._model = None

    def unload(self) -> None:
        """Free the loaded model's memory; the next score loads the same model again."""
        self._forget_model()

    def _loaded(self) -> ModelT:
        if self._model is None:
            self._model = self._load(self._model_source())
        return self._model
