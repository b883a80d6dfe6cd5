"""Talking to Cohere through its SDK: the client, one-line errors, and checked rerank answers.

The endpoint is always passed explicitly (the SDK reads ``CO_API_URL`` only once, when it is first imported).
Retries are set per call: the SDK retries *every* request on 5xx/429/408/409 by default, POSTs included and
without an idempotency key, which for a paid create would risk paying twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from experiments.errors import ServiceError

if TYPE_CHECKING:
    import cohere

DEFAULT_BASE_URL = "https://api.cohere.com"

#: What a caller sees when Cohere answers that this account cannot fine-tune (retired on 2025-09-15).
RETIRED = (
    "Cohere no longer offers fine-tuning to this account (it was retired on 2025-09-15): use "
    "reranker=bi_encoder_finetuned or reranker=cross_encoder_finetuned to fine-tune on this machine instead."
)
_RETIRED_WORDS = re.compile(r"retired|no longer|deprecat|discontinu|sunset|not (?:available|supported)", re.I)
#: Statuses after which a request may or may not have been applied: look before sending it again.
_AMBIGUOUS_STATUSES = {408, 409, 429}


def make_client(api_key: str, base_url: str, timeout_s: float) -> cohere.ClientV2:
    """A Cohere v2 client for ``base_url`` that never retries unless a call asks it to."""
    import cohere

    return cohere.ClientV2(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
        log_warning_experimental_features=False,
    )


def status_of(error: BaseException) -> int | None:
    from cohere.core.api_error import ApiError

    return error.status_code if isinstance(error, ApiError) else None


def message_of(error: BaseException) -> str:
    """The service's own message for an SDK error, on one line."""
    from cohere.core.api_error import ApiError

    if isinstance(error, ApiError):
        body = error.body
        text = body.get("message", body) if isinstance(body, dict) else body
        return f"HTTP {error.status_code}: {' '.join(str(text).split())[:300]}"
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def is_ambiguous(error: BaseException) -> bool:
    """True when the request may have been applied although no success came back (timeouts, 5xx, ...)."""
    import httpx
    from cohere.core.api_error import ApiError

    if isinstance(error, httpx.TransportError):
        return not isinstance(error, httpx.ConnectError)  # a refused connection never reached the server
    if isinstance(error, ApiError):
        status = error.status_code
        return status is None or status >= 500 or status in _AMBIGUOUS_STATUSES
    return False


def is_retired(error: BaseException) -> bool:
    """Cohere's answer to a fine-tuning call from an account without fine-tuning."""
    status = status_of(error)
    if status is None or not 400 <= status < 500:
        return False
    return status in (404, 410) or bool(_RETIRED_WORDS.search(message_of(error)))


def failure(action: str, error: BaseException) -> ServiceError:
    """A one-line ``ServiceError`` for an SDK error while doing ``action``."""
    if status_of(error) == 401:
        return ServiceError(f"Cohere refused the API key while trying to {action} (HTTP 401): check CO_API_KEY.")
    return ServiceError(f"Cohere could not {action}: {message_of(error)}")


def is_sdk_error(error: BaseException) -> bool:
    """Errors that come from the service or the network (not from our own code)."""
    import httpx
    from cohere.core.api_error import ApiError

    return isinstance(error, ApiError | httpx.HTTPError)


def checked_scores(response: Any, n_documents: int, model: str) -> list[float]:
    """Scores aligned with the documents sent, after checking the answer covers each document once, finitely.

    Raises:
        ServiceError: an index out of range or repeated, a missing document, or a score that is not a finite
            number. The SDK does not validate answers, so a malformed one would otherwise become NaN metrics.
    """
    results: Sequence[Any] = getattr(response, "results", None) or []
    scores: dict[int, float] = {}
    for result in results:
        index, score = getattr(result, "index", None), getattr(result, "relevance_score", None)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_documents or index in scores:
            problem = f"document index {index!r} is out of range or repeated for {n_documents} documents"
            raise ServiceError(f"Cohere rerank ({model}) returned a malformed answer: {problem}; nothing was scored.")
        if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(score):
            problem = f"the score of document {index} is {score!r}, not a finite number"
            raise ServiceError(f"Cohere rerank ({model}) returned a malformed answer: {problem}; nothing was scored.")
        scores[index] = float(score)
    if len(scores) != n_documents:
        problem = f"{len(scores)} scores for {n_documents} documents"
        raise ServiceError(f"Cohere rerank ({model}) returned a malformed answer: {problem}; nothing was scored.")
    return [scores[index] for index in range(n_documents)]
