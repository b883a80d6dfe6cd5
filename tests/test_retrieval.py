"""The retrieval room: LanceDB search, one search per eval query, and the LanceDB ``.rerank()`` adapter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from experiments.errors import ConfigError
from experiments.evaluation.evaluate import run_queries, summarize
from experiments.records import Candidates, Category, Example
from experiments.rerankers.base import Reranker
from experiments.retrieval.lancedb import ALL, LanceDBRetriever
from experiments.retrieval.lancedb_reranker import LanceDBReranker

CATEGORIES = [Category(name=name, description="") for name in ("aa", "a", "aaaa", "aaa")]
VECTORS = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]], dtype=np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)


class ByLength(Reranker):
    """Scores longer documents higher: a reranker whose order is easy to predict."""

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        return [float(len(document)) for document in documents]


class Distinct(Reranker):
    """Scores that depend on the query and the document and never tie."""

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        return [float((len(document) * 7 + len(query) * 3) % 11) for document in documents]


class CountingRetriever(LanceDBRetriever):
    searches = 0

    def search(self, vector: np.ndarray) -> Candidates:
        self.searches += 1
        return super().search(vector)


@pytest.fixture
def retriever(tmp_path: Path) -> CountingRetriever:
    built = CountingRetriever(str(tmp_path / "lance"), top_k=3, search_above=0)
    built.build(CATEGORIES, VECTORS, model_key="test")
    return built


def test_search_returns_top_k_by_cosine(retriever: CountingRetriever) -> None:
    candidates = retriever.search(np.array([1.0, 0.0], dtype=np.float32))
    assert candidates.labels == ["aa", "a", "aaaa"]
    assert candidates.texts == ["aa", "a", "aaaa"]
    assert candidates.scores == pytest.approx([1.0, float(VECTORS[1, 0]), float(VECTORS[2, 0])], abs=1e-6)


def test_top_k_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top_k=0"):
        LanceDBRetriever(str(tmp_path), top_k=0)


@pytest.mark.parametrize("top_k", [ALL, 4, 9])
def test_without_a_first_stage_the_reranker_ranks_as_a_full_search_plus_rescoring(tmp_path: Path, top_k) -> None:
    """``top_k: all`` (or a top_k that covers every document) rescores every document: the same ranking as
    searching all of them and rescoring, and the baseline keeps its full search (a 100% candidate ceiling)."""
    everything = LanceDBRetriever(str(tmp_path / "all"), top_k=top_k, search_above=0)
    everything.build(CATEGORIES, VECTORS, model_key="test")
    assert everything.limit is None
    full = LanceDBRetriever(str(tmp_path / "full"), top_k=len(CATEGORIES), search_above=0)
    full.build(CATEGORIES, VECTORS, model_key="test")
    examples = [Example(input=f"q{i}", expected=["aaa"]) for i in range(3)]
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    reranker = Distinct()
    ours = run_queries(examples, vectors, everything, reranker, progress=False)
    for result, vector in zip(ours, vectors, strict=True):
        candidates = full.search(vector)
        assert result.reranked == candidates.reordered(reranker.score(result.example.input, candidates.texts))
        assert result.baseline == candidates.ranked()
    assert summarize(ours, resamples=10).candidate_recall == 1.0


def test_a_small_document_set_is_rescored_whole_by_default(tmp_path: Path) -> None:
    small = LanceDBRetriever(str(tmp_path), top_k=3, search_above=4)
    small.build(CATEGORIES, VECTORS, model_key="test")
    assert small.limit is None
    assert (small.limit_for(5), small.limit_for(4)) == (3, None)
    assert LanceDBRetriever(str(tmp_path)).search_above == 256


@pytest.mark.parametrize("bad", ["some", 0, -1, 2.5, True])
def test_top_k_is_a_positive_number_or_all(tmp_path: Path, bad) -> None:
    with pytest.raises(ConfigError, match=r"top_k=.*'all'"):
        LanceDBRetriever(str(tmp_path), top_k=bad)


def test_search_above_is_a_whole_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search_above=-1"):
        LanceDBRetriever(str(tmp_path), search_above=-1)


def test_evaluation_searches_once_and_rescores_those_candidates(retriever: CountingRetriever) -> None:
    examples = [Example(input="q1", expected=["aaaa"]), Example(input="q2", expected=["a"])]
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    results = run_queries(examples, vectors, retriever, ByLength(), progress=False)
    assert retriever.searches == len(examples)
    first = results[0]
    assert first.baseline.labels == ["aa", "a", "aaaa"]
    assert first.reranked.labels == ["aaaa", "aa", "a"]  # the same three candidates, by length
    assert first.reranked.scores == [4.0, 2.0, 1.0]


def test_lancedb_rerank_path_agrees_with_the_pipeline(retriever: CountingRetriever) -> None:
    """Users who call LanceDB directly get the order the pipeline measures."""
    vector = np.array([0.6, 0.4], dtype=np.float32)
    builder = retriever.table.search(vector, query_type="vector").distance_type("cosine").limit(3)  # type: ignore[union-attr]
    rows = builder.rerank(LanceDBReranker(ByLength()), query_string="q").to_list()
    pipeline = retriever.search(vector).reordered(ByLength().score("q", retriever.search(vector).texts))
    assert [row["category"] for row in rows] == pipeline.labels
    assert [row["_relevance_score"] for row in rows] == pipeline.scores
    assert all("_distance" in row for row in rows)


def test_ties_keep_retrieval_order() -> None:
    candidates = Candidates(labels=["x", "y", "z"], texts=["x", "y", "z"], scores=[0.9, 0.8, 0.7])
    assert candidates.reordered([1.0, 2.0, 1.0]).labels == ["y", "x", "z"]


def test_lancedb_full_text_and_hybrid_searches_rerank_too(retriever: CountingRetriever) -> None:
    table = retriever.table
    table.create_fts_index("text", use_tantivy=False, replace=True)
    fts = table.search("aaa", query_type="fts").limit(3).rerank(LanceDBReranker(ByLength())).to_list()
    assert [row["text"] for row in fts] == sorted((row["text"] for row in fts), key=len, reverse=True)
    assert all("_score" in row for row in fts)
    hybrid = (
        table.search(query_type="hybrid")
        .vector(np.array([1.0, 0.0], dtype=np.float32))
        .text("aaa")
        .limit(4)
        .rerank(LanceDBReranker(ByLength()))
        .to_list()
    )
    texts = [row["text"] for row in hybrid]
    assert len(texts) == len(set(texts))  # merged without duplicates
    assert [row["_relevance_score"] for row in hybrid] == [float(len(text)) for text in texts]
    assert texts == sorted(texts, key=len, reverse=True)


def test_without_a_first_stage_the_ranking_is_lancedb_s_exact_cosine_search(tmp_path: Path) -> None:
    """Ranking every document is done in memory; it equals LanceDB's own flat cosine search of the same table
    (every query's whole order and its scores), and the table is written only when someone asks for it."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    categories = [Category(name=f"c{i}", description="") for i in range(len(vectors))]
    everything = LanceDBRetriever(str(tmp_path / "lance"), top_k=ALL)
    everything.build(categories, vectors, model_key="test")
    assert not (tmp_path / "lance").exists()  # nothing searched it: no table yet
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for query in queries:
        ours = everything.search(query)
        rows = everything.table.search(query).distance_type("cosine").limit(len(categories)).to_list()
        assert ours.labels == [row["category"] for row in rows]
        assert ours.scores == pytest.approx([1.0 - row["_distance"] for row in rows], abs=1e-6)
    assert (tmp_path / "lance").is_dir()


def test_a_run_without_a_first_stage_does_not_load_lancedb(tmp_path: Path) -> None:
    """LanceDB takes 1.4 s to import: a warm rerun of the bundled set (31 categories) must not pay for it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from experiments.records import Category\n"
        "from experiments.retrieval.lancedb import LanceDBRetriever\n"
        "retriever = LanceDBRetriever(sys.argv[1])\n"
        "retriever.build([Category(name='a'), Category(name='b')], np.eye(2, dtype=np.float32), model_key='m')\n"
        "assert retriever.search(np.array([0.0, 1.0], dtype=np.float32)).labels == ['b', 'a']\n"
        "assert 'lancedb' not in sys.modules, 'lancedb was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
