"""Reranker scores cached on disk by (model key, query, document), so a warm rerun does not score again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.cache import VectorCache, content_key
from experiments.rerankers.base import Reranker


class CachedScores(Reranker):
    """Wraps a ready reranker (fitted, or one that does not train).

    Args:
        inner: the reranker that computes scores on a miss.
        model_key: what the scores depend on — the fine-tune id of a trained model, or a stock model's identity.
        cache_dir: folder of the score cache (shared across runs; SQLite, safe for parallel jobs).

    ``hits`` and ``misses`` count the pairs served from disk and computed, for the run's record (latencies
    measured on a warm run are cache look-ups, not model time). New scores are kept in memory and written in one
    transaction by ``flush`` (the evaluation calls it after the last query), so the timed rescoring of a query
    never waits for a disk commit.
    """

    def __init__(self, inner: Reranker, model_key: str, cache_dir: Path) -> None:
        self.inner = inner
        self.model_key = model_key
        self._cache = VectorCache(cache_dir, "scores")
        self.hits = 0
        self.misses = 0
        self._pending: dict[str, np.ndarray] = {}
        # What prepare() read from disk, by query: the keys it looked up and the scores it found. score() then
        # answers those keys from memory, so a query's timed rescoring holds no SQLite look-up.
        self._looked_up: dict[str, tuple[set[str], dict[str, np.ndarray]]] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    def prepare(self, work: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Read the cache once for the whole workload, and tell the inner reranker only about the pairs it does not
        hold (those it will be asked for)."""
        keyed = [(query, documents, [self._key(query, d) for d in documents]) for query, documents in work]
        found = self._cache.get([key for _, _, keys in keyed for key in keys])
        missing: list[tuple[str, Sequence[str]]] = []
        for query, documents, keys in keyed:
            seen, scores = self._looked_up.setdefault(query, (set(), {}))
            seen.update(keys)
            scores.update({key: found[key] for key in keys if key in found})
            fresh = [d for d, key in zip(documents, keys, strict=True) if key not in found]
            if fresh:
                missing.append((query, fresh))
        self.inner.prepare(missing)

    def _key(self, query: str, document: str) -> str:
        return content_key(self.model_key, query, document)

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        keys = [self._key(query, document) for document in documents]
        seen, prepared = self._looked_up.get(query, (set(), {}))
        found = {key: prepared[key] for key in keys if key in prepared}
        unseen = [key for key in keys if key not in seen and key not in self._pending]
        if unseen:  # not announced by prepare(): look on disk
            found.update(self._cache.get(unseen))
        found.update({key: self._pending[key] for key in keys if key in self._pending})
        missing = [position for position, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self.inner.score(query, [documents[position] for position in missing])
            computed = {keys[p]: np.array([s], dtype=np.float32) for p, s in zip(missing, fresh, strict=True)}
            self._pending.update(computed)
            found.update(computed)
            if query in self._looked_up:  # a repeat of the query is answered from memory, after a flush too
                self._looked_up[query][1].update(computed)
            if self.inner.paid:
                self.flush()
        self.last_cached = len(keys) - len(missing)
        self.hits += self.last_cached
        self.misses += len(missing)
        return [float(found[key][0]) for key in keys]

    def flush(self) -> None:
        """Write the scores computed since the last flush to disk, in one transaction."""
        if self._pending:
            self._cache.put(self._pending)
            self._pending = {}
