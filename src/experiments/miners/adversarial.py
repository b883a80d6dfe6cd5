"""Adversarial negatives: the categories the retriever actually ranks at or above the positive."""

from __future__ import annotations

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import MiningContext, RankedPoolMiner


class AdversarialMiner(RankedPoolMiner):
    """The non-positive categories the retriever confuses with the positive.

    For an example, all categories are ranked by score, highest first (ties by category index). The scores
    are the query-to-category cosine similarities (``context.query_scores``), or a row of the matrix given
    to ``use_scores`` (e.g. a reranker's scores from a previous round). The pool is, among the non-positive
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
        self._scores: np.ndarray | None = None

    def use_scores(self, scores: np.ndarray | None) -> None:
        """Rank by ``scores`` instead of the query vectors; ``None`` goes back to the query vectors.

        Args:
            scores: ``(n_examples, n_categories)``, row ``i`` scoring every category for train example ``i``
                (same order as ``MiningContext.examples`` and ``MiningContext.labels``); higher is more
                relevant. The shape is checked against the context in ``prepare``.
        """
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64)
            if scores.ndim != 2:
                raise ConfigError(f"AdversarialMiner: scores must be a 2-D matrix, got shape {scores.shape}.")
        self._scores = scores

    def prepare(self, context: MiningContext, seed: int) -> None:
        expected = (len(context.examples), context.n_categories)
        if self._scores is not None and self._scores.shape != expected:
            raise ConfigError(
                f"AdversarialMiner: scores have shape {self._scores.shape}, expected {expected} "
                "(train examples x categories)."
            )

    def pool(self, context: MiningContext, example_index: int, positives: list[int]) -> list[int]:
        """The confused categories for one example, hardest first."""
        external = self._scores
        scores = context.query_scores(example_index) if external is None else external[example_index]
        ranking = [int(index) for index in np.argsort(-scores, kind="stable")]
        banned = set(positives)
        above = next(rank for rank, index in enumerate(ranking) if index in banned)
        negatives = [index for index in ranking if index not in banned]
        return negatives[: above + self.margin]

    def config_dict(self) -> dict[str, object]:
        return {**super().config_dict(), "external_scores": self._scores is not None}
