"""The served categoriser remembers each query text's ranking: a repeat costs no model pass and ranks the same."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.records import Category
from experiments.serving.categoriser import Categoriser, RankingMemo

LABELS = ["Travel", "Meals", "Software", "Hardware"]


class CountingReranker:
    """Scores a document by how many of its characters occur in the query; counts the texts it is asked."""

    reorders = True

    def __init__(self) -> None:
        self.asked: list[str] = []

    def score_many(self, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[list[float]]:
        self.asked.extend(queries)
        return [
            [float(sum(ch in query for ch in doc)) + len(doc) / 100 for doc in docs]
            for query, docs in zip(queries, documents, strict=True)
        ]


class NoEmbedder:
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("no first stage: the embedder is never called")


def categoriser() -> Categoriser:
    return Categoriser(
        categories=[Category(name=label, description=label) for label in LABELS],
        documents=[label.lower() for label in LABELS],
        vectors=np.eye(len(LABELS), dtype=np.float32),
        top_k=None,
        embedder=NoEmbedder(),  # type: ignore[arg-type]
        reranker=CountingReranker(),  # type: ignore[arg-type]
    )


def test_a_repeated_text_is_ranked_once_and_recalled_exactly():
    model = categoriser()
    first = model.rank(["lunch at a cafe", "a laptop", "lunch at a cafe"], top_n=4)
    assert model.reranker.asked == ["lunch at a cafe", "a laptop"]  # type: ignore[attr-defined]
    assert first[0] == first[2]
    again = model.rank(["a laptop", "lunch at a cafe"], top_n=2)
    assert model.reranker.asked == ["lunch at a cafe", "a laptop"]  # type: ignore[attr-defined]
    assert again == [
        type(first[1])(labels=first[1].labels[:2], scores=first[1].scores[:2]),
        type(first[0])(labels=first[0].labels[:2], scores=first[0].scores[:2]),
    ]
    fresh = categoriser().rank(["a laptop"], top_n=2)
    assert fresh == again[:1]


def test_the_memo_forgets_the_least_recently_used_first():
    memo = RankingMemo(LABELS, capacity=2)
    model = categoriser()
    model.memo = memo
    model.rank(["a"], 1), model.rank(["b"], 1), model.rank(["a"], 1), model.rank(["c"], 1)
    assert len(memo) == 2 and memo.get("b", 1) is None and memo.get("a", 1) is not None
    with pytest.raises(ValueError, match="top_n=0"):
        model.rank(["a"], 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=40), st.integers(1, 6))
def test_remembered_rankings_equal_computed_ones(texts, top_n):
    remembered, plain = categoriser(), categoriser()
    plain.memo = RankingMemo(LABELS, capacity=1)
    remembered.rank(texts, top_n)  # everything now remembered
    assert remembered.rank(texts, top_n) == [plain.rank([text], top_n)[0] for text in texts]
