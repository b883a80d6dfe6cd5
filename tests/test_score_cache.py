"""The score cache: a prepared workload is read from disk once, and a timed rescoring holds no disk look-up."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from experiments.cache import VectorCache
from experiments.rerankers.base import Reranker
from experiments.rerankers.cached import CachedScores

DOCUMENTS = ["Team Meals", "Airfare", "Lodging", "Software"]
QUERIES = ["Name: Blue Bottle\nDepartment: Engineering", "Name: Delta\nDepartment: Sales", "Name: Hilton"]


class Counting(Reranker):
    """Scores by text length and counts the pairs it was asked for."""

    reorders = True

    def __init__(self, paid: bool = False) -> None:
        self.pairs = 0
        self.paid = paid

    @property
    def name(self) -> str:
        return "counting"

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        self.pairs += len(documents)
        return [float(len(query) * 100 + len(document)) for document in documents]


@pytest.fixture
def disk_reads(monkeypatch) -> list[int]:
    """The number of keys each VectorCache.get looked up."""
    reads: list[int] = []
    real = VectorCache.get

    def counted(self, keys):
        reads.append(len(keys))
        return real(self, keys)

    monkeypatch.setattr(VectorCache, "get", counted)
    return reads


def test_a_prepared_workload_is_read_once_and_scored_from_memory(tmp_path, disk_reads) -> None:
    work = [(query, DOCUMENTS) for query in QUERIES]
    first = CachedScores(Counting(), "model-a", tmp_path)
    first.prepare(work)
    cold = [first.score(query, DOCUMENTS) for query in QUERIES]
    first.flush()
    assert disk_reads == [len(QUERIES) * len(DOCUMENTS)], "one read for the whole workload, none per query"
    assert first.inner.pairs == 12 and first.misses == 12

    disk_reads.clear()
    second = CachedScores(Counting(), "model-a", tmp_path)
    second.prepare(work)
    assert [second.score(query, DOCUMENTS) for query in QUERIES] == cold
    assert disk_reads == [12] and second.inner.pairs == 0 and second.hits == 12


def test_pairs_not_announced_are_still_looked_up(tmp_path, disk_reads) -> None:
    warm = CachedScores(Counting(), "model-a", tmp_path)
    warm.score(QUERIES[0], DOCUMENTS)
    warm.flush()
    other = CachedScores(Counting(), "model-a", tmp_path)
    other.prepare([(QUERIES[0], DOCUMENTS[:2])])
    assert other.score(QUERIES[0], DOCUMENTS) == warm.score(QUERIES[0], DOCUMENTS)
    assert other.inner.pairs == 0, "the two documents prepare() did not announce came from disk, not the model"


def test_a_paid_reranker_is_not_asked_twice_for_a_repeated_query(tmp_path) -> None:
    """A paid reranker flushes after every query; a repeat is answered from memory, not paid again."""
    paid = CachedScores(Counting(paid=True), "model-a", tmp_path)
    paid.prepare([(QUERIES[0], DOCUMENTS), (QUERIES[0], DOCUMENTS)])
    first = paid.score(QUERIES[0], DOCUMENTS)
    assert paid.score(QUERIES[0], DOCUMENTS) == first
    assert paid.inner.pairs == len(DOCUMENTS)
