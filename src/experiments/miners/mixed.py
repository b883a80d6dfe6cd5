"""A mix of hard and random negatives."""

from __future__ import annotations

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import Miner, MiningContext, uniform_draw


class MixedMiner(Miner):
    """Part hard negatives from another miner, the rest uniform random.

    Training only on hard negatives is known to hurt the easy cases, so each item mixes the two. A draw asks
    the ``hard`` miner for ``round(k * hard_share)`` negatives (Python's ``round``, halves to even) with the
    same draw index and generator, then adds ``k`` minus that many distinct uniform draws from the
    non-positive categories the hard part did not use. The hard ones come first. When the hard miner's pool
    runs short, the shortfall is left to the base class's top-up, so it is counted in ``fill_notes`` (or fails
    when ``strict``); the inner miner's own ``strict`` is not consulted.

    Args:
        hard: the miner that supplies the hard share (any ``Miner``; built from the nested config).
        hard_share: fraction of each item's ``k`` negatives taken from ``hard``, ``0 <= hard_share <= 1``.
        strict: see ``Miner``.
    """

    def __init__(self, hard: Miner, hard_share: float = 0.5, strict: bool = False) -> None:
        super().__init__(strict=strict)
        if not isinstance(hard, Miner):
            raise ConfigError(f"MixedMiner: hard={hard!r} must be a miner (a config with a _target_).")
        if not isinstance(hard_share, int | float) or not 0 <= hard_share <= 1:
            raise ConfigError(f"MixedMiner: hard_share={hard_share!r} must be a number with 0 <= hard_share <= 1.")
        self.hard = hard
        self.hard_share = float(hard_share)

    def prepare(self, context: MiningContext, seed: int) -> None:
        self.hard.prepare(context, seed)

    def draw(
        self,
        context: MiningContext,
        example_index: int,
        positives: list[int],
        k: int,
        draw: int,
        rng: np.random.Generator,
    ) -> list[int]:
        n_hard = round(k * self.hard_share)
        hard: list[int] = []
        if n_hard:
            proposed = self.hard.draw(context, example_index, positives, n_hard, draw, rng)
            hard = list(dict.fromkeys(int(index) for index in proposed))[:n_hard]
        return hard + uniform_draw(context.n_categories, {*positives, *hard}, k - n_hard, rng)
