"""Typed records, on the ground floor so every floor can hold them: the records passed between a run's steps
(``steps``: examples, categories, the fine-tuning set), the run folder's files (``run``: ``metrics.json``,
``per_query.jsonl``) and a sweep's files (``sweep``: ``report.json``, a job's ``failed.json``).

The step records are re-exported here, as ``from experiments.records import Example`` has always read.
"""

from experiments.records.steps import (
    Candidates,
    Category,
    DatasetSplits,
    Example,
    FinetuneItem,
    FinetuneSet,
    RankedList,
    nearest,
    ranked_by,
    sha256_json,
    unique,
)

__all__ = [
    "Candidates",
    "Category",
    "DatasetSplits",
    "Example",
    "FinetuneItem",
    "FinetuneSet",
    "RankedList",
    "nearest",
    "ranked_by",
    "sha256_json",
    "unique",
]
