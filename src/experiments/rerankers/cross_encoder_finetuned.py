"""A cross-encoder fine-tuned on the mined set: ``reranker=cross_encoder_finetuned``.

Recipe (sentence-transformers' order): base model → rows from the fine-tuning items → loss → training
arguments → ``CrossEncoderTrainer`` → save under the fine-tune id. Training is skipped when a complete model
with the same id is already stored (see ``experiments.store.build_once``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

from experiments.errors import ConfigError
from experiments.models import PACKAGED_MINILM, pick_device
from experiments.records import FinetuneItem
from experiments.rerankers.cross_encoder import load_cross_encoder, predict_logits, predict_logits_many
from experiments.rerankers.trained import TrainedReranker, check_positive, mnrl_rows

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import CrossEncoder
    from torch import nn

LossName = Literal["bce", "mnrl", "lambda"]


def bce_rows(items: Sequence[FinetuneItem]) -> dict[str, list[Any]]:
    """Pointwise rows: ``(query, relevant passage, 1.0)`` and ``(query, hard negative, 0.0)`` per item."""
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    for item in items:
        for passages, label in ((item.relevant_passages, 1.0), (item.hard_negatives, 0.0)):
            for passage in passages:
                rows["query"].append(item.query)
                rows["document"].append(passage)
                rows["label"].append(label)
    return rows


def listwise_rows(items: Sequence[FinetuneItem]) -> dict[str, list[Any]]:
    """LambdaLoss rows: ``(query, [relevant..., negatives...], [1.0..., 0.0...])``, one per item."""
    return {
        "query": [item.query for item in items],
        "docs": [[*item.relevant_passages, *item.hard_negatives] for item in items],
        "labels": [[1.0] * len(item.relevant_passages) + [0.0] * len(item.hard_negatives) for item in items],
    }


def default_pos_weight(items: Sequence[FinetuneItem]) -> float:
    """Negatives per positive over the whole set (``k`` for items with one relevant passage), at least 1."""
    positives = sum(len(item.relevant_passages) for item in items)
    negatives = sum(len(item.hard_negatives) for item in items)
    return max(1.0, negatives / positives)


def distinct_in_batch_mnrl(model: CrossEncoder, in_batch_negatives: int) -> nn.Module:
    """Cross-encoder MNRL whose in-batch negatives are never a passage of the anchor's own row.

    The documents are a few dozen categories, so a batch often holds the anchor's positive again as another
    row's passage; the stock loss would then train the positive as a negative.
    """
    import torch
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    class DistinctInBatchMNRL(MultipleNegativesRankingLoss):
        def get_in_batch_negatives(
            self, anchors: list[str], candidates: list[list[str]]
        ) -> Generator[list[str], None, None]:
            if not self.num_negatives:
                return
            flat = [text for column in candidates for text in column]
            own = [{column[row] for column in candidates} for row in range(len(anchors))]
            allowed = torch.tensor([[text not in own[row] for text in flat] for row in range(len(anchors))])
            draws = min(self.num_negatives, int(allowed.sum(dim=1).min()))
            if draws == 0:
                return
            for column in torch.multinomial(allowed.float(), draws).T:
                yield [flat[index] for index in column]

    return DistinctInBatchMNRL(model, num_negatives=in_batch_negatives)


class FinetunedCrossEncoder(TrainedReranker["CrossEncoder"]):
    """Fine-tune a cross-encoder on the mined (query, relevant, hard negatives) items, then rescore with it.

    Args:
        base_model: model reference to start from (a bi-encoder checkpoint gets a new one-logit head).
        loss: ``bce`` (pointwise: one row per (query, passage), label 1/0), ``mnrl`` (softmax over the
            positive and the item's hard negatives, plus ``in_batch_negatives`` passages from other rows) or
            ``lambda`` (LambdaLoss, listwise over the item's passages).
        pos_weight: BCE weight of positive rows. None → negatives per positive in the set (``k``), which
            balances the two classes.
        epochs, learning_rate, warmup_ratio: optimiser schedule (linear decay after warmup).
        batch_size: rows per step: (query, passage) pairs for ``bce``, items (each 1 + k passages) otherwise.
        max_length: tokens per (query, passage) pair.
        in_batch_negatives: ``mnrl`` only: extra negatives per row taken from other rows of the batch (never a
            passage of the row itself, so a duplicated category is not a false negative).
        select_epochs: treat ``epochs`` as an upper bound and choose the count on the validation split (see
            ``TrainedReranker``).
        device: ``auto``, ``cpu``, ``cuda``. Not part of the fine-tune id.
        score_batch_size: pairs per forward pass when scoring.
        progress: show the training progress bar.

    ``score`` uses the model trained by the last ``fit``; before any ``fit`` it uses the base model with an
    untrained head (deterministic, but not a meaningful ranking).
    """

    kind = "cross_encoder"

    def __init__(
        self,
        base_model: str = PACKAGED_MINILM,
        loss: LossName = "bce",
        pos_weight: float | None = None,
        epochs: float = 1.0,
        learning_rate: float = 1e-4,
        batch_size: int = 32,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        in_batch_negatives: int = 0,
        select_epochs: bool = False,
        device: str = "auto",
        score_batch_size: int = 64,
        progress: bool = False,
    ) -> None:
        if loss not in get_args(LossName):
            raise ConfigError(f"{type(self).__name__}: loss={loss!r} is not one of {list(get_args(LossName))}.")
        if pos_weight is not None:
            check_positive(self, "pos_weight", pos_weight)
        if in_batch_negatives < 0:
            raise ConfigError(f"{type(self).__name__}: in_batch_negatives={in_batch_negatives} must be >= 0.")
        self.base_model = base_model
        self.loss = loss
        self.pos_weight = pos_weight
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.warmup_ratio = warmup_ratio
        self.max_length = max_length
        self.in_batch_negatives = in_batch_negatives
        self.select_epochs = select_epochs
        self.device = device
        self.score_batch_size = score_batch_size
        self.progress = progress
        self._check_schedule()

    @property
    def loss_name(self) -> str:
        return self.loss

    def _own_train_args(self) -> dict[str, object]:
        args: dict[str, object] = {"pos_weight": self.pos_weight}
        if self.loss == "mnrl":
            args["in_batch_negatives"] = self.in_batch_negatives
        return args

    def _bce_pos_weight(self, items: Sequence[FinetuneItem]) -> float | None:
        if self.loss != "bce":
            return None
        return self.pos_weight or default_pos_weight(items)

    def _record_extra(self, items: Sequence[FinetuneItem]) -> dict[str, Any]:
        return {"pos_weight": self._bce_pos_weight(items)}

    def _trainer_classes(self) -> tuple[Any, Any]:
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

        return CrossEncoderTrainer, CrossEncoderTrainingArguments

    def _dataset(self, items: Sequence[FinetuneItem]) -> tuple[Dataset, int]:
        """The training rows for the chosen loss, and the (query, passage) pairs they hold per epoch."""
        from datasets import Dataset

        if self.loss != "mnrl" and not any(item.hard_negatives for item in items):
            raise ConfigError(
                f"{self.name}: loss={self.loss} needs hard negatives (k >= 1); k=0 leaves only positives."
            )
        if self.loss == "bce":
            rows = bce_rows(items)
            return Dataset.from_dict(rows), len(rows["query"])
        if self.loss == "lambda":
            rows = listwise_rows(items)
            return Dataset.from_dict(rows), sum(len(docs) for docs in rows["docs"])
        rows = mnrl_rows(items)
        columns = len(rows) - 1
        if columns < 2 and self.in_batch_negatives == 0:
            raise ConfigError(f"{self.name}: loss=mnrl needs hard negatives (k >= 1) or in_batch_negatives >= 1.")
        return Dataset.from_dict(rows), len(rows["query"]) * (columns + self.in_batch_negatives)

    def _loss(self, model: CrossEncoder, items: Sequence[FinetuneItem]) -> nn.Module:
        import torch
        from sentence_transformers.cross_encoder import losses

        if self.loss == "bce":
            return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(self._bce_pos_weight(items)))
        if self.loss == "lambda":
            return losses.LambdaLoss(model)
        return distinct_in_batch_mnrl(model, self.in_batch_negatives)

    def _load(self, path: str) -> CrossEncoder:
        return load_cross_encoder(path, self.max_length, pick_device(self.device))

    def _score_matrix(self, model: CrossEncoder, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        import numpy as np

        return np.array([predict_logits(model, query, documents, self.score_batch_size) for query in queries])

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """One logit per document (higher is more relevant), aligned with ``documents``."""
        return predict_logits(self._loaded(), query, documents, self.score_batch_size)

    def score_many(self, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[list[float]]:
        return predict_logits_many(self._loaded(), queries, documents, self.score_batch_size)
