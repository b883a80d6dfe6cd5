"""A stock (not fine-tuned) cross-encoder: ``reranker=cross_encoder``.

The cross-encoder reads the query and a document together and outputs one relevance logit. Any local
cross-encoder folder works (e.g. a copy of ``cross-encoder/ms-marco-MiniLM-L6-v2``); a bi-encoder checkpoint
such as the packaged MiniLM loads too, with a freshly initialised (untrained) scoring head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from experiments.models import loading, pick_device, resolve_model
from experiments.rerankers.base import ModelReranker

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

#: Seed for heads that a checkpoint lacks, so that an untrained head scores the same in every process.
HEAD_INIT_SEED = 0


def load_cross_encoder(path: str, max_length: int, device: str) -> CrossEncoder:
    """Load a cross-encoder with one output logit, in eval mode.

    A checkpoint without a sequence-classification head (e.g. a bi-encoder) gets a new head, initialised from
    ``HEAD_INIT_SEED`` without disturbing the global random state.
    """
    import torch
    from sentence_transformers import CrossEncoder

    with loading(path), torch.random.fork_rng(devices=[]):
        torch.manual_seed(HEAD_INIT_SEED)
        model = CrossEncoder(path, num_labels=1, max_length=max_length, device=device, local_files_only=True)
    model.eval()
    return model


def predict_logits(model: CrossEncoder, query: str, documents: Sequence[str], batch_size: int) -> list[float]:
    """Raw logits for each ``(query, document)`` pair, aligned with ``documents``.

    Logits rather than sigmoid probabilities: both rank identically, but probabilities saturate to exact ties
    at 1.0 in float32 for confident models.
    """
    return predict_logits_many(model, [query], [documents], batch_size)[0]


def predict_logits_many(
    model: CrossEncoder, queries: Sequence[str], documents: Sequence[Sequence[str]], batch_size: int
) -> list[list[float]]:
    """``predict_logits`` for many queries (each with its own documents) in one batched pass over all pairs."""
    import torch

    pairs = [(query, document) for query, docs in zip(queries, documents, strict=True) for document in docs]
    if not pairs:
        return [[] for _ in queries]
    with torch.inference_mode():
        scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False, activation_fn=torch.nn.Identity())
    flat = [float(score) for score in scores]
    ends = np.cumsum([len(docs) for docs in documents]).tolist()
    return [flat[end - len(docs) : end] for docs, end in zip(documents, ends, strict=True)]


class StockCrossEncoder(ModelReranker["CrossEncoder"]):
    """Rescore candidates with a cross-encoder as shipped.

    Args:
        model: model reference (see ``experiments.models``): a local cross-encoder folder, a
            cached hub id, or ``packaged:all-MiniLM-L6-v2`` (which has no trained scoring head, so its ranking
            is arbitrary: useful only as a smoke test).
        batch_size: pairs per forward pass.
        max_length: tokens per (query, document) pair; longer pairs are truncated.
        device: ``auto``, ``cpu``, ``cuda``, ...
    """

    def __init__(self, model: str, batch_size: int = 32, max_length: int = 128, device: str = "auto") -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device

    def _model_source(self) -> str:
        return resolve_model(self.model)

    def _load(self, path: str) -> CrossEncoder:
        return load_cross_encoder(path, self.max_length, pick_device(self.device))

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """One logit per document (higher is more relevant), aligned with ``documents``."""
        return predict_logits(self._loaded(), query, documents, self.batch_size)

    def score_many(self, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[list[float]]:
        return predict_logits_many(self._loaded(), queries, documents, self.batch_size)
