"""Batch composition for the fine-tuned bi-encoder: ``reranker.batches=distinct_positives`` or ``by_length``.

With random batches, two rows of one batch often share their positive category (a batch of 32 rows over ~30
categories almost always does). The loss masks those copies (``DistinctMNRL``), so each such row loses a
negative, and the batch holds fewer distinct categories. ``DistinctPositivesBatchSampler`` builds batches in
which every row has a different positive, so a batch of ``B`` rows always offers ``B - 1`` distinct in-batch
negatives per row.

A batch's queries are padded to its longest: random batches of 32 Banking77 queries hold 2.9x their real tokens
(one long query pads 31 short ones). ``LengthGroupedBatchSampler`` (as ``group_by_length`` does in transformers'
trainer) cuts each shuffled run of ``MEGABATCH`` batches into batches of similar query length, then shuffles the
batches, so every epoch still visits each row once in a seeded random order. The documents of a batch are the
categories, whatever the queries' lengths, so the in-batch negatives stay as random as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

if TYPE_CHECKING:
    from datasets import Dataset

#: The dataset column whose value names a row's positive category (see ``mnrl_rows``).
POSITIVE_COLUMN = "positive"
#: The dataset column holding a row's query.
QUERY_COLUMN = "query"
#: Batches per shuffled run that ``LengthGroupedBatchSampler`` sorts by query length.
MEGABATCH = 8


def pack_distinct(keys: list[str], order: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """Cut ``order`` into batches of at most ``batch_size`` rows, no two with the same key.

    Greedy, in order: each batch takes the first remaining rows whose key it does not hold yet, so batches are
    full while at least ``batch_size`` distinct keys remain; the tail may be smaller (dropped with
    ``drop_last``). Every row lands in exactly one batch unless it is in a dropped tail batch.
    """
    remaining = dict.fromkeys(order)
    batches: list[list[int]] = []
    while remaining:
        batch: list[int] = []
        seen: set[str] = set()
        for index in remaining:
            if keys[index] not in seen:
                batch.append(index)
                seen.add(keys[index])
                if len(batch) == batch_size:
                    break
        for index in batch:
            del remaining[index]
        if len(batch) == batch_size or not drop_last:
            batches.append(batch)
    return batches


class _EpochBatchSampler(DefaultBatchSampler):
    """Batches packed once per epoch from a shuffle seeded by ``seed + epoch`` (so ``__len__``, which the trainer
    uses for its schedule, is exact); subclasses say which dataset column they read and how they pack."""

    column = POSITIVE_COLUMN

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        if self.column not in dataset.column_names:
            raise ValueError(f"{type(self).__name__} needs a {self.column!r} column; got {dataset.column_names}.")
        self.values: list[str] = list(dataset[self.column])
        self._packed: tuple[int, list[list[int]]] | None = None

    def _pack(self, order: list[int], shuffle: torch.Generator) -> list[list[int]]:
        raise NotImplementedError

    def _batches(self) -> list[list[int]]:
        if self._packed is None or self._packed[0] != self.epoch:
            shuffle = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.values), generator=shuffle).tolist()
            self._packed = (self.epoch, self._pack(order, shuffle))
        return self._packed[1]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())


class DistinctPositivesBatchSampler(_EpochBatchSampler):
    """Batches in which no two rows share a positive category; the order is reshuffled every epoch.

    The batches of an epoch depend only on ``seed + epoch`` and the data, so ``__len__`` (which the trainer uses
    for its schedule) is exact: it packs the epoch's batches once and caches them.

    Args:
        dataset: rows with a ``positive`` column (``mnrl_rows``).
        batch_size: the most rows per batch.
        drop_last: drop batches smaller than ``batch_size``.
        valid_label_columns: unused (the rows have no label column); part of the sampler interface.
        generator: unused; the shuffle uses its own generator seeded by ``seed + epoch``.
        seed: the training seed.
    """

    def _pack(self, order: list[int], shuffle: torch.Generator) -> list[list[int]]:
        return pack_distinct(self.values, order, self.batch_size, self.drop_last)


def group_by_length(lengths: list[int], order: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """Cut ``order`` into runs of ``MEGABATCH * batch_size`` rows, sort each run by length (longest first) and cut
    it into batches of ``batch_size``; a short last batch is dropped with ``drop_last``. Every row lands in exactly
    one batch unless it is in a dropped tail batch."""
    batches: list[list[int]] = []
    run = MEGABATCH * batch_size
    for start in range(0, len(order), run):
        members = sorted(order[start : start + run], key=lambda index: -lengths[index])
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class LengthGroupedBatchSampler(_EpochBatchSampler):
    """Batches of queries of similar length (fewer padded tokens per step), in a seeded random order per epoch.

    The batches of an epoch depend only on ``seed + epoch`` and the data (``__len__`` is exact). Lengths are
    counted in characters, a close proxy of tokens that needs no tokenizer.

    Args:
        dataset: rows with a ``query`` column (``mnrl_rows``).
        batch_size: the most rows per batch.
        drop_last: drop a last batch smaller than ``batch_size``.
        valid_label_columns: unused (the rows have no label column); part of the sampler interface.
        generator: unused; the shuffles use their own generator seeded by ``seed + epoch``.
        seed: the training seed.
    """

    column = QUERY_COLUMN

    def _pack(self, order: list[int], shuffle: torch.Generator) -> list[list[int]]:
        batches = group_by_length([len(query) for query in self.values], order, self.batch_size, self.drop_last)
        return [batches[i] for i in torch.randperm(len(batches), generator=shuffle)]
