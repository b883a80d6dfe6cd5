"""Semi-hard negatives: the categories whose embeddings are closest to the positive category."""

from __future__ import annotations

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import MiningContext, RankedPoolMiner


class CosineMiner(RankedPoolMiner):
    """The non-positive categories most similar to the positive category, within a rank window.

    ``prepare`` computes the category-to-category cosine similarity once. For an example, the non-positive
    categories are ranked by similarity to its positive (for a multi-label example, by the maximum similarity
    to any positive), ties broken by category index. The pool is the 1-based rank window
    ``[rank_min, rank_max]`` of that ranking: ``rank_min > 1`` skips the nearest categories (which may be
    near-synonyms of the positive), giving semi-hard negatives. The query text plays no part, so all examples
    with the same positives share a pool.

    A draw walks the pool ``k`` at a time with ``cyclic_window`` (draw 0 takes the nearest ones). When the
    pool is smaller than ``k`` the whole pool is returned and the base class tops up at random (or fails
    when ``strict``).

    Args:
        rank_min: first rank of the window (1 = the nearest non-positive category).
        rank_max: last rank of the window, inclusive; ``None`` means no upper bound.
        strict: see ``Miner``.
    """

    def __init__(self, rank_min: int = 1, rank_max: int | None = None, strict: bool = False) -> None:
        super().__init__(strict=strict)
        if not isinstance(rank_min, int) or rank_min < 1:
            raise ConfigError(f"CosineMiner: rank_min={rank_min!r} must be an integer >= 1.")
        if rank_max is not None and (not isinstance(rank_max, int) or rank_max < rank_min):
            raise ConfigError(
                f"CosineMiner: rank_min={rank_min} > rank_max={rank_max!r}; rank_max must be an integer "
                "at least rank_min, or null for no upper bound."
            )
        self.rank_min = rank_min
        self.rank_max = rank_max
        self._similarity = np.zeros((0, 0))
        self._pools: dict[tuple[int, ...], list[int]] = {}

    def prepare(self, context: MiningContext, seed: int) -> None:
        if self.rank_min > context.n_categories - 1:
            raise ConfigError(
                f"CosineMiner: rank_min={self.rank_min} but there are only {context.n_categories - 1} "
                "non-positive categories; lower miner.rank_min."
            )
        self._similarity = context.category_vectors @ context.category_vectors.T
        self._pools = {}

    def pool(self, context: MiningContext, example_index: int, positives: list[int]) -> list[int]:
        """The categories nearest the positive(s) within the rank window; the same for every query of a label."""
        key = tuple(sorted(positives))
        if key not in self._pools:
            self._pools[key] = self._pool(positives)
        return self._pools[key]

    def _pool(self, positives: list[int]) -> list[int]:
        closeness = self._similarity[positives].max(axis=0)
        banned = set(positives)
        ranked = [int(index) for index in np.argsort(-closeness, kind="stable") if int(index) not in banned]
        return ranked[self.rank_min - 1 : self.rank_max]
