"""Group-aware holdouts: no group (a merchant, say) ends up on both sides of a split.

Used twice: the bundled data set's train/eval split (``dataset.split=merchant``) and the validation split the
pipeline carves from train for every model choice (``validation_fraction``). With no group key every row is
its own group, which gives a label-stratified random holdout.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from experiments.records import DatasetSplits, Example


def group_holdout(labels: Sequence[str], groups: Sequence[str], fraction: float, seed: int) -> set[int]:
    """Positions to hold out: about ``fraction`` of the rows, whole groups only, covering as many labels as possible.

    Contract: every group lies wholly inside or outside the holdout; a label never loses its last row outside
    the holdout; first each label gets one held-out group where that is possible (rarest labels first), then
    groups in seeded random order fill the holdout up to ``round(len(labels) * fraction)`` rows. The same
    arguments give the same positions.

    Args:
        labels: the (first) label of each row.
        groups: the group of each row, aligned with ``labels``.
        fraction: target share of held-out rows, in (0, 1).
        seed: seed of the group order.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        members[group].append(position)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    target = round(len(labels) * fraction)
    kept = Counter(labels)  # rows of each label still outside the holdout
    held: set[int] = set()
    taken: set[str] = set()

    def take(group: str, limit: int) -> bool:
        rows = members[group]
        need = Counter(labels[position] for position in rows)
        if group in taken or len(held) + len(rows) > limit or any(kept[lab] <= n for lab, n in need.items()):
            return False
        taken.add(group)
        held.update(rows)
        kept.subtract(need)
        return True

    covered: set[str] = set()
    for label in sorted(set(labels), key=lambda name: (Counter(labels)[name], name)):
        if label in covered:
            continue
        for group in order:
            if any(labels[p] == label for p in members[group]) and take(group, max(target, 1)):
                covered.update(labels[p] for p in members[group])
                break
    for group in order:
        if len(held) >= target:
            break
        take(group, target)
    return held


def holdout(examples: Sequence[Example], group_key: str | None, fraction: float, seed: int) -> set[int]:
    """``group_holdout`` over examples, grouped by ``metadata[group_key]`` (each row alone when None)."""
    labels = [example.expected[0] for example in examples]
    groups = [group_of(example, group_key, position) for position, example in enumerate(examples)]
    return group_holdout(labels, groups, fraction, seed)


def group_of(example: Example, group_key: str | None, position: int) -> str:
    """The example's group: ``metadata[group_key]``, or a group of its own when there is no key."""
    if group_key is None:
        return f"#row{position}"
    return str(example.metadata.get(group_key, f"#row{position}"))


def eval_groups_in_train(splits: DatasetSplits) -> int:
    """How many eval queries share a group (``splits.group_key``) with a train query; 0 without a key."""
    if splits.group_key is None:
        return 0
    seen = {example.metadata.get(splits.group_key) for example in splits.train} - {None}
    return sum(1 for example in splits.eval if example.metadata.get(splits.group_key) in seen)


def eval_in_train(splits: DatasetSplits) -> int:
    """How many eval queries are also train queries (their scores are optimistic)."""
    train_inputs = {example.input for example in splits.train}
    return sum(1 for example in splits.eval if example.input in train_inputs)
