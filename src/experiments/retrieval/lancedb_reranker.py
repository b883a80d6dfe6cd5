"""Plug any of our rerankers into LanceDB's query builder, for users who query LanceDB directly.

``table.search(vector).limit(25).rerank(LanceDBReranker(reranker), query_string=query).to_list()`` returns
the candidates sorted by the reranker's score (``_relevance_score``, float32, descending). With the default
``return_score="all"`` the vector search's ``_distance`` column stays next to it. The pipeline itself does not
use this path: it searches once (``LanceDBRetriever.search``) and rescores those candidates.
"""

from __future__ import annotations

import pyarrow as pa
from lancedb.rerankers import Reranker as LanceReranker

from experiments.rerankers.base import Reranker

SCORE_COLUMN = "_relevance_score"


class LanceDBReranker(LanceReranker):
    """A LanceDB reranker that scores each result row's ``column`` text with one of our rerankers.

    Args:
        reranker: any ``experiments.rerankers.base.Reranker``, ready to score (fitted if it trains).
        column: the table column holding the document text the reranker reads.
        return_score: ``all`` keeps the search scores next to ``_relevance_score``; ``relevance`` drops them
            (LanceDB's convention).
    """

    def __init__(self, reranker: Reranker, column: str = "text", return_score: str = "all") -> None:
        super().__init__(return_score)
        self.reranker = reranker
        self.column = column

    def __str__(self) -> str:
        return f"LanceDBReranker({self.reranker.name})"

    def rerank_vector(self, query: str, vector_results: pa.Table) -> pa.Table:
        """Rescore vector-search results; ``_distance`` is kept unless ``return_score="relevance"``."""
        return self._keep_relevance_score(self._rescored(vector_results, query))

    def rerank_fts(self, query: str, fts_results: pa.Table) -> pa.Table:
        """Rescore full-text-search results; ``_score`` is kept unless ``return_score="relevance"``."""
        return self._keep_relevance_score(self._rescored(fts_results, query))

    def rerank_hybrid(self, query: str, vector_results: pa.Table, fts_results: pa.Table) -> pa.Table:
        """Merge vector and full-text results (without duplicates), then rescore them all."""
        if self.score == "all":
            combined = self._merge_and_keep_scores(vector_results, fts_results)
        else:
            combined = self.merge_results(vector_results, fts_results)
        return self._keep_relevance_score(self._rescored(combined, query))

    def _rescored(self, results: pa.Table, query: str) -> pa.Table:
        if SCORE_COLUMN in results.column_names:
            results = results.drop_columns([SCORE_COLUMN])
        results = self._handle_empty_results(results)
        if len(results) == 0:
            return results
        if self.column not in results.column_names:
            raise ValueError(
                f"{self}: the search results have no {self.column!r} column (columns: {results.column_names}); "
                "set column= to the column holding the document text."
            )
        scores = self.reranker.score(query, results[self.column].to_pylist())
        results = results.append_column(SCORE_COLUMN, pa.array(scores, type=pa.float32()))
        # Arrow's sort is stable: equal scores keep the search order.
        return results.sort_by([(SCORE_COLUMN, "descending")])
