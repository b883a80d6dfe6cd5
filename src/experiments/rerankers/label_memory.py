"""Label memory: rank categories by a similarity-weighted vote of the nearest labelled train queries.

``reranker=label_memory``. Card transactions repeat themselves: a new transaction usually looks like ones
already booked, and their categories are a strong hint even when the category *name* says little (a restaurant
is Team Meals on one card and Client Entertainment on another). ``fit`` embeds every labelled train example
(``FitContext.examples``); ``score`` embeds the query, takes its ``neighbours`` nearest train examples and gives
each candidate document the share of their similarity that votes for its label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.errors import ConfigError
from experiments.models import PACKAGED_MINILM, Portable, cache_identity, portable
from experiments.records import FinetuneSet, sha256_json
from experiments.rerankers.base import FitContext, FitResult, Reranker
from experiments.store import read_marker

if TYPE_CHECKING:
    from experiments.embedders.sentence_transformer import SentenceTransformerEmbedder

#: A model reference of this shape names a model in the store (``paths.models_dir``) by its fine-tune id.
FINETUNE_ID_PREFIX = "ft-"


def stored_model(reference: str, models_dir: Path) -> str:
    """The folder of a fine-tune id in the model store, or ``reference`` unchanged when it is not an id."""
    if not reference.startswith(FINETUNE_ID_PREFIX):
        return reference
    folder = Path(models_dir) / reference
    if read_marker(folder) is None:
        raise ConfigError(
            f"label memory: no stored model {reference!r} in {models_dir}; run the fine-tune first "
            "(its id is printed and in metrics.json) or point reranker.model at a model folder."
        )
    return str(folder)


class LabelMemory(Reranker):
    """Scores each candidate by the labelled train queries nearest to the query.

    Data contract: after ``fit`` (or ``remember``), ``score(query, documents)`` returns, for each document, the
    sum of the (positive) cosine similarities of the ``neighbours`` nearest remembered examples whose label's
    document is that document, divided by the sum over all ``neighbours``: values in [0, 1] that sum to at most
    1 over the candidates. A document no neighbour votes for scores 0 (the rescoring keeps retrieval order
    among those). It works for any new query, so suggestions for new transactions get the same treatment.

    Args:
        model: the embedder: a model reference (``packaged:all-MiniLM-L6-v2``, a folder) or the fine-tune id of
            a stored bi-encoder (``ft-…``, looked up in ``paths.models_dir``).
        neighbours: how many nearest train examples vote.
        batch_size: texts per forward pass when embedding the train examples.
        device: ``auto``, ``cpu`` or ``cuda``.
        cache_dir: embedding cache folder (shared with the run's embedder); None disables it.
        memory: a remembered memory to start from, ``{"texts": [...], "documents": [...]}`` (the labelled
            queries and each one's label document, as ``portable`` ships them in a served model); None until
            ``fit``.
    """

    def __init__(
        self,
        model: str | None = PACKAGED_MINILM,
        neighbours: int = 5,
        batch_size: int = 64,
        device: str = "auto",
        cache_dir: str | None = None,
        memory: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
            raise ConfigError(f"LabelMemory: neighbours={neighbours!r} must be an integer >= 1.")
        self.model = model
        self.neighbours = neighbours
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.memory = memory
        self._embedder: SentenceTransformerEmbedder | None = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._texts: list[str] = []
        self._documents: list[str] = []
        if memory is not None:
            if model is None:
                raise ConfigError("LabelMemory: a shipped memory needs the model that embedded it.")
            self._load_memory(model, list(memory["texts"]), list(memory["documents"]))

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult | None:
        """Remember ``context.examples`` with ``model`` (a fine-tune id is looked up in ``cache_dir``)."""
        if self.model is None:
            raise ConfigError("LabelMemory: model=null only works inside reranker=fused; name a model or fine-tune id.")
        if context is None:
            raise ConfigError("LabelMemory: fit needs the labelled train examples (a FitContext).")
        self.remember(context, stored_model(self.model, cache_dir))
        return None

    def remember(self, context: FitContext, model: str) -> None:
        """Embed ``context.examples`` with ``model`` and keep each one's label document (first label)."""
        missing = sorted({e.expected[0] for e in context.examples} - set(context.documents))
        if missing:
            raise ConfigError(f"LabelMemory: train labels without a category document: {missing[:5]}")
        texts = [example.input for example in context.examples]
        self._load_memory(model, texts, [context.documents[example.expected[0]] for example in context.examples])

    def _load_memory(self, model: str, texts: list[str], documents: list[str]) -> None:
        from experiments.embedders.sentence_transformer import SentenceTransformerEmbedder

        if len(texts) != len(documents):
            raise ConfigError(f"LabelMemory: {len(texts)} remembered texts but {len(documents)} label documents.")
        self._embedder = SentenceTransformerEmbedder(
            model, batch_size=self.batch_size, device=self.device, cache_dir=self.cache_dir, progress=False
        )
        self._vectors = self._embedder.encode(texts)
        self._texts, self._documents = texts, documents

    def portable(self) -> Portable | None:
        """The fitted memory: its model (a local folder is shipped) and the remembered texts and label documents,
        embedded again when the served model loads. None before ``fit``."""
        if self._embedder is None:
            return None
        memory = {"texts": self._texts, "documents": self._documents}
        return portable(self, "model", model=self._embedder.model, memory=memory, cache_dir=None)

    def memory_key(self) -> str:
        """A hash of what the scores depend on once fitted: the embedder's weights, the memory, ``neighbours``."""
        if self._embedder is None:
            raise ConfigError("LabelMemory: score before fit; the memory is empty.")
        digest = hashlib.sha256(np.ascontiguousarray(self._vectors).tobytes()).hexdigest()
        return sha256_json([cache_identity(self._embedder.identity()), self._documents, digest, self.neighbours])

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        if self._embedder is None:
            raise ConfigError("LabelMemory: score before fit; the memory is empty.")
        return self._embedder.encode(list(queries))

    def votes(self, query_vector: np.ndarray, documents: Sequence[str]) -> list[float]:
        """The vote share of each document (aligned with ``documents``) from the query's nearest examples."""
        similarity = self._vectors @ query_vector
        nearest = np.argsort(-similarity, kind="stable")[: self.neighbours]
        weights = np.clip(similarity[nearest], 0.0, None)
        total = float(weights.sum()) or 1.0
        share: dict[str, float] = {}
        for position, weight in zip(nearest, weights, strict=True):
            document = self._documents[int(position)]
            share[document] = share.get(document, 0.0) + float(weight) / total
        return [share.get(document, 0.0) for document in documents]

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Vote share of each document (see the class contract), aligned with ``documents``."""
        return self.votes(self.query_vectors([query])[0], documents)
