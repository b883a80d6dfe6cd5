"""The retriever contract: index the categories once, then return each query's top candidates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from experiments.records import Candidates, Category


class Retriever(Protocol):
    """The first stage: vector search over the category documents.

    ``build`` must be called before ``search``. ``search`` returns at most ``top_k`` candidates, best first; the
    second stage (a reranker) rescores exactly those. When the candidates would be every document (``top_k: all``,
    ``top_k`` at least the number of documents, or a document set no larger than the retriever's threshold),
    ``limit`` is None after ``build``: there is no first stage, the reranker scores every document in catalogue
    order, and ``search`` returns every document (the embedding baseline's full ranking).
    """

    @property
    def limit(self) -> int | None:
        """Candidates the reranker rescores per query after ``build``; None = every document (no first stage)."""
        ...

    #: Typical train inputs to append to each category's document (``retrieval.prototypes``); 0 = none.
    prototypes: int

    def documents(self, categories: Sequence[Category]) -> list[str]:
        """The text each category is embedded and reranked as (aligned with ``categories``), before prototypes."""
        ...

    def build(
        self,
        categories: Sequence[Category],
        vectors: np.ndarray,
        model_key: str,
        documents: Sequence[str] | None = None,
    ) -> None:
        """Index ``categories`` with the embeddings of ``documents`` (default: ``documents(categories)``);
        ``model_key`` names the embedding model."""
        ...

    def search(self, vector: np.ndarray) -> Candidates:
        """The top candidates for one L2-normalised query vector, by descending cosine similarity."""
        ...

    def catalogue(self) -> tuple[list[str], list[str]]:
        """Every category's label and document text, in the order ``build`` was given them."""
        ...
