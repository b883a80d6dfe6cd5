"""The Braintrust SDK as this project uses it, shared by the Braintrust data set and the Braintrust tracker.

It sits below both (``experiments.datasets`` reads through it, ``experiments.tracking`` writes through it), so
neither borrows from the other.
"""

from __future__ import annotations

import os


def bound_sdk(timeout_s: float) -> None:
    """Bound the SDK's own waits, unless the user configured them.

    By default every request of the SDK may take 60 s and is retried 10 times with exponential backoff (up to
    minutes), the upload is retried again on top, and whatever is left is flushed at interpreter exit — where a
    server that never answers would hold the process. Here one request may take a quarter of ``timeout_s`` and is
    retried once, the uploader does not retry on top, and the exit-time flush is off; the upload happens only when
    the tracker flushes (synchronous flush), so a dropped upload raises instead of being reported as logged.
    """
    from braintrust import logger
    from braintrust.api._transport import RetryRequestExceptionsAdapter

    os.environ.setdefault("BRAINTRUST_DISABLE_ATEXIT_FLUSH", "true")
    os.environ.setdefault("BRAINTRUST_NUM_RETRIES", "0")
    os.environ.setdefault("BRAINTRUST_SYNC_FLUSH", "true")
    if logger._http_adapter is None:
        request_s = max(timeout_s / 4, 0.5)
        logger.set_http_adapter(RetryRequestExceptionsAdapter(base_num_retries=1, default_timeout_secs=request_s))
