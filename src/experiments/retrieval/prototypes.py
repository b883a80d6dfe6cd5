"""Category documents enriched with prototypes: a few typical labelled train inputs after each description.

``retrieval.prototypes=3``. A category's name and description say what it is for; its train examples say what
it looks like in the data (which departments, cards and merchants book it). Each document gets the ``n`` train
inputs of its label nearest that label's centroid under the base embedder, one per line, so the embedding
baseline, the miners and the reranker all read them.

Built from train rows only: the pipeline builds the run's documents from all of train and, for a validation fit,
documents from the fit rows alone, so a validation example never appears in the documents that choose on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments.errors import ConfigError
from experiments.records import DatasetSplits, Example
from experiments.retrieval.base import Retriever

#: Separates the description from the prototypes, and the lines of one multi-line input within its prototype.
HEADER = "\nTypical:"
LINE_JOIN = " | "
#: A prototype's longest text: the models read 128 tokens of a whole document (about 500 characters), so a longer
#: input (a multi-megabyte field) would only cost tokenizing in every training batch and bytes in the served model.
MAX_PROTOTYPE_CHARS = 400


def check_prototypes(value: object) -> int:
    """``prototypes`` as a whole number of at least 0, or a ``ConfigError`` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"retrieval.prototypes={value!r} must be a whole number of at least 0 (0 = documents without "
            "prototypes; e.g. retrieval.prototypes=3)."
        )
    return value


def one_line(text: str) -> str:
    """A multi-line input on one line: its non-empty lines joined by ``LINE_JOIN``, cut to ``MAX_PROTOTYPE_CHARS``
    (``…`` marks a cut)."""
    joined = LINE_JOIN.join(line.strip() for line in text[: 4 * MAX_PROTOTYPE_CHARS].splitlines() if line.strip())
    return joined if len(joined) <= MAX_PROTOTYPE_CHARS else joined[: MAX_PROTOTYPE_CHARS - 1] + "…"


def prototypes(labels: Sequence[str], examples: Sequence[Example], vectors: np.ndarray, n: int) -> dict[str, list[str]]:
    """Per label, the distinct inputs of up to ``n`` of its examples (by first expected label) nearest the mean of
    their unit ``vectors``, nearest first, ties by example order. Labels without examples are left out."""
    rows: dict[str, list[int]] = {}
    for position, example in enumerate(examples):
        rows.setdefault(example.expected[0], []).append(position)
    picked: dict[str, list[str]] = {}
    for label in labels:
        members = rows.get(label)
        if not members or n == 0:
            continue
        own = vectors[members]
        closeness = own @ own.mean(axis=0)
        texts: list[str] = []
        for position in np.argsort(-closeness, kind="stable"):
            text = one_line(examples[members[int(position)]].input)
            if text not in texts:
                texts.append(text)
            if len(texts) == n:
                break
        picked[label] = texts
    return picked


def category_documents(
    retrieval: Retriever, splits: DatasetSplits, train_vectors: np.ndarray, rows: Sequence[int]
) -> list[str]:
    """The category documents; with ``retrieval.prototypes``, each followed by typical inputs drawn from the train
    positions ``rows`` only (all of train for the run, the fit rows for a validation fit)."""
    examples = [splits.train[row] for row in rows]
    documents = retrieval.documents(splits.categories)
    return enrich(documents, splits.category_names, examples, train_vectors[list(rows)], retrieval.prototypes)


def enrich(
    documents: Sequence[str], labels: Sequence[str], examples: Sequence[Example], vectors: np.ndarray, n: int
) -> list[str]:
    """``documents`` (aligned with ``labels``) each followed by its label's prototypes, one per line."""
    if n == 0:
        return list(documents)
    picked = prototypes(labels, examples, vectors, n)
    return [
        document + HEADER + "".join(f"\n{text}" for text in picked[label]) if picked.get(label) else document
        for document, label in zip(documents, labels, strict=True)
    ]
