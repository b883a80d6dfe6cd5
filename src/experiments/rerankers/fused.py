"""Category similarity and label memory, fused with a weight chosen on the validation split: ``reranker=fused``.

score = w · category score + (1 − w) · label-memory vote share. The category reranker (by default the
fine-tuned bi-encoder) says how well the query matches each category's text; the label memory says which
categories the nearest labelled train queries were booked to. ``w`` is chosen from ``weights`` on the
validation split carved from train: both parts are fitted on the train examples outside it, every weight
ranks the validation queries, the best wins (the earlier on a tie); then both parts are fitted on all of
train. The eval split is never seen by the choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.errors import ConfigError
from experiments.models import Portable, portable
from experiments.records import FinetuneSet, sha256_json
from experiments.records.run import Selection
from experiments.rerankers.base import FitContext, FitResult, Reranker
from experiments.rerankers.label_memory import LabelMemory, stored_model
from experiments.rerankers.selection import CRITERION, best, quality

DEFAULT_WEIGHTS = tuple(round(0.1 * step, 1) for step in range(11))


class FusedReranker(Reranker):
    """``w`` × ``category.score`` + (1 − ``w``) × ``memory.score``, ``w`` chosen on validation.

    Args:
        category: the reranker that scores the query against each category document.
        memory: the label memory; its ``model: null`` means "the category reranker's fine-tuned model" (the
            category reranker must then train one).
        weights: the candidate values of ``w`` (in [0, 1]), tried in this order.
        weight: a fixed ``w`` instead of choosing one (also used when the run has no validation split; None
            then means 0.5).
    """

    def __init__(
        self,
        category: Reranker,
        memory: LabelMemory,
        weights: Sequence[float] = DEFAULT_WEIGHTS,
        weight: float | None = None,
    ) -> None:
        candidates = [float(value) for value in weights]
        if not candidates or any(not 0 <= value <= 1 for value in [*candidates, *([weight] if weight else [])]):
            raise ConfigError(f"FusedReranker: weights={list(weights)} and weight={weight} must lie in [0, 1].")
        self.category = category
        self.memory = memory
        self.weights = candidates
        self.weight = weight
        self._chosen = 0.5 if weight is None else float(weight)
        self._key: str | None = None

    def chooses_on_validation(self) -> bool:
        return self.weight is None or self.category.chooses_on_validation()

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult | None:
        """Choose ``w`` on ``context.validation`` (unless fixed), then fit both parts on all of train."""
        if context is None:
            raise ConfigError("FusedReranker: fit needs the labelled train examples (a FitContext).")
        selection = Selection()
        if self.weight is None and context.validation is not None:
            selection = self._choose(context, cache_dir, seed)
            assert selection.weight is not None
            self._chosen = float(selection.weight)
        fit = self._fit_parts(finetune_set, cache_dir, seed, context)
        self._key = (
            "fused-"
            + sha256_json(
                {"category": fit.finetune_id if fit else self.category.score_key(), "memory": self.memory.memory_key()}
                | {"weight": self._chosen}
            )[:16]
        )
        if fit is None:
            return None
        return dataclasses.replace(fit, selection=selection.model_copy(update={"category": fit.selection}))

    def _fit_parts(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext
    ) -> FitResult | None:
        fit = self.category.fit(finetune_set, cache_dir, seed, context)
        if self.memory.model is None:
            if fit is None:
                raise ConfigError("FusedReranker: memory.model=null needs a category reranker that trains a model.")
            model = str(fit.model_path)
        else:
            model = stored_model(self.memory.model, cache_dir)
        self.memory.remember(context, model)
        return fit

    def _choose(self, context: FitContext, cache_dir: Path, seed: int) -> Selection:
        validation = context.validation
        assert validation is not None
        self._fit_parts(validation.fit_set, cache_dir, seed, context.for_selection())
        by_label = context.selection_documents()
        labels = list(by_label)
        documents = [by_label[label] for label in labels]
        queries = [example.input for example in validation.examples]
        category = np.array([self.category.score(query, documents) for query in queries])
        votes = self.memory.query_vectors(queries)
        memory = np.array([self.memory.votes(vector, documents) for vector in votes])
        curve = [(w, quality(w * category + (1 - w) * memory, validation.examples, labels)) for w in self.weights]
        return Selection(
            weight=best(curve),
            criterion=list(CRITERION),
            curve=[[w, *value] for w, value in curve],
            validation_queries=len(queries),
        )

    def score_key(self) -> str | None:
        return self._key

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """``w`` × category score + (1 − ``w``) × vote share, aligned with ``documents``."""
        category = self.category.score(query, documents)
        memory = self.memory.score(query, documents)
        return [self._chosen * c + (1 - self._chosen) * m for c, m in zip(category, memory, strict=True)]

    def portable(self) -> Portable | None:
        """Both fitted parts and the chosen weight (fixed, so the served model chooses nothing); None before fit."""
        category, memory = self.category.portable(), self.memory.portable()
        if self._key is None or category is None or memory is None:
            return None
        return portable(self, category=category, memory=memory, weight=self._chosen)
