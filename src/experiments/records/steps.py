"""Typed records passed between pipeline steps.

Every step of the pipeline takes and returns these plain records, so a step can be tested alone and its
inputs can be hashed for caching.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Example(BaseModel):
    """One labelled query: the text to rank categories for and the label(s) that are correct."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str = Field(min_length=1)
    expected: list[str] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _input_not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("input must have text, not only spaces")
        return text

    @field_validator("expected")
    @classmethod
    def _labels_not_blank(cls, labels: list[str]) -> list[str]:
        if any(not label.strip() for label in labels):
            raise ValueError("labels must be non-empty strings")
        return labels


class Category(BaseModel):
    """A candidate document: the category label and an optional description used as extra text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""

    def document(self, with_description: bool) -> str:
        """The text the embedder and the reranker see for this category."""
        if with_description and self.description:
            return f"{self.name}: {self.description}"
        return self.name


@dataclass(frozen=True)
class DatasetSplits:
    """What a dataset provides: train and eval examples and the candidate categories.

    Eval examples never reach mining or training: only ``train`` is handed to those steps.

    Attributes:
        group_key: the ``Example.metadata`` key that groups examples (a merchant, say): holdouts carved from
            train keep whole groups on one side, and the run warns when eval shares groups with train.
            None = every example stands alone.
        query_fields: the query lines of transaction rows the examples were formatted with, when a subset
            (``dataset.query_fields``); None = the full seven-line layout.
    """

    name: str
    train: list[Example]
    eval: list[Example]
    categories: list[Category]
    source: dict[str, Any] = field(default_factory=dict)
    group_key: str | None = None
    query_fields: list[str] | None = None

    @property
    def category_names(self) -> list[str]:
        return [category.name for category in self.categories]

    def digest(self) -> str:
        """A content hash of the examples and categories (stable across runs and machines)."""
        payload = {
            "train": [example.model_dump(mode="json") for example in self.train],
            "eval": [example.model_dump(mode="json") for example in self.eval],
            "categories": [category.model_dump(mode="json") for category in self.categories],
        }
        return sha256_json(payload)


class FinetuneItem(BaseModel):
    """One fine-tuning row in Cohere's ``reranker-finetune-input`` shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: str = Field(min_length=1)
    relevant_passages: list[str] = Field(min_length=1)
    hard_negatives: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _negatives_are_not_relevant(self) -> FinetuneItem:
        clash = set(self.relevant_passages) & set(self.hard_negatives)
        if clash:
            raise ValueError(f"hard negatives include relevant passages: {sorted(clash)}")
        return self


@dataclass(frozen=True)
class FinetuneSet:
    """The mined fine-tuning set and how it was made.

    ``fill_notes`` records, per strategy, how many negatives had to be topped up when a miner could not
    fill ``k`` from its own pool (see ``experiments.miners.base``).
    """

    items: list[FinetuneItem]
    fill_notes: dict[str, int] = field(default_factory=dict)

    def to_jsonl(self) -> str:
        return "".join(item.model_dump_json() + "\n" for item in self.items)

    def digest(self) -> str:
        return hashlib.sha256(self.to_jsonl().encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Candidates:
    """What the first retrieval stage returns for one query, best first.

    Attributes:
        labels: category names.
        texts: the document text of each category (what a reranker reads).
        scores: cosine similarity of the query to each document.
    """

    labels: list[str]
    texts: list[str]
    scores: list[float]

    def ranked(self) -> RankedList:
        """The candidates as a ranking in retrieval order (the embedding baseline)."""
        return RankedList(labels=list(self.labels), scores=list(self.scores))

    def reordered(self, scores: Sequence[float]) -> RankedList:
        """The candidates sorted by ``scores`` (aligned with them), highest first; ties keep retrieval order."""
        return ranked_by(self.labels, scores)


def nearest(
    query_vectors: np.ndarray, vectors: np.ndarray, labels: Sequence[str], texts: Sequence[str], limit: int | None
) -> list[Candidates]:
    """Each query's ``limit`` nearest documents (all of them for None) by cosine similarity, exactly: the flat
    search a vector store makes, for L2-normalised vectors (ties keep the documents' order)."""
    similarity = np.asarray(query_vectors, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :limit]
    return [
        Candidates(
            labels=[labels[i] for i in row], texts=[texts[i] for i in row], scores=[float(s) for s in row_scores[row]]
        )
        for row, row_scores in zip(order, similarity, strict=True)
    ]


def ranked_by(labels: Sequence[str], scores: Sequence[float]) -> RankedList:
    """``labels`` sorted by ``scores`` (aligned with them), highest first; ties keep the given order."""
    order = sorted(range(len(labels)), key=lambda position: -scores[position])
    return RankedList(labels=[labels[p] for p in order], scores=[float(scores[p]) for p in order])


@dataclass(frozen=True)
class RankedList:
    """The ranked categories returned for one query, best first, with the scores that ranked them."""

    labels: list[str]
    scores: list[float]


def sha256_json(payload: Any) -> str:
    """Hash a JSON-serialisable payload with sorted keys, so equal content gives an equal digest."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unique(values: Sequence[str]) -> list[str]:
    """The values in first-seen order, without repeats."""
    return list(dict.fromkeys(values))
