"""Second-round negatives: the categories a model fine-tuned on a first-round set still confuses.

``miner=second_round``. A first-round miner (``first``, by default k-means) builds a fine-tuning set from the
examples it is given; a *teacher* (a bi-encoder, by default the run's reranker recipe) is fine-tuned on it; the
examples and the category documents are embedded again with the teacher; and a second miner (``then``, by
default the adversarial one) mines those vectors: each item's negatives are the categories the fine-tuned model
ranks at or near the positive, which after one fine-tune are the confusions that are left (ANCE-style).

Everything the teacher learns comes from the examples handed to ``mine``: inside a validation fit those are the
fit rows only (the pipeline mines them apart), so no validation example reaches the teacher of the set that
chooses on it. A run with validation therefore fine-tunes two teachers (on the fit rows and on all of train),
both stored by fine-tune id in ``models_dir`` and reused by a rerun. The set is deterministic where training is
(on a CPU: same seed and data, same teacher, same set).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from experiments.errors import ConfigError
from experiments.miners.base import Miner, MiningContext
from experiments.records import FinetuneSet

log = logging.getLogger(__name__)


class Fitted(Protocol):
    """What a teacher's ``fit`` returns (a reranker's ``FitResult``): the id its model is stored under."""

    @property
    def finetune_id(self) -> str: ...


@runtime_checkable
class Teacher(Protocol):
    """A model that can be fine-tuned on a set and then embeds texts (``FinetunedBiEncoder``). Described by shape:
    the miners sit below the rerankers and import none of them."""

    def fit(self, finetune_set: FinetuneSet, cache_dir: Path, seed: int) -> Fitted | None: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def unload(self) -> None: ...


class SecondRoundMiner(Miner):
    """Mine with ``then`` on the vectors of a teacher fine-tuned on ``first``'s set of the same examples.

    Each ``mine`` call: ``first`` mines (same ``k``, ``duplication`` and seed), the teacher is fine-tuned on that
    set under the same seed (``fit`` without a context: its ``epochs`` as set), the examples' queries and the
    documents are embedded with it, and the items are drawn by ``then`` from those vectors through the usual
    loop (so the contract, the top-up and the per-draw seeding are the base class's). With ``k=0`` nothing is
    mined, so no teacher is trained.

    Args:
        first: the first-round miner (any ``Miner``).
        teacher: the model fine-tuned on the first-round set (a ``Teacher``: the bi-encoder reranker).
        then: the miner that draws from the teacher's vectors (any ``Miner``; the adversarial one mines the
            teacher's own confusions).
        models_dir: where the teachers are stored by fine-tune id (the run's ``paths.models_dir``).
        strict: see ``Miner``.
    """

    def __init__(self, first: Miner, teacher: Teacher, then: Miner, models_dir: str, strict: bool = False) -> None:
        super().__init__(strict=strict)
        for name, value in (("first", first), ("then", then)):
            if not isinstance(value, Miner):
                raise ConfigError(f"SecondRoundMiner: {name}={value!r} must be a miner (a config with a _target_).")
        if not isinstance(teacher, Teacher):
            raise ConfigError(
                f"SecondRoundMiner: teacher={type(teacher).__name__} cannot embed texts; use a bi-encoder "
                "(reranker=bi_encoder_finetuned's settings)."
            )
        self.first = first
        self.teacher = teacher
        self.then = then
        self.allows_repeats = then.allows_repeats
        self.models_dir = Path(models_dir)
        self._round: tuple[int, int] = (0, 1)
        self._teacher_context: MiningContext | None = None
        #: The fine-tune id of the teacher of the last ``mine`` (None before one, or with ``k=0``).
        self.teacher_id: str | None = None

    def mine(self, context: MiningContext, k: int, duplication: int, seed: int) -> FinetuneSet:
        self._round = (k, duplication)
        self.teacher_id = None
        try:
            return super().mine(context, k, duplication, seed)
        finally:
            self._teacher_context = None

    def prepare(self, context: MiningContext, seed: int) -> None:
        """Fine-tune the teacher on ``first``'s set of these examples and embed them and the documents with it."""
        k, duplication = self._round
        first_set = self.first.mine(context, k, duplication, seed)
        fit = self.teacher.fit(first_set, self.models_dir, seed)
        self.teacher_id = fit.finetune_id if fit else None
        log.info(
            "second round: teacher %s fine-tuned on %d first-round items (%s)",
            self.teacher_id,
            len(first_set),
            self.first.name,
        )
        try:
            queries = self.teacher.encode([example.input for example in context.examples])
            categories = self.teacher.encode(context.documents)
        finally:
            self.teacher.unload()
        self._teacher_context = dataclasses.replace(context, category_vectors=categories, query_vectors=queries)
        self.then.prepare(self._teacher_context, seed)

    def draw(
        self,
        context: MiningContext,
        example_index: int,
        positives: list[int],
        k: int,
        draw: int,
        rng: np.random.Generator,
    ) -> list[int]:
        if self._teacher_context is None:
            raise RuntimeError("SecondRoundMiner.draw before prepare")
        return self.then.draw(self._teacher_context, example_index, positives, k, draw, rng)
