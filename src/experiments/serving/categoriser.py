"""The served categoriser: rank the categories for query texts, exactly as the run's evaluation did.

Stage 1 embeds the queries (in batches) and keeps each one's ``top_k`` categories by cosine similarity, computed
with numpy over the package's category vectors: the same candidates, in the same order, as the run's LanceDB
search of those vectors. Stage 2 rescores every query's candidates with the run's reranker in batched model
calls and sorts them by score, ties keeping retrieval order (``Candidates.reordered``), as the evaluation does.

Without a first stage (``top_k`` None: the run's candidates were every category) a reranker that reorders scores
every category in catalogue order and the queries are never embedded by the embedder: one model pass per query.

Card transactions repeat (subscriptions, the same merchant, amount and card every month), so the ranking of each
query text is remembered (``RankingMemo``, least recently used first out, about 32 MiB): a text seen before costs
no model pass, and gets the very ranking it got the first time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.datasets.transactions import check_query_fields
from experiments.embedders.base import Embedder
from experiments.records import Candidates, Category, RankedList, nearest, ranked_by
from experiments.rerankers.base import Reranker
from experiments.serving.package import SPEC_FILE, VECTORS_FILE, read_spec, rebuild

DEFAULT_TOP_N = 5
WARM_UP_QUERY = "warm-up"
#: Bytes the rankings remembered by text may take (the texts themselves and the arrays of label positions and scores).
MEMO_BYTES = 32 * 2**20


class RankingMemo:
    """The full ranking of recent query texts, as label positions and scores; least recently used first out.

    Args:
        labels: the labels a ranking's positions index.
        capacity: rankings kept.
    """

    def __init__(self, labels: Sequence[str], capacity: int) -> None:
        self.labels = list(labels)
        self.position = {label: index for index, label in enumerate(self.labels)}
        self.capacity = capacity
        self._rankings: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()  # a served model may be called from several threads

    @classmethod
    def sized(cls, labels: Sequence[str], length: int, budget: int = MEMO_BYTES) -> RankingMemo:
        """A memo of rankings ``length`` long that fits in about ``budget`` bytes (a query text is ~300 bytes)."""
        return cls(labels, capacity=max(1, budget // (12 * length + 600)))

    def get(self, text: str, top_n: int) -> RankedList | None:
        with self._lock:
            found = self._rankings.get(text)
            if found is None:
                return None
            self._rankings.move_to_end(text)
        positions, scores = found
        return RankedList(labels=[self.labels[p] for p in positions[:top_n]], scores=scores[:top_n].tolist())

    def put(self, text: str, ranking: RankedList) -> None:
        positions = np.array([self.position[label] for label in ranking.labels], dtype=np.int32)
        entry = (positions, np.array(ranking.scores, dtype=np.float64))  # float64: every score exactly as given
        with self._lock:
            self._rankings[text] = entry
            self._rankings.move_to_end(text)
            while len(self._rankings) > self.capacity:
                self._rankings.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rankings)


class Categoriser:
    """Ranks categories for query texts with a run's embedder, category vectors, ``top_k`` and reranker.

    Args:
        categories: the candidate categories, aligned with ``documents`` and ``vectors``.
        documents: each category's text as the reranker reads it.
        vectors: ``(len(categories), dim)`` unit-length embeddings of ``documents``.
        top_k: candidates kept by vector search for the reranker; None = every category (no first stage).
        embedder: embeds queries into the space of ``vectors``.
        reranker: a ready reranker (trained rerankers are rebuilt from their fine-tuned folder).
        query_fields: the query lines a transaction row is formatted with (the run's ``dataset.query_fields``);
            None = all seven.
    """

    def __init__(
        self,
        categories: Sequence[Category],
        documents: Sequence[str],
        vectors: np.ndarray,
        top_k: int | None,
        embedder: Embedder,
        reranker: Reranker,
        query_fields: Sequence[str] | None = None,
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
        #: The lines of a transaction's query text, in layout order.
        self.query_fields = check_query_fields(SPEC_FILE, query_fields)
        self.memo = RankingMemo.sized(self.labels, self.top_k)

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
            query_fields=spec.get("query_fields"),
        )
        categoriser.rank([WARM_UP_QUERY], top_n=1)  # load both models now, not in the first request
        return categoriser

    @property
    def labels(self) -> list[str]:
        return [category.name for category in self.categories]

    def candidates(self, query_vectors: np.ndarray) -> list[Candidates]:
        """Each query's ``top_k`` categories by descending cosine similarity (ties: category order)."""
        return nearest(query_vectors, self.vectors, self.labels, self.documents, self.top_k)

    def rank(self, queries: Sequence[str], top_n: int = DEFAULT_TOP_N) -> list[RankedList]:
        """The ``top_n`` best categories for each query (at most ``top_k``), best first, with their scores.

        Scores are the reranker's (cosine similarities for ``reranker=none``), as in ``per_query.jsonl``. Each
        distinct text not remembered is ranked once (repeats within the call included); the others are recalled.
        """
        if top_n < 1:
            raise ValueError(f"top_n={top_n} must be at least 1")
        found = {text: self.memo.get(text, top_n) for text in dict.fromkeys(queries)}
        fresh = [text for text, ranking in found.items() if ranking is None]
        for text, ranking in zip(fresh, self._rank(fresh), strict=True):
            self.memo.put(text, ranking)
            found[text] = RankedList(labels=ranking.labels[:top_n], scores=ranking.scores[:top_n])
        return [found[text] for text in queries]  # type: ignore[misc]  # every text is ranked by now

    def _rank(self, queries: Sequence[str]) -> list[RankedList]:
        """Each query's full ranking (``top_k`` long), computed by the models."""
        if not queries:
            return []
        if self.every_category and self.reranker.reorders:
            texts = list(queries)
            scores = self.reranker.score_many(texts, [self.documents] * len(texts))
            return [ranked_by(self.labels, row) for row in scores]
        candidates = self.candidates(self.embedder.encode(list(queries)))
        if self.reranker.reorders:
            scores = self.reranker.score_many(list(queries), [c.texts for c in candidates])
            ranked = [c.reordered(s) for c, s in zip(candidates, scores, strict=True)]
        else:
            ranked = [c.ranked() for c in candidates]
        return ranked
