"""The pass-through reranker: ``reranker=none`` keeps the embedding ranking."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.models import Portable, portable
from experiments.rerankers.base import Reranker


class NoReranker(Reranker):
    """Keep the candidates in the order they arrive (the vector-search order).

    ``score`` returns ``0, -1, -2, ...``: strictly descending, so sorting by score reproduces the given order.
    """

    reorders = False

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        return [-float(index) for index in range(len(documents))]

    def portable(self) -> Portable:
        return portable(self)
