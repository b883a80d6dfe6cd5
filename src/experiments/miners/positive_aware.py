"""Positive-aware hard negatives: NV-Retriever's TopK-PercPos."""

from __future__ import annotations

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import MiningContext, RankedPoolMiner


class PositiveAwareMiner(RankedPoolMiner):
    """The categories the query scores highest, skipping those that score too close to the positive.

    TopK-PercPos from NV-Retriever (Moreira et al., 2024): candidates scoring above ``pct`` times the
    positive's score are likely false negatives (unlabelled positives) and are dropped. For an example, the
    non-positive categories are scored by query-to-category cosine similarity (``context.query_scores``);
    the positive's score is the maximum over its positives. The threshold is ``pct * positive_score``
    for a positive score >= 0, and ``positive_score - (1 - pct) * |positive_score|`` otherwise, so it always
    stays at or below the positive's score. The pool is the remaining candidates, highest score first (ties by
    category index). A draw walks the pool ``k`` at a time with ``cyclic_window``; when fewer than ``k``
    candidates pass the threshold, the base class tops up at random (or fails when ``strict``).

    Args:
        pct: the fraction of the positive's score above which candidates are skipped, ``0 < pct <= 1``
            (the paper uses 0.95; 1 keeps everything that scores no higher than the positive).
        strict: see ``Miner``.
    """

    def __init__(self, pct: float = 0.95, strict: bool = False) -> None:
        super().__init__(strict=strict)
        if not isinstance(pct, int | float) or not 0 < pct <= 1:
            raise ConfigError(f"PositiveAwareMiner: pct={pct!r} must be a number with 0 < pct <= 1 (e.g. 0.95).")
        self.pct = float(pct)

    def pool(self, context: MiningContext, example_index: int, positives: list[int]) -> list[int]:
        """The candidates that pass the threshold, highest query score first."""
        scores = context.query_scores(example_index)
        positive_score = float(scores[positives].max())
        threshold = positive_score - (1 - self.pct) * abs(positive_score)
        banned = set(positives)
        return [
            int(index)
            for index in np.argsort(-scores, kind="stable")
            if int(index) not in banned and scores[index] <= threshold
        ]
