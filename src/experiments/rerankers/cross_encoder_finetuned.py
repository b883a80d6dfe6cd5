"""A cross-encoder fine-tuned on the mined set: ``reranker=cross_encoder_finetuned``.

Recipe (sentence-transformers' order): base model → rows from the fine-tuning items → loss → training
arguments → ``CrossEncoderTrainer`` → save under the fine-tune id. Training is skipped when a complete model
with the same id is already stored (see ``experiments.rerankers.models.build_once``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from experiments.errors import ConfigError
from experiments.records import FinetuneItem, FinetuneSet
from experiments.rerankers.cross_encoder import load_cross_encoder, predict_logits
from experiments.rerankers.models import (
    PACKAGED_MINILM,
    check_positive,
    mnrl_rows,
    pick_device,
    quiet_loading,
    resolve_model,
    run_trainer,
    trainer_kwargs,
    without_model_card,
)
from experiments.rerankers.trained import TrainedReranker

if TYPE_CHECKING:
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


class FinetunedCrossEncoder(TrainedReranker):
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
        device: ``auto``, ``cpu``, ``cuda``. Not part of the fine-tune id.
        score_batch_size: pairs per forward pass when scoring.
        progress: show the training progress bar.

    ``score`` uses the model trained by the last ``fit``; before any ``fit`` it uses the base model with an
    untrained head (deterministic, but not a meaningful ranking).
    """

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
        device: str = "auto",
        score_batch_size: int = 64,
        progress: bool = False,
    ) -> None:
        if loss not in get_args(LossName):
            raise ConfigError(f"{type(self).__name__}: loss={loss!r} is not one of {list(get_args(LossName))}.")
        if pos_weight is not None:
            check_positive(self, "pos_weight", pos_weight)
        for knob, value in (("epochs", epochs), ("learning_rate", learning_rate), ("batch_size", batch_size)):
            check_positive(self, knob, value)
        if not 0 <= warmup_ratio < 1:
            raise ConfigError(f"{type(self).__name__}: warmup_ratio={warmup_ratio} must be in [0, 1).")
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
        self.device = device
        self.score_batch_size = score_batch_size
        self.progress = progress
        self._model_path: Path | None = None
        self._model: CrossEncoder | None = None

    def train_args(self, seed: int) -> dict[str, object]:
        """Everything besides the data and the base model that changes the trained weights."""
        args: dict[str, object] = {
            "kind": "cross_encoder",
            "loss": self.loss,
            "pos_weight": self.pos_weight,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "warmup_ratio": self.warmup_ratio,
            "max_length": self.max_length,
            "seed": seed,
        }
        if self.loss == "mnrl":
            args["in_batch_negatives"] = self.in_batch_negatives
        return args

    def _use_model(self, path: Path) -> None:
        self._model_path, self._model = path, None

    def _fit_extra(self, record: dict[str, Any]) -> dict[str, float | int | str]:
        extra: dict[str, float | int | str] = {"loss": self.loss, **super()._fit_extra(record)}
        if record.get("pos_weight") is not None:
            extra["pos_weight"] = record["pos_weight"]
        return extra

    def _train(self, finetune_set: FinetuneSet, identity: dict[str, Any], out_dir: Path, seed: int) -> dict[str, Any]:
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
        from transformers import set_seed

        device = pick_device(self.device)
        model = load_cross_encoder(str(identity["path"]), self.max_length, device)
        model.train()
        set_seed(seed)  # data order, dropout and in-batch draws; a new head is seeded by the loader
        dataset, pairs = self._dataset(finetune_set.items)
        pos_weight = None
        if self.loss == "bce":
            pos_weight = self.pos_weight or default_pos_weight(finetune_set.items)
        args = CrossEncoderTrainingArguments(
            **trainer_kwargs(
                out_dir / "_trainer",
                self.epochs,
                self.learning_rate,
                self.batch_size,
                self.warmup_ratio,
                seed,
            ),
            use_cpu=device == "cpu",
            disable_tqdm=not self.progress,
        )
        loss = self._loss(model, pos_weight)
        trainer = without_model_card(CrossEncoderTrainer)(model=model, args=args, train_dataset=dataset, loss=loss)
        started = time.perf_counter()
        output = run_trainer(trainer)
        seconds = time.perf_counter() - started
        shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
        with quiet_loading():
            model.save(str(out_dir), create_model_card=False)
        return {
            "base_model": identity,
            "train_args": self.train_args(seed),
            "pos_weight": pos_weight,
            "train_seconds": round(seconds, 3),
            "train_pairs": pairs,
            "train_loss": float(output.training_loss),
            "steps": int(output.global_step),
        }

    def _dataset(self, items: Sequence[FinetuneItem]) -> tuple[Dataset, int]:
        """The training rows for the chosen loss, and the (query, passage) pairs they hold per epoch."""
        from datasets import Dataset

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

    def _loss(self, model: CrossEncoder, pos_weight: float | None) -> nn.Module:
        import torch
        from sentence_transformers.cross_encoder import losses

        if self.loss == "bce":
            return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(pos_weight))
        if self.loss == "lambda":
            return losses.LambdaLoss(model)
        return distinct_in_batch_mnrl(model, self.in_batch_negatives)

    def _loaded(self) -> CrossEncoder:
        if self._model is None:
            path = str(self._model_path) if self._model_path else resolve_model(self.base_model)
            self._model = load_cross_encoder(path, self.max_length, pick_device(self.device))
        return self._model

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """One logit per document (higher is more relevant), aligned with ``documents``."""
        return predict_logits(self._loaded(), query, documents, self.score_batch_size)
