"""Uniform random negatives: the seed notebook's method."""

from __future__ import annotations

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import Miner, MiningContext, uniform_draw


class RandomMiner(Miner):
    """Negatives drawn uniformly from the categories that are not the example's positives.

    A draw samples ``k`` of the other categories afresh from its own generator, so duplication gives
    independent draws. There is no notion of hardness: the order of the returned indices is the sampling
    order. The pool is every non-positive category, so ``k`` is always filled and no top-up happens.

    Args:
        replace: sample with replacement, so an item may repeat a negative. ``True`` reproduces the seed
            notebook's ``random.choices``; the default ``False`` gives ``k`` distinct negatives.
        strict: see ``Miner``; never triggered here because the pool always fills ``k``.
    """

    def __init__(self, replace: bool = False, strict: bool = False) -> None:
        super().__init__(strict=strict)
        if not isinstance(replace, bool):
            raise ConfigError(f"RandomMiner: replace={replace!r} must be true or false.")
        self.replace = replace
        self.allows_repeats = replace

    def draw(
        self,
        context: MiningContext,
        example_index: int,
        positives: list[int],
        k: int,
        draw: int,
        rng: np.random.Generator,
    ) -> list[int]:
        return uniform_draw(context.n_categories, set(positives), k, rng, replace=self.replace)
