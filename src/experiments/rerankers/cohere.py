"""Cohere's rerank API as a reranker: ``reranker=cohere``.

Paid per request: one request scores up to ``documents_per_request`` candidates of one query. Before the first
request the run states how many it will make (the pairs already in the score cache cost nothing) and refuses to
start beyond ``max_requests``. Scores are Cohere's ``relevance_score`` (in [0, 1]), checked before use.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from experiments.errors import ConfigError, ServiceError
from experiments.rerankers.base import Reranker
from experiments.rerankers.cohere_api import DEFAULT_BASE_URL, checked_scores, failure, is_sdk_error, make_client
from experiments.secrets import COHERE_KEYS, require_key

if TYPE_CHECKING:
    import cohere

log = logging.getLogger(__name__)

#: Cohere's limit of documents in one rerank request.
MAX_DOCUMENTS_PER_REQUEST = 1000


class CohereReranker(Reranker):
    """Rescore candidates with Cohere's ``/v2/rerank`` (``cohere.ClientV2.rerank``).

    Data contract: ``score(query, documents)`` returns one finite score per document, aligned with
    ``documents``, from ``ceil(len(documents) / documents_per_request)`` requests.

    Args:
        model: Cohere rerank model (``rerank-v3.5``; the seed notebook used ``rerank-english-v3.0``).
        base_url: the API endpoint (a proxy or self-hosted deployment speaking Cohere's API works too).
        timeout_s: seconds to wait for one answer.
        max_retries: retries of one rerank request on 429/5xx (reranking changes nothing, so retrying is safe).
        max_requests: the most requests one run may make; a run that would need more stops before the first.
        documents_per_request: candidates per request (at most 1000).
        max_tokens_per_doc: truncation of each document by Cohere; None keeps Cohere's default.

    The key comes from ``CO_API_KEY`` (or ``COHERE_API_KEY``) and is checked here, before any work.
    """

    option = "cohere"

    paid = True

    def __init__(
        self,
        model: str = "rerank-v3.5",
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_requests: int = 1000,
        documents_per_request: int = MAX_DOCUMENTS_PER_REQUEST,
        max_tokens_per_doc: int | None = None,
    ) -> None:
        if not 1 <= documents_per_request <= MAX_DOCUMENTS_PER_REQUEST:
            raise ConfigError(f"{self.name}: documents_per_request={documents_per_request} must be in [1, 1000].")
        if max_requests < 0 or max_retries < 0 or not timeout_s > 0:
            raise ConfigError(f"{self.name}: max_requests, max_retries must be >= 0 and timeout_s > 0.")
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_requests = max_requests
        self.documents_per_request = documents_per_request
        self.max_tokens_per_doc = max_tokens_per_doc
        self._api_key = require_key(COHERE_KEYS, f"reranker={self.option}")
        self._client: cohere.ClientV2 | None = None
        self._requests = 0

    @property
    def requests_made(self) -> int:
        return self._requests

    def client(self) -> cohere.ClientV2:
        if self._client is None:
            self._client = make_client(self._api_key, self.base_url, self.timeout_s)
        return self._client

    def score_key(self) -> str | None:
        """Scores depend on the model and on which deployment answers."""
        return f"cohere:{self.model}@{self.base_url}"

    def requests_for(self, documents: int) -> int:
        return math.ceil(documents / self.documents_per_request)

    def prepare(self, work: Sequence[tuple[str, Sequence[str]]]) -> None:
        """State the requests this run will make, and refuse to start past ``max_requests``."""
        planned = sum(self.requests_for(len(documents)) for _, documents in work)
        pairs = sum(len(documents) for _, documents in work)
        print(
            f"Cohere rerank ({self.model}): {planned} requests for {pairs} (query, document) pairs of {len(work)} "
            f"queries not in the score cache (reranker.max_requests={self.max_requests})",
            flush=True,
        )
        if self._requests + planned > self.max_requests:
            raise ConfigError(
                f"reranker.max_requests={self.max_requests}: this run needs {planned} Cohere rerank requests; "
                "raise reranker.max_requests, or lower retrieval.top_k or the eval set, and run again."
            )

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Cohere's relevance score of each document (higher is more relevant), aligned with ``documents``."""
        scores: list[float] = []
        for start in range(0, len(documents), self.documents_per_request):
            chunk = list(documents[start : start + self.documents_per_request])
            scores.extend(self._rerank(query, chunk))
        return scores

    def _rerank(self, query: str, documents: list[str]) -> list[float]:
        if self._requests >= self.max_requests:
            raise ConfigError(
                f"reranker.max_requests={self.max_requests} reached; raise it to score more queries with Cohere."
            )
        if self.model is None:
            raise ConfigError(f"{self.name}: no model to rerank with; fit first or set the model id.")
        self._requests += 1
        from cohere.core.request_options import RequestOptions
        from cohere.v2.client import OMIT

        options: RequestOptions = {"max_retries": self.max_retries, "timeout": self.timeout_s}
        try:
            response = self.client().rerank(
                model=self.model,
                query=query,
                documents=documents,
                max_tokens_per_doc=OMIT if self.max_tokens_per_doc is None else self.max_tokens_per_doc,
                request_options=options,
            )
        except Exception as error:
            if is_sdk_error(error):
                raise failure(f"rerank with {self.model} at {self.base_url}", error) from None
            raise
        try:
            return checked_scores(response, len(documents), self.model)
        except ServiceError:
            log.error("malformed Cohere rerank answer: %s", str(response)[:500])
            raise
