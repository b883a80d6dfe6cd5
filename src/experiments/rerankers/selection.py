"""Choosing on the validation split: how well a scoring ranks every category for the held-out train queries.

Selection scores rank *all* categories (not the first stage's candidates), so a choice does not depend on the
retriever. The criterion is ``(mrr@1, mrr@5)`` compared in that order: the primary metric, with the deeper
ranking breaking ties. Only ``FitContext.validation`` examples are ever scored here — never eval examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from experiments.metrics import DEFAULT_METRIC, score_query
from experiments.records import Example

OptionT = TypeVar("OptionT")

#: What a choice is judged by on the validation split, in order (later metrics break ties).
CRITERION = (DEFAULT_METRIC, "mrr@5")


def quality(scores: np.ndarray, examples: Sequence[Example], labels: Sequence[str]) -> tuple[float, ...]:
    """The criterion for a ``(queries × labels)`` score matrix, aligned with ``examples`` and ``labels``.

    Ties keep the order of ``labels`` (a stable sort), so the result is deterministic.
    """
    if not examples:
        raise ValueError("no validation examples to select on")
    totals = dict.fromkeys(CRITERION, 0.0)
    for row, example in zip(scores, examples, strict=True):
        order = np.argsort(-np.asarray(row, dtype=np.float64), kind="stable")
        metrics = score_query([labels[int(position)] for position in order], example.expected)
        for name in CRITERION:
            totals[name] += metrics[name]
    return tuple(round(totals[name] / len(examples), 6) for name in CRITERION)


def best(options: Sequence[tuple[OptionT, tuple[float, ...]]]) -> OptionT:
    """The option with the highest criterion; the earliest one on a tie (list cheaper options first)."""
    chosen, top = options[0]
    for option, value in options[1:]:
        if value > top:
            chosen, top = option, value
    return chosen
