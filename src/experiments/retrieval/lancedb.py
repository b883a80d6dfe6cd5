"""Categories in a LanceDB table, searched by cosine similarity: ``retrieval=lancedb``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from experiments.errors import ConfigError
from experiments.records import Candidates, Category, nearest, sha256_json
from experiments.retrieval.prototypes import check_prototypes

log = logging.getLogger(__name__)


def holds(table: lancedb.table.Table, data: pa.Table) -> bool:
    """Whether a stored table has exactly ``data``'s rows (a table read from disk is checked before reuse: one
    copied under the name, or damaged, is not trusted); a table that cannot be read does not."""
    try:
        stored = table.to_arrow().select(data.column_names)
        return stored.num_rows == data.num_rows and stored.equals(data.cast(stored.schema), check_metadata=False)
    except Exception:  # a damaged data file, or another table's columns
        return False


if TYPE_CHECKING:
    import lancedb


#: ``top_k`` value meaning "every document": no first-stage search, the reranker scores them all.
ALL = "all"


class LanceDBRetriever:
    """Categories stored in LanceDB (``category``, ``text``, ``description``, ``vector``), searched by cosine.

    Args:
        uri: a local folder or any LanceDB URI (object storage, LanceDB Cloud).
        top_k: candidates returned by vector search (the seed used 25), or ``all``.
        with_descriptions: embed and rerank ``"name: description"`` instead of the bare name.
        search_above: vector search only narrows the candidates when there are more documents than this; a
            smaller set (the bundled 31 categories) is rescored whole. A first pass that drops a handful of
            documents costs a forward pass per query and caps the reranker's recall; 0 = always search.
        prototypes: how many typical train inputs follow each category's description
            (``experiments.retrieval.prototypes``; the pipeline builds them from train rows only); 0 = none.

    The reranker scores every document (``limit`` is None) when ``top_k`` is ``all``, when ``top_k`` is at
    least the number of documents, or when there are at most ``search_above`` documents.

    After ``build``, ``table`` is the LanceDB table itself, for users who query it directly, e.g.
    ``retriever.table.search(v).limit(25).rerank(LanceDBReranker(r), query_string=q)``
    (see ``experiments.retrieval.lancedb_reranker``).
    """

    def __init__(
        self,
        uri: str,
        top_k: int | str = 25,
        with_descriptions: bool = True,
        search_above: int = 256,
        prototypes: int = 0,
    ) -> None:
        if top_k != ALL and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(
                f"LanceDBRetriever: top_k={top_k!r} must be a whole number of at least 1 or 'all' "
                "(e.g. retrieval.top_k=25 or retrieval.top_k=all)."
            )
        if isinstance(search_above, bool) or not isinstance(search_above, int) or search_above < 0:
            raise ConfigError(
                f"LanceDBRetriever: search_above={search_above!r} must be a whole number of at least 0 "
                "(e.g. retrieval.search_above=256; 0 = always search)."
            )
        self.uri = uri
        self.top_k = top_k
        self.with_descriptions = with_descriptions
        self.search_above = search_above
        self.prototypes = check_prototypes(prototypes)
        self._table: lancedb.table.Table | None = None
        self._data: tuple[str, pa.Table] | None = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._catalogue: tuple[list[str], list[str]] | None = None

    def limit_for(self, n_documents: int) -> int | None:
        """Candidates per query among ``n_documents``: None when the reranker scores every document."""
        if self.top_k == ALL or n_documents <= self.search_above:
            return None
        assert isinstance(self.top_k, int)
        return None if self.top_k >= n_documents else self.top_k

    @property
    def limit(self) -> int | None:
        """Candidates the reranker rescores per query; None = every document (no first stage)."""
        return self.limit_for(len(self.catalogue()[0]))

    def catalogue(self) -> tuple[list[str], list[str]]:
        """Every category's label and document text, in the order ``build`` was given them."""
        if self._catalogue is None:
            raise RuntimeError("LanceDBRetriever: call build() before using the catalogue")
        return self._catalogue

    def documents(self, categories: Sequence[Category]) -> list[str]:
        """The text each category is embedded and reranked as."""
        return [category.document(self.with_descriptions) for category in categories]

    @property
    def table(self) -> lancedb.table.Table:
        """The LanceDB table of the categories, created (or opened) on first use."""
        if self._table is None:
            if self._data is None:
                raise RuntimeError("LanceDBRetriever: call build() before using the table")
            import lancedb

            # The name is content-addressed, so an existing table (a rerun, or a parallel job a moment ago) is
            # the same table: exist_ok opens it instead of writing it again, once its rows are checked to be ours.
            name, data = self._data
            database = lancedb.connect(self.uri)
            table = database.create_table(name, data=data, exist_ok=True)
            if not holds(table, data):
                # Overwriting writes a new version of the table: the damaged one stays among its versions.
                log.warning("%s/%s.lance does not hold the rows it is named after; writing it again", self.uri, name)
                table = database.create_table(name, data=data, mode="overwrite")
            self._table = table
        return self._table

    def build(
        self,
        categories: Sequence[Category],
        vectors: np.ndarray,
        model_key: str,
        documents: Sequence[str] | None = None,
    ) -> None:
        """Create (or reuse) the table for these categories and vectors (of ``documents``, by default
        ``self.documents(categories)``; the pipeline passes them when they carry prototypes).

        The table's name is a digest of the content, so runs with different data or models never share a table
        and a rerun with the same inputs reuses it. Without a first stage (``limit`` None) the table is created
        only when asked for (``table``): ranking every document is an exact flat search over at most
        ``search_above`` vectors, done in memory, and a run that needs no search does not load LanceDB (1.4 s).
        """
        documents = list(self.documents(categories) if documents is None else documents)
        self._catalogue = ([category.name for category in categories], documents)
        self._vectors = np.asarray(vectors, dtype=np.float32)
        name = "categories_" + sha256_json({"docs": documents, "model": model_key})[:16]
        data = pa.table(
            {
                "category": [category.name for category in categories],
                "text": documents,
                "description": [category.description for category in categories],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(self._vectors.ravel()), vectors.shape[1]),
            }
        )
        self._table, self._data = None, (name, data)
        if self.limit is not None:
            _ = self.table  # a first stage: write the table now, so a storage error stops the run before the fit

    def search(self, vector: np.ndarray) -> Candidates:
        """Top ``top_k`` categories for one query vector, by cosine similarity (1 - cosine distance).

        Without a first stage (``limit`` None) every category is returned: the embedding baseline's full ranking,
        by the same exact cosine similarity in memory (``records.nearest``).
        """
        if self.limit is None:
            labels, texts = self.catalogue()
            return nearest(vector[np.newaxis, :], self._vectors, labels, texts, None)[0]
        from lancedb.query import LanceVectorQueryBuilder

        builder = self.table.search(vector.astype(np.float32), query_type="vector")
        assert isinstance(builder, LanceVectorQueryBuilder)
        rows = builder.distance_type("cosine").limit(self.limit).select(["category", "text", "_distance"]).to_list()
        return Candidates(
            labels=[str(row["category"]) for row in rows],
            texts=[str(row["text"]) for row in rows],
            scores=[1.0 - float(row["_distance"]) for row in rows],
        )
