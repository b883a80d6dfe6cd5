"""Adversarial negatives: the categories the retriever actually ranks at or above the positive."""

from __future__ import annotations

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import MiningContext, RankedPoolMiner


class AdversarialMiner(RankedPoolMiner):
    """The non-positive categories the retriever confuses with the positive.

    For an example, all categories are ranked by the query-to-category cosine similarity
    (``context.query_scores``), highest first (ties by category index). The pool is, among the non-positive
    categories, every one ranked above the best-ranked positive plus the next ``margin`` ones below it,
    hardest first. A draw walks the pool ``k`` at a time with ``cyclic_window``. When the retriever already
    ranks the positive first the pool holds only the ``margin`` runners-up, so with a small pool the base
    class tops up at random (or fails when ``strict``).

    Args:
        margin: how many non-positive categories ranked just below the best positive join the pool (>= 0).
        strict: see ``Miner``.
    """

    def __init__(self, margin: int = 3, strict: bool = False) -> None:
        super().__init__(strict=strict)
        if not isinstance(margin, int) or margin < 0:
            raise ConfigError(f"AdversarialMiner: margin={margin!r} must be an integer >= 0.")
        self.margin = margin

    def pool(self, context: MiningContext, example_index: int, positives: list[int]) -> list[int]:
        """The confused categories for one example, hardest first."""
        scores = context.query_scores(example_index)
        ranking = [int(index) for index in np.argsort(-scores, kind="stable")]
        banned = set(positives)
        above = next(rank for rank, index in enumerate(ranking) if index in banned)
        negatives = [index for index in ranking if index not in banned]
        return negatives[: above + self.margin]
