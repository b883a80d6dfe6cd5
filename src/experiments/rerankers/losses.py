"""Losses of the fine-tuned bi-encoder: MultipleNegativesRankingLoss variants for a small, repeated label space.

Every loss here takes the rows ``(query, positive, negative_1, ..., negative_k)`` that ``mnrl_rows`` builds
(``k`` may be 0: then the only negatives are the other rows' documents) and returns the mean cross-entropy of
each query against its own positive. They differ only in *which* documents of the batch count as negatives of a
row, so each one is a boolean mask over the ``(batch, documents)`` score matrix:

- ``DistinctMNRL``: every document of the batch, except copies of the row's own positive (the default recipe);
- ``MinedOnlyMNRL``: only the row's own mined negatives (no in-batch negatives at all);
- ``GuidedMNRL``: as ``DistinctMNRL``, minus the other rows' documents that a frozen guide model scores above the
  row's positive (GISTEmbedLoss-style filtering of in-batch false negatives).

The documents are ordered column by column, as sentence-transformers' MNRL orders them: positives of rows
``0..B-1``, then the first negatives of rows ``0..B-1``, and so on; document ``j`` belongs to row ``j % B``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TokenKey = tuple[int, ...]


def token_keys(features: dict[str, Any]) -> list[TokenKey]:
    """The unpadded token ids of each text in a tokenized column: equal keys mean equal texts."""
    ids, mask = features["input_ids"], features["attention_mask"].bool()
    return [tuple(row[row_mask].tolist()) for row, row_mask in zip(ids, mask, strict=True)]


def padded(keys: list[TokenKey], like: dict[str, Any]) -> dict[str, Tensor]:
    """Features for token sequences, right-padded to the longest (as the tokenizer pads a batch)."""
    width = max(len(key) for key in keys)
    device = like["input_ids"].device
    ids = torch.zeros((len(keys), width), dtype=like["input_ids"].dtype, device=device)
    mask = torch.zeros((len(keys), width), dtype=like["attention_mask"].dtype, device=device)
    for row, key in enumerate(keys):
        ids[row, : len(key)] = torch.tensor(key, dtype=ids.dtype)
        mask[row, : len(key)] = 1
    features = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in like:
        features["token_type_ids"] = torch.zeros_like(ids)
    return features


class DistinctMNRL(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss that never treats a copy of a row's positive as one of its negatives.

    The documents are a few dozen (or a few hundred) categories, so a batch holds the same category many times:
    as other rows' positives and as their hard negatives. The stock loss would push a query away from its own
    positive through those copies. Copies are found by equal token ids, which is exact.

    With ``embed_once``, each distinct document is embedded once per batch, without dropout, and shared by its
    copies: a batch of 32 rows with 4 negatives holds 160 document texts but at most a few dozen distinct ones,
    so a step costs about 2.3x fewer CPU-seconds, with the same loss and gradients as the stock path in eval mode.
    The document pass runs without dropout because one shared random draw per category learned badly (mrr@1 0.33
    instead of 1.0 on the toy set of tests/test_rerankers.py); the queries keep theirs.

    Args:
        model: the SentenceTransformer being trained.
        scale: inverse temperature; cosine similarities are multiplied by it before the softmax.
        embed_once: embed each distinct document once per batch, without dropout.

    Inputs:
        +-------------------------------------------+--------+
        | Texts                                     | Labels |
        +===========================================+========+
        | (query, positive) pairs                   | none   |
        +-------------------------------------------+--------+
        | (query, positive, negative_1..k) tuples   | none   |
        +-------------------------------------------+--------+

    Example:
        ::

            loss = DistinctMNRL(model, scale=20.0, embed_once=True)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss)
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0, embed_once: bool = False) -> None:
        super().__init__(model, scale=scale)
        self.embed_once = embed_once

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        columns = list(sentence_features)
        doc_keys = [key for features in columns[1:] for key in token_keys(features)]
        distinct = list(dict.fromkeys(doc_keys))
        position = {key: index for index, key in enumerate(distinct)}
        doc_ids = torch.tensor([position[key] for key in doc_keys], device=columns[0]["input_ids"].device)
        queries, docs = self._embed(columns, distinct, doc_ids)
        batch = queries.size(0)
        rows = torch.arange(batch, device=queries.device)
        copies = doc_ids[None, :] == doc_ids[:batch, None]  # (batch, all docs): same text as the row's positive
        copies[rows, rows] = False
        excluded = copies | self.excluded(columns, distinct, doc_ids)
        scores = self.similarity_fct(queries, docs) * self.scale
        scores = scores.masked_fill(excluded, float("-inf"))
        return torch.nn.functional.cross_entropy(scores, rows)

    def _embed(
        self, columns: list[dict[str, Tensor]], distinct: list[TokenKey], doc_ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(queries (B, dim), documents (B * (columns - 1), dim))``, documents in column order."""
        if not self.embed_once:
            embeddings = embed_columns(self.model, columns)
            return embeddings[0], torch.cat(embeddings[1:], dim=0)
        queries = self.model(columns[0])["sentence_embedding"]
        training = self.model.training
        self.model.eval()  # one draw per category: without dropout (a shared random draw learns badly)
        try:
            docs = self.model(padded(distinct, columns[1]))["sentence_embedding"]
        finally:
            self.model.train(training)
        return queries, docs[doc_ids]

    def excluded(self, columns: list[dict[str, Tensor]], distinct: list[TokenKey], doc_ids: Tensor) -> Tensor:
        """``(batch, documents)`` mask of further documents that are not negatives of a row (none here).

        Args:
            columns: the tokenized columns, queries first.
            distinct: the distinct document token keys of the batch.
            doc_ids: for each document (column order), its index in ``distinct``.
        """
        batch = columns[0]["input_ids"].size(0)
        return torch.zeros((batch, doc_ids.numel()), dtype=torch.bool, device=doc_ids.device)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "embed_once": self.embed_once}


class MinedOnlyMNRL(DistinctMNRL):
    """DistinctMNRL whose negatives are only the row's own mined negatives: other rows' documents are masked.

    A row's softmax runs over ``(positive, negative_1..k)`` of that row alone, so the miner decides every
    negative the model sees; in the default recipe the in-batch documents of a 32-row batch already cover most of
    a small label space, whatever was mined. Needs ``k >= 1``: with no negative column there is nothing to learn.

    Args:
        model: the SentenceTransformer being trained.
        scale: inverse temperature; cosine similarities are multiplied by it before the softmax.
        embed_once: embed each distinct document once per batch, without dropout.

    Inputs:
        +-------------------------------------------+--------+
        | Texts                                     | Labels |
        +===========================================+========+
        | (query, positive, negative_1..k) tuples   | none   |
        +-------------------------------------------+--------+
    """

    def excluded(self, columns: list[dict[str, Tensor]], distinct: list[TokenKey], doc_ids: Tensor) -> Tensor:
        if len(columns) < 3:
            raise ValueError(f"{type(self).__name__} needs at least one mined negative per row (k >= 1).")
        batch = columns[0]["input_ids"].size(0)
        owner = torch.arange(doc_ids.numel(), device=doc_ids.device) % batch
        return owner[None, :] != torch.arange(batch, device=doc_ids.device)[:, None]


class GuidedMNRL(DistinctMNRL):
    """DistinctMNRL that drops in-batch negatives a frozen guide model ranks above the row's positive (GISTEmbed).

    As in sentence-transformers' ``GISTEmbedLoss`` with the "absolute" margin strategy, another row's document
    ``d`` is not a negative of query ``q`` when ``guide(q, d) > guide(q, positive) - margin``. Unlike
    ``GISTEmbedLoss``, the row's own mined negatives are always kept: the miner already checked them against the
    labels, and a similarity-based miner picks exactly the documents the guide scores highest.

    Args:
        model: the SentenceTransformer being trained.
        guide: a frozen model with the same tokenizer (the reranker passes a copy of the base model).
        scale: inverse temperature; cosine similarities are multiplied by it before the softmax.
        embed_once: embed each distinct document once per batch, without dropout.
        margin: how far below the positive's guide similarity an in-batch document must stay to count.

    Inputs:
        +-------------------------------------------+--------+
        | Texts                                     | Labels |
        +===========================================+========+
        | (query, positive) pairs                   | none   |
        +-------------------------------------------+--------+
        | (query, positive, negative_1..k) tuples   | none   |
        +-------------------------------------------+--------+
    """

    def __init__(
        self,
        model: SentenceTransformer,
        guide: SentenceTransformer,
        scale: float = 20.0,
        embed_once: bool = False,
        margin: float = 0.0,
    ) -> None:
        super().__init__(model, scale=scale, embed_once=embed_once)
        if margin < 0:
            raise ValueError(f"{type(self).__name__}: margin={margin} must be at least 0.")
        self.guide = guide
        self.margin = margin
        guide.eval()
        for parameter in guide.parameters():
            parameter.requires_grad_(False)

    def excluded(self, columns: list[dict[str, Tensor]], distinct: list[TokenKey], doc_ids: Tensor) -> Tensor:
        batch = columns[0]["input_ids"].size(0)
        with torch.no_grad():
            queries = self.guide(columns[0])["sentence_embedding"]
            docs = self.guide(padded(distinct, columns[1]))["sentence_embedding"][doc_ids]
            similarity = self.similarity_fct(queries, docs)
        rows = torch.arange(batch, device=doc_ids.device)
        positive = similarity[rows, rows][:, None]
        other_row = (torch.arange(doc_ids.numel(), device=doc_ids.device) % batch)[None, :] != rows[:, None]
        return other_row & (similarity > positive - self.margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "margin": self.margin, "guide": "frozen copy of the base model"}
