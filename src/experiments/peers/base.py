"""The peer contract: a method a user would pick instead of this project's recipe, learnt from train, ranking
the same category documents for the same eval queries.

A peer is a ``Reranker`` over every category document, so the project's own evaluation loop
(``evaluation.evaluate.run_queries``) scores it exactly as it scores the project's rerankers. ``learn`` sees the
train split only (``TrainingData``); nothing a peer does reads the eval split, which only reports.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.models import loading, resolve_model
from experiments.records import Example, FinetuneSet
from experiments.rerankers.base import Reranker

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: A value a peer reports about its settings or its fit (tracked as a param, kept in ``metrics.json``).
Setting = float | int | str


@dataclass(frozen=True)
class TrainingData:
    """What a peer learns from: the train split and the category documents, never an eval example.

    Attributes:
        examples: the labelled train examples; a peer that needs one class per example takes ``expected[0]``.
        labels: the category names, aligned with ``documents``.
        documents: the text each category is ranked as (the project's rule: ``retrieval.documents``, with
            ``retrieval.prototypes`` when set).
        vectors: the frozen embedder's unit vectors of ``examples`` (rows aligned with them).
        document_vectors: the frozen embedder's unit vectors of ``documents``.
        encode: the frozen embedder (cached on disk by model and text): texts → unit vectors.
        seed: the run's seed.
    """

    examples: list[Example]
    labels: list[str]
    documents: list[str]
    vectors: np.ndarray
    document_vectors: np.ndarray
    encode: Callable[[Sequence[str]], np.ndarray]
    seed: int

    def classes(self) -> list[str]:
        """Each example's class: its first expected label."""
        return [example.expected[0] for example in self.examples]


@dataclass(frozen=True)
class PeerFit:
    """What ``learn`` did.

    Attributes:
        seconds: wall time of learning, from the train rows' frozen embeddings to a model ready to score (mining,
            pair generation and training included; loading the base model and embedding train with the frozen
            embedder, which every method shares and the project caches, excluded).
        pairs: training pairs seen per epoch ((query, document) or (sentence, sentence) pairs; rows for a head).
        details: what else the record keeps (loss, steps, the pair rule...).
        loss_history: ``(step, training loss)`` when a model was trained.
        finetune_set: the (query, positive, negatives) items trained on, when the peer builds such a set.
    """

    seconds: float
    pairs: int
    details: dict[str, Setting] = field(default_factory=dict)
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    finetune_set: FinetuneSet = field(default_factory=lambda: FinetuneSet(items=[]))


class Peer(Reranker):
    """A peer: ``learn`` on ``TrainingData``, then ``score`` any of its category documents for a query.

    Subclasses write ``_learn``, ``settings`` and ``_score_matrix`` (queries × categories, in ``labels`` order);
    the base class batches every query of the evaluation in ``prepare`` and answers ``score`` from it.
    """

    def __init__(self) -> None:
        self._data: TrainingData | None = None
        self._column: dict[str, int] = {}
        self._prepared: dict[str, np.ndarray] = {}

    @abstractmethod
    def _learn(self, data: TrainingData) -> PeerFit | None:
        """Learn from the train split; None: nothing to learn."""

    @abstractmethod
    def settings(self) -> dict[str, Setting]:
        """What determines this peer's model besides the data and the seed (tracked as ``peer.<name>`` params)."""

    @abstractmethod
    def _score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(queries × categories)`` scores, columns in ``TrainingData.labels`` order, higher is better."""

    def learn(self, data: TrainingData) -> PeerFit | None:
        """Learn from the train split; ``score`` then ranks ``data.documents``."""
        self._data = data
        self._column = {document: column for column, document in enumerate(data.documents)}
        self._prepared = {}
        return self._learn(data)

    @property
    def data(self) -> TrainingData:
        if self._data is None:
            raise RuntimeError(f"{self.name}: learn before scoring")
        return self._data

    def prepare(self, work: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Score every query of the evaluation in one batched pass."""
        queries = list(dict.fromkeys(query for query, _ in work))
        if queries:
            self._prepared = dict(zip(queries, self._score_matrix(queries), strict=True))

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        row = self._prepared.get(query)
        if row is None:
            row = self._score_matrix([query])[0]
        return [float(row[self._column[document]]) for document in documents]


def ranked_by_classifier(
    probabilities: np.ndarray, classes: Sequence[str], labels: Sequence[str], similarity: np.ndarray
) -> np.ndarray:
    """``(queries × labels)`` scores of a classifier: a label's probability when the classifier knows it (it had
    train examples), else its ``similarity`` minus 2, so that labels absent from train rank after every known one,
    among themselves by similarity (cosine similarities lie in [-1, 1], probabilities in [0, 1])."""
    scores = np.asarray(similarity, dtype=np.float64) - 2.0
    column = {label: position for position, label in enumerate(labels)}
    for position, label in enumerate(classes):
        scores[:, column[str(label)]] = probabilities[:, position]
    return scores


def load_body(model: str, device: str) -> SentenceTransformer:
    """The sentence-transformers model ``model`` names (a packaged model, a local folder or a cached hub id), at its
    own settings, on ``device``; nothing is downloaded."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(model)
    with loading(path):
        return SentenceTransformer(path, device=device, local_files_only=True)


def quiet_trainer(trainer: Any, progress: bool) -> None:
    """A transformers trainer that prints no log lines, and no progress bar unless ``progress``."""
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(ProgressCallback)


@contextlib.contextmanager
def silenced(active: bool) -> Iterator[None]:
    """Progress bars a library draws regardless of its arguments (``mine_hard_negatives``' encoding bars) and the
    DataLoader's pin-memory notice on a CPU, kept off the console while ``active``."""
    if not active:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        yield
