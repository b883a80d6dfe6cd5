"""Prototype-enriched category documents: typical train inputs, and never a validation or eval example."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import app, pipeline
from experiments.errors import ConfigError
from experiments.records import Example
from experiments.retrieval.lancedb import LanceDBRetriever
from experiments.retrieval.prototypes import HEADER, MAX_PROTOTYPE_CHARS, enrich, one_line, prototypes
from experiments.schema import read_knobs
from experiments.tracking.trackers import Trackers


def unit_rows(rows: list[list[float]]) -> np.ndarray:
    array = np.array(rows, dtype=float)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_the_prototypes_are_the_inputs_nearest_their_labels_centroid() -> None:
    examples = [
        Example(input="a near\nline two", expected=["A"]),
        Example(input="a far", expected=["A"]),
        Example(input="a nearest", expected=["A"]),
        Example(input="b only", expected=["B"]),
    ]
    vectors = unit_rows([[1, 0.2], [0, 1], [1, 0.3], [1, 1]])  # A's centroid leans to the first axis
    assert prototypes(["A", "B", "C"], examples, vectors, 2) == {
        "A": ["a nearest", "a near | line two"],
        "B": ["b only"],
    }
    documents = enrich(["A: doc", "B: doc", "C: doc"], ["A", "B", "C"], examples, vectors, 2)
    assert documents == [f"A: doc{HEADER}\na nearest\na near | line two", f"B: doc{HEADER}\nb only", "C: doc"]
    assert enrich(["A: doc"], ["A"], examples, vectors, 0) == ["A: doc"]


def test_repeated_inputs_count_once() -> None:
    examples = [Example(input="same", expected=["A"])] * 3 + [Example(input="other", expected=["A"])]
    assert prototypes(["A"], examples, unit_rows([[1, 0]] * 3 + [[0.9, 0.1]]), 2) == {"A": ["same", "other"]}


@given(
    st.lists(st.text(min_size=1, max_size=200).filter(str.strip), min_size=1, max_size=20),
    st.integers(min_value=0, max_value=5),
)
@settings(max_examples=60, deadline=None)
def test_odd_inputs_give_at_most_n_single_line_prototypes_of_their_own_label(texts: list[str], n: int) -> None:
    examples = [Example(input=text, expected=["A" if i % 2 else "B"]) for i, text in enumerate(texts)]
    vectors = unit_rows([[1.0, (i % 7) / 7 + 0.1] for i in range(len(texts))])
    picked = prototypes(["A", "B"], examples, vectors, n)
    for label, chosen in picked.items():
        own = {one_line(example.input) for example in examples if example.expected == [label]}
        assert len(chosen) <= n and len(set(chosen)) == len(chosen) and set(chosen) <= own
        assert all("\n" not in text and "\r" not in text for text in chosen)


def test_a_huge_input_makes_a_short_prototype() -> None:
    """A multi-megabyte field (odd line separators included) becomes one bounded line, not a 5 MB document."""
    huge = "Name : Acme\u2028" + "é" * 5_000_000 + "\nCard: X"
    examples = [Example(input=huge, expected=["A"]), Example(input="short", expected=["A"])]
    (document,) = enrich(["A: doc"], ["A"], examples, unit_rows([[1, 0], [1, 0.01]]), 2)
    (prototype,) = [line for line in document.splitlines() if line.startswith("Name")]
    assert len(prototype) == MAX_PROTOTYPE_CHARS and prototype.startswith("Name : Acme | éé") and prototype[-1] == "…"
    assert len(document) < 3 * MAX_PROTOTYPE_CHARS


def test_a_bad_prototype_count_is_a_config_error(tmp_path) -> None:
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ConfigError, match=r"retrieval\.prototypes="):
            LanceDBRetriever(str(tmp_path), prototypes=bad)  # type: ignore[arg-type]


def test_validation_documents_hold_no_validation_example(make_cfg, tmp_path) -> None:
    """The run's documents draw on all of train (never eval); a validation fit's on its fit rows only."""
    cfg = make_cfg("retrieval.prototypes=3", "trackers=none", "log_model=false")
    parts = pipeline.Components(**{group: app.build(cfg, group) for group in app.GROUPS}, trackers=Trackers())
    knobs = read_knobs(app.resolved(cfg))
    splits = parts.dataset.load()
    vectors = pipeline.embed(parts.embedder, parts.retrieval, splits)
    held_out = pipeline.validation_holdout(splits, knobs)
    documents = pipeline.validation_documents(parts, splits, vectors, held_out)
    assert documents is not None
    lines = lambda texts: {line for text in texts for line in text.splitlines()[2:]}  # noqa: E731
    validation = {one_line(splits.train[row].input) for row in held_out}
    fit_rows = {one_line(splits.train[row].input) for row in range(len(splits.train)) if row not in held_out}
    assert lines(documents[0]) and lines(documents[0]) <= fit_rows and not lines(documents[0]) & validation
    assert lines(vectors.documents) & validation  # the run's own documents may use them: it is fitted on all of train
    assert not lines(vectors.documents) & {one_line(example.input) for example in splits.eval}
    context = pipeline.fit_context(parts.miner, splits, vectors, knobs, held_out, documents)
    assert context.validation is not None and context.selection_documents() == dict(
        zip(splits.category_names, documents[0], strict=True)
    )
    passages = {text for item in context.validation.fit_set.items for text in item.relevant_passages}
    assert passages <= set(documents[0])  # the validation fit trains on its own documents


def test_a_run_with_prototypes_trains_chooses_and_ships_them(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "retrieval.prototypes=2", "reranker.select_epochs=true", "trackers=none", reranker="bi_encoder_finetuned"
    )
    outcome = app.run(cfg, tmp_path / "outputs" / "runs" / "a")
    assert outcome.fit is not None and outcome.fit.selection.epochs >= 1
    assert outcome.categoriser is not None and any(HEADER in text for text in outcome.categoriser.documents)
    assert all(HEADER in item.relevant_passages[0] for item in outcome.finetune_set.items)
