"""A bi-encoder fine-tuned on the mined set: ``reranker=bi_encoder_finetuned``.

Recipe: base model → ``(query, positive, negative_1..k)`` rows → MultipleNegativesRankingLoss (in-batch
duplicates of a row's positive masked out) → ``SentenceTransformerTrainer`` → save under the fine-tune id.
Scoring is the cosine similarity of the fine-tuned query and document embeddings.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.errors import ConfigError
from experiments.records import FinetuneSet
from experiments.rerankers.models import (
    PACKAGED_MINILM,
    check_positive,
    loading,
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
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from torch import nn


def load_bi_encoder(path: str, max_length: int, device: str) -> SentenceTransformer:
    """Load a sentence-transformers model (a plain transformers folder gets mean pooling), in eval mode."""
    from sentence_transformers import SentenceTransformer

    with loading(path):
        model = SentenceTransformer(path, device=device, local_files_only=True)
    model.max_seq_length = max_length
    model.eval()
    return model


def distinct_mnrl(model: SentenceTransformer, scale: float) -> nn.Module:
    """MultipleNegativesRankingLoss that never treats a copy of a row's positive as one of its negatives.

    The documents are a few dozen categories, so a batch of rows holds the same category many times: as other
    rows' positives and as their hard negatives. The stock loss would push the query away from its own
    positive through those copies. Copies are found by equal token ids, which is exact.
    """
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch import Tensor

    def token_keys(features: dict[str, Any]) -> list[tuple[int, ...]]:
        ids, mask = features["input_ids"], features["attention_mask"].bool()
        return [tuple(row[row_mask].tolist()) for row, row_mask in zip(ids, mask, strict=True)]

    class DistinctMNRL(MultipleNegativesRankingLoss):
        def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
            columns = list(sentence_features)
            doc_keys = [key for features in columns[1:] for key in token_keys(features)]
            embeddings = embed_columns(self.model, columns)
            queries, docs = embeddings[0], torch.cat(embeddings[1:], dim=0)
            batch = queries.size(0)
            ids = {key: index for index, key in enumerate(dict.fromkeys(doc_keys))}
            doc_ids = torch.tensor([ids[key] for key in doc_keys], device=queries.device)
            copies = doc_ids[None, :] == doc_ids[:batch, None]  # (batch, all docs): same text as row's positive
            rows = torch.arange(batch, device=queries.device)
            copies[rows, rows] = False
            scores = self.similarity_fct(queries, docs) * self.scale
            scores = scores.masked_fill(copies, float("-inf"))
            return torch.nn.functional.cross_entropy(scores, rows)

    return DistinctMNRL(model, scale=scale)


class FinetunedBiEncoder(TrainedReranker):
    """Fine-tune a sentence-transformers bi-encoder on the mined items and rescore by cosine similarity.

    Args:
        base_model: model reference to start from.
        epochs, learning_rate, warmup_ratio: optimiser schedule (linear decay after warmup).
        batch_size: rows (query, positive, k negatives) per step; other rows' passages are extra negatives.
        max_length: tokens per text.
        scale: MNRL temperature inverse (cosine similarities are multiplied by it before the softmax).
        device: ``auto``, ``cpu``, ``cuda``. Not part of the fine-tune id.
        progress: show the training progress bar.

    ``score`` uses the model trained by the last ``fit``, or the base model before any ``fit`` (then it ranks
    like the embedding baseline would with this model). Document embeddings are cached in memory by text.
    """

    def __init__(
        self,
        base_model: str = PACKAGED_MINILM,
        epochs: float = 1.0,
        learning_rate: float = 5e-5,
        batch_size: int = 32,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        scale: float = 20.0,
        device: str = "auto",
        progress: bool = False,
    ) -> None:
        for knob, value in (
            ("epochs", epochs),
            ("learning_rate", learning_rate),
            ("batch_size", batch_size),
            ("scale", scale),
        ):
            check_positive(self, knob, value)
        if not 0 <= warmup_ratio < 1:
            raise ConfigError(f"{type(self).__name__}: warmup_ratio={warmup_ratio} must be in [0, 1).")
        self.base_model = base_model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.warmup_ratio = warmup_ratio
        self.max_length = max_length
        self.scale = scale
        self.device = device
        self.progress = progress
        self._model_path: Path | None = None
        self._model: SentenceTransformer | None = None
        self._doc_vectors: dict[str, np.ndarray] = {}

    def train_args(self, seed: int) -> dict[str, object]:
        """Everything besides the data and the base model that changes the trained weights."""
        return {
            "kind": "bi_encoder",
            "loss": "mnrl",
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "warmup_ratio": self.warmup_ratio,
            "max_length": self.max_length,
            "scale": self.scale,
            "seed": seed,
        }

    def _use_model(self, path: Path) -> None:
        self._model_path, self._model, self._doc_vectors = path, None, {}

    def _fit_extra(self, record: dict[str, Any]) -> dict[str, float | int | str]:
        return {"loss": "mnrl", **super()._fit_extra(record)}

    def _train(self, finetune_set: FinetuneSet, identity: dict[str, Any], out_dir: Path, seed: int) -> dict[str, Any]:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from transformers import set_seed

        device = pick_device(self.device)
        model = load_bi_encoder(str(identity["path"]), self.max_length, device)
        model.train()
        set_seed(seed)
        rows = mnrl_rows(finetune_set.items)
        args = SentenceTransformerTrainingArguments(
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
        trainer = without_model_card(SentenceTransformerTrainer)(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(rows),
            loss=distinct_mnrl(model, self.scale),
        )
        started = time.perf_counter()
        output = run_trainer(trainer)
        seconds = time.perf_counter() - started
        shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
        with quiet_loading():
            model.save(str(out_dir), create_model_card=False)
        return {
            "base_model": identity,
            "train_args": self.train_args(seed),
            "train_seconds": round(seconds, 3),
            "train_pairs": len(rows["query"]) * (len(rows) - 1),
            "train_loss": float(output.training_loss),
            "steps": int(output.global_step),
        }

    def _loaded(self) -> SentenceTransformer:
        if self._model is None:
            path = str(self._model_path) if self._model_path else resolve_model(self.base_model)
            self._model = load_bi_encoder(path, self.max_length, pick_device(self.device))
        return self._model

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._loaded().encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Cosine similarity of the query to each document, aligned with ``documents``."""
        if not documents:
            return []
        missing = [text for text in dict.fromkeys(documents) if text not in self._doc_vectors]
        if missing:
            self._doc_vectors.update(zip(missing, self._embed(missing), strict=True))
        query_vector = self._embed([query])[0]
        return [float(self._doc_vectors[text] @ query_vector) for text in documents]
