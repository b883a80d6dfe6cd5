"""``peers=[embedding_baseline]``: the frozen embedder's cosine similarity between query and category document.

The ranking every project run reports as its baseline (the retriever's own search over the category documents,
``evaluation.evaluate.run_queries`` without a reranker), as a peer of its own: nothing is learnt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments.peers.base import Peer, PeerFit, Setting, TrainingData


class EmbeddingBaseline(Peer):
    """No learning: the evaluation reports the retriever's cosine ranking as is (``reorders`` is False)."""

    reorders = False

    def settings(self) -> dict[str, Setting]:
        return {}

    def _learn(self, data: TrainingData) -> PeerFit | None:
        return None

    def _score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        return self.data.encode(queries) @ self.data.document_vectors.T
