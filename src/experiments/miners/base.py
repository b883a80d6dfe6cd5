"""The miner contract and the loop every strategy shares.

A miner turns the *train* examples into fine-tuning items: for each example, ``duplication`` items, each with
``k`` hard negatives drawn by the strategy. Strategies only decide which category indices to propose for one
draw (``draw``); this module enforces the contract around them:

- a negative is never one of the example's expected labels;
- ``k=0`` means no mined negatives: every item holds only the query and its positives, the strategy is not
  consulted, and a bi-encoder then trains on in-batch negatives alone;
- an item has exactly ``k`` negatives (distinct, unless the strategy allows repeats, like the seed's
  ``random.choices``);
- when a strategy proposes fewer than ``k``, the rest is topped up with uniform draws from the remaining
  categories and counted in ``FinetuneSet.fill_notes`` (or the run fails when ``strict`` is set);
- every draw has its own random generator seeded by ``(seed, example index, draw index)``, so the same seed
  and data give the same fine-tuning set regardless of order or parallelism.

*A draw* is one fine-tuning item. Stochastic strategies sample afresh for every draw; deterministic ones walk
down their ranked pool, ``k`` at a time (draw ``d`` takes pool positions ``d*k .. d*k+k-1``, wrapping around),
so duplication spreads over more of the hard candidates instead of repeating the same ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experiments.errors import ConfigError
from experiments.records import Example, FinetuneItem, FinetuneSet


@dataclass(frozen=True)
class MiningContext:
    """What a miner may look at. Built from the *train* split only.

    Attributes:
        examples: the train examples, in order.
        labels: the category names, in index order.
        documents: the text the reranker sees for each category (aligned with ``labels``).
        category_vectors: ``(n_categories, dim)`` L2-normalised embeddings of ``documents``.
        query_vectors: ``(n_examples, dim)`` L2-normalised embeddings of the example inputs.
    """

    examples: Sequence[Example]
    labels: list[str]
    documents: list[str]
    category_vectors: np.ndarray
    query_vectors: np.ndarray

    def positives(self, example_index: int) -> list[int]:
        """Category indices of the example's expected labels (labels not among the categories are skipped)."""
        position = {label: index for index, label in enumerate(self.labels)}
        expected = self.examples[example_index].expected
        return [position[label] for label in expected if label in position]

    def query_scores(self, example_index: int) -> np.ndarray:
        """Cosine similarity of the example's query to every category, ``(n_categories,)``."""
        return self.category_vectors @ self.query_vectors[example_index]

    @property
    def n_categories(self) -> int:
        return len(self.labels)


def check_knobs(k: int, duplication: int, n_categories: int) -> None:
    """Fail before any work when ``k`` or ``duplication`` cannot be honoured (``k=0``: no mined negatives)."""
    if k < 0:
        raise ConfigError(f"k={k}: the number of negatives per item must be at least 0 (e.g. k=4; k=0 mines none).")
    if k >= n_categories:
        raise ConfigError(
            f"k={k}: there are only {n_categories} categories, so k must be at most {n_categories - 1} "
            "(the positive cannot be its own negative)."
        )
    if duplication < 1:
        raise ConfigError(f"duplication={duplication}: the items per train example must be at least 1.")


def uniform_draw(
    n_categories: int, banned: set[int], size: int, rng: np.random.Generator, replace: bool = False
) -> list[int]:
    """``size`` category indices drawn uniformly from those not in ``banned`` (fewer if too few remain)."""
    remaining = [index for index in range(n_categories) if index not in banned]
    if not replace:
        size = min(size, len(remaining))
    picked = rng.choice(len(remaining), size=size, replace=replace)
    return [remaining[int(position)] for position in picked]


def cyclic_window(pool: Sequence[int], k: int, draw: int) -> list[int]:
    """Pool positions ``draw*k .. draw*k+k-1``, wrapping around; the whole pool when it has at most ``k``."""
    if len(pool) <= k:
        return list(pool)
    start = (draw * k) % len(pool)
    return [pool[(start + offset) % len(pool)] for offset in range(k)]


class Miner(ABC):
    """Base class of every mining strategy.

    Args:
        strict: fail instead of topping up with random negatives when the strategy cannot fill ``k``.
    """

    #: Whether one item may hold the same negative twice (only the seed-compatible random draw does).
    allows_repeats: bool = False

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict

    @property
    def name(self) -> str:
        return type(self).__name__

    def prepare(self, context: MiningContext, seed: int) -> None:  # noqa: B027 - optional hook
        """Precompute what every draw needs (similarities, clusters). Called once per ``mine``."""

    @abstractmethod
    def draw(
        self,
        context: MiningContext,
        example_index: int,
        positives: list[int],
        k: int,
        draw: int,
        rng: np.random.Generator,
    ) -> list[int]:
        """Propose up to ``k`` negative category indices for one item, hardest first, none a positive."""

    def mine(self, context: MiningContext, k: int, duplication: int, seed: int) -> FinetuneSet:
        """Build ``duplication`` items of ``k`` negatives for every train example.

        Returns:
            The items in example order (all draws of example 0, then of example 1, ...) and how many negatives
            were topped up at random because the strategy's pool ran short.
        """
        check_knobs(k, duplication, context.n_categories)
        if k > 0:  # with k=0 every strategy gives the same empty draws, so none is asked
            self.prepare(context, seed)
        items: list[FinetuneItem] = []
        topped_up = 0
        for index, example in enumerate(context.examples):
            positives = context.positives(index)
            if not positives:
                raise ConfigError(
                    f"train example {index}: none of its labels {example.expected} is a known category; "
                    "add them to the categories file."
                )
            if k > context.n_categories - len(positives):
                # check_knobs assumes one positive; a multi-label example leaves fewer candidates.
                raise ConfigError(
                    f"k={k}: train example {index} has {len(positives)} expected labels, leaving only "
                    f"{context.n_categories - len(positives)} categories as negatives; lower k."
                )
            for draw in range(duplication):
                rng = np.random.default_rng([seed, index, draw])
                proposed = self.draw(context, index, positives, k, draw, rng) if k > 0 else []
                negatives = self._checked(proposed, positives, k)
                missing = k - len(negatives)
                if missing:
                    if self.strict:
                        raise ConfigError(
                            f"miner {self.name} found only {len(negatives)} of k={k} negatives for train "
                            f"example {index}; lower k or set miner.strict=false to top up at random."
                        )
                    negatives += uniform_draw(context.n_categories, {*positives, *negatives}, missing, rng)
                    topped_up += missing
                items.append(
                    FinetuneItem(
                        query=example.input,
                        relevant_passages=[context.documents[p] for p in positives],
                        hard_negatives=[context.documents[n] for n in negatives],
                    )
                )
        notes = {f"{self.name}.topped_up_negatives": topped_up}
        return FinetuneSet(items=items, fill_notes=notes)

    def _checked(self, proposed: list[int], positives: list[int], k: int) -> list[int]:
        banned = set(positives)
        if any(index in banned for index in proposed):
            raise AssertionError(f"{self.name} proposed a positive as a negative")
        kept = [int(index) for index in proposed]
        if not self.allows_repeats:
            kept = list(dict.fromkeys(kept))
        return kept[:k]


class RankedPoolMiner(Miner):
    """A deterministic strategy: one ranked pool per example, hardest first.

    Draw ``d`` takes pool positions ``d*k .. d*k+k-1`` (``cyclic_window``), so duplication walks further down
    the pool instead of repeating the same negatives.
    """

    def draw(
        self,
        context: MiningContext,
        example_index: int,
        positives: list[int],
        k: int,
        draw: int,
        rng: np.random.Generator,
    ) -> list[int]:
        return cyclic_window(self.pool(context, example_index, positives), k, draw)

    @abstractmethod
    def pool(self, context: MiningContext, example_index: int, positives: list[int]) -> list[int]:
        """Candidate negative indices for one example, hardest first, none in ``positives``."""
