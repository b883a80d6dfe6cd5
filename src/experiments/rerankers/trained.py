"""What every fine-tuned reranker shares: the fine-tune id, the once-only build and the fit record."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError
from experiments.records import FinetuneSet
from experiments.rerankers.base import FitResult, Reranker, make_finetune_id
from experiments.rerankers.models import build_once, cache_identity, model_identity


class TrainedReranker(Reranker):
    """A reranker trained on the fine-tuning set and stored under its fine-tune id.

    Subclasses say what changes the weights (``train_args``), how to train into a folder (``_train``, returning
    a JSON record with at least ``train_seconds``, ``train_pairs``, ``train_loss`` and ``steps``) and how to
    drop a loaded model (``_use_model``).
    """

    trainable = True
    base_model: str
    epochs: float

    @abstractmethod
    def train_args(self, seed: int) -> dict[str, object]:
        """Everything besides the data and the base model that changes the trained weights."""

    @abstractmethod
    def _train(self, finetune_set: FinetuneSet, identity: dict[str, Any], out_dir: Path, seed: int) -> dict[str, Any]:
        """Train from the base model at ``identity["path"]`` and save the result into ``out_dir``."""

    @abstractmethod
    def _use_model(self, path: Path) -> None:
        """Score with the model at ``path`` from now on (loaded lazily)."""

    def _fit_extra(self, record: dict[str, Any]) -> dict[str, float | int | str]:
        return {"train_loss": record["train_loss"], "steps": record["steps"], "epochs": self.epochs}

    def fit(self, finetune_set: FinetuneSet, cache_dir: Path, seed: int) -> FitResult:
        """Train on ``finetune_set`` into ``cache_dir/<finetune id>``, or reuse the model stored there."""
        if not finetune_set.items:
            raise ConfigError(f"{self.name}: the fine-tuning set is empty; there is nothing to train on.")
        identity = model_identity(self.base_model)
        finetune_id = make_finetune_id(finetune_set, cache_identity(identity), self.train_args(seed))
        final_dir = Path(cache_dir) / finetune_id
        record, reused = build_once(final_dir, lambda tmp: self._train(finetune_set, identity, tmp, seed))
        self._use_model(final_dir)
        return FitResult(
            finetune_id=finetune_id,
            model_path=final_dir,
            reused=reused,
            train_seconds=0.0 if reused else record["train_seconds"],
            train_pairs=record["train_pairs"],
            extra=self._fit_extra(record),
        )
