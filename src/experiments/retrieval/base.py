"""The retriever contract: index the categories once, then return each query's top candidates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from experiments.records import Candidates, Category


class Retriever(Protocol):
    """The first stage: vector search over the category documents.

    ``build`` must be called before ``search``. ``search`` returns at most ``top_k`` candidates, best first; the
    second stage (a reranker) rescores exactly those.
    """

    top_k: int

    def documents(self, categories: Sequence[Category]) -> list[str]:
        """The text each category is embedded and reranked as (aligned with ``categories``)."""
        ...

    def build(self, categories: Sequence[Category], vectors: np.ndarray, model_key: str) -> None:
        """Index ``categories`` with their embeddings; ``model_key`` names the embedding model."""
        ...

    def search(self, vector: np.ndarray) -> Candidates:
        """The top candidates for one L2-normalised query vector, by descending cosine similarity."""
        ...
