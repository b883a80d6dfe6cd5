"""The served categoriser: rank the categories for query texts, exactly as the run's evaluation did.

Stage 1 embeds the queries (in batches) and keeps each one's ``top_k`` categories by cosine similarity, computed
with numpy over the package's category vectors: the same candidates, in the same order, as the run's LanceDB
search of those vectors. Stage 2 rescores every query's candidates with the run's reranker in batched model
calls and sorts them by score, ties keeping retrieval order (``Candidates.reordered``), as the evaluation does.

Without a first stage (``top_k`` None: the run's candidates were every category) a reranker that reorders scores
every category in catalogue order and the queries are never embedded by the embedder: one model pass per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.embedders.base import Embedder
from experiments.records import Candidates, Category, RankedList, ranked_by
from experiments.rerankers.base import Reranker
from experiments.serving.package import VECTORS_FILE, read_spec, rebuild

DEFAULT_TOP_N = 5
WARM_UP_QUERY = "warm-up"


class Categoriser:
    """Ranks categories for query texts with a run's embedder, category vectors, ``top_k`` and reranker.

    Args:
        categories: the candidate categories, aligned with ``documents`` and ``vectors``.
        documents: each category's text as the reranker reads it.
        vectors: ``(len(categories), dim)`` unit-length embeddings of ``documents``.
        top_k: candidates kept by vector search for the reranker; None = every category (no first stage).
        embedder: embeds queries into the space of ``vectors``.
        reranker: a ready reranker (trained rerankers are rebuilt from their fine-tuned folder).
    """

    def __init__(
        self,
        categories: Sequence[Category],
        documents: Sequence[str],
        vectors: np.ndarray,
        top_k: int | None,
        embedder: Embedder,
        reranker: Reranker,
    ) -> None:
        if not len(categories) == len(documents) == len(vectors):
            raise ValueError("Categoriser: categories, documents and vectors must be aligned")
        self.categories = list(categories)
        self.documents = list(documents)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.top_k = len(self.categories) if top_k is None else min(top_k, len(self.categories))
        #: No first stage: the reranker scores every category.
        self.every_category = top_k is None
        self.embedder = embedder
        self.reranker = reranker

    @classmethod
    def load(cls, folder: Path) -> Categoriser:
        """Rebuild the categoriser from a package folder (``experiments.serving.package``), models loaded."""
        spec = read_spec(folder)
        categoriser = cls(
            categories=[Category(**row) for row in spec["categories"]],
            documents=spec["documents"],
            vectors=np.load(folder / VECTORS_FILE),
            top_k=None if spec["top_k"] is None else int(spec["top_k"]),
            embedder=rebuild(spec["embedder"], folder),
            reranker=rebuild(spec["reranker"], folder),
        )
        categoriser.rank([WARM_UP_QUERY], top_n=1)  # load both models now, not in the first request
        return categoriser

    @property
    def labels(self) -> list[str]:
        return [category.name for category in self.categories]

    def candidates(self, query_vectors: np.ndarray) -> list[Candidates]:
        """Each query's ``top_k`` categories by descending cosine similarity (ties: category order)."""
        similarity = np.asarray(query_vectors, dtype=np.float32) @ self.vectors.T
        order = np.argsort(-similarity, axis=1, kind="stable")[:, : self.top_k]
        labels, documents = self.labels, self.documents
        return [
            Candidates(
                labels=[labels[i] for i in row],
                texts=[documents[i] for i in row],
                scores=[float(s) for s in scores[row]],
            )
            for row, scores in zip(order, similarity, strict=True)
        ]

    def rank(self, queries: Sequence[str], top_n: int = DEFAULT_TOP_N) -> list[RankedList]:
        """The ``top_n`` best categories for each query (at most ``top_k``), best first, with their scores.

        Scores are the reranker's (cosine similarities for ``reranker=none``), as in ``per_query.jsonl``.
        """
        if top_n < 1:
            raise ValueError(f"top_n={top_n} must be at least 1")
        if not queries:
            return []
        if self.every_category and self.reranker.reorders:
            texts = list(queries)
            scores = self.reranker.score_many(texts, [self.documents] * len(texts))
            ranked = [ranked_by(self.labels, row) for row in scores]
            return [RankedList(labels=r.labels[:top_n], scores=r.scores[:top_n]) for r in ranked]
        candidates = self.candidates(self.embedder.encode(list(queries)))
        if self.reranker.reorders:
            scores = self.reranker.score_many(list(queries), [c.texts for c in candidates])
            ranked = [c.reordered(s) for c, s in zip(candidates, scores, strict=True)]
        else:
            ranked = [c.ranked() for c in candidates]
        return [RankedList(labels=r.labels[:top_n], scores=r.scores[:top_n]) for r in ranked]
