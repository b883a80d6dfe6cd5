"""Request limits of the served model (``mlflow models serve``): body size (413), rows (400), nesting (400).

MLflow 3's scoring server (FastAPI under uvicorn) reads the whole body and offers no size limit, only a time limit
(``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, 504); a JSON body nested too deeply makes its parser raise
``RecursionError``, which it answers with a 500. The model, when loaded inside that server, wraps the server's
``invocations`` function (looked up at each request) so that:

- a body over ``max_request_bytes()`` (``EXPERIMENTS_SERVING_MAX_BYTES``, default 1 MB) answers 413 before it is
  parsed; the body has still been read into memory by then, so a reverse proxy in front should refuse larger bodies
  first (nginx ``client_max_body_size 1m``);
- a body that cannot be parsed for its depth answers 400;
- more than ``MAX_ROWS`` rows answer 400 (checked in ``predict``).
"""

from __future__ import annotations

import json
import os
from functools import wraps
from typing import Any

#: Bodies larger than this many bytes are refused with 413 unless EXPERIMENTS_SERVING_MAX_BYTES says otherwise.
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
#: Rows one request may hold; a larger batch is a 400 (split it, or use `suggest` for files).
MAX_ROWS = 1000
MAX_BYTES_VARIABLE = "EXPERIMENTS_SERVING_MAX_BYTES"


def max_request_bytes() -> int:
    """The body limit in bytes: ``EXPERIMENTS_SERVING_MAX_BYTES`` when set to a positive whole number, else 1 MB."""
    value = os.environ.get(MAX_BYTES_VARIABLE, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return DEFAULT_MAX_REQUEST_BYTES


def _error(status: int, message: str) -> Any:
    from mlflow.pyfunc.scoring_server import InvocationsResponse

    body = json.dumps({"error_code": "BAD_REQUEST", "message": message})
    return InvocationsResponse(response=body, status=status, mimetype="application/json")


def guard_scoring_server() -> None:
    """Wrap MLflow's scoring-server ``invocations`` with the size and depth checks (once per process)."""
    from mlflow.pyfunc import scoring_server

    invocations = scoring_server.invocations
    if getattr(invocations, "_experiments_guarded", False):
        return

    @wraps(invocations)
    def guarded(data: Any, content_type: Any, model: Any, input_schema: Any) -> Any:
        limit = max_request_bytes()
        if isinstance(data, bytes | str) and len(data) > limit:
            return _error(
                413, f"request body of {len(data)} bytes is over the {limit}-byte limit ({MAX_BYTES_VARIABLE})"
            )
        try:
            return invocations(data, content_type, model, input_schema)
        except RecursionError:
            return _error(400, "request JSON is nested too deeply: send flat rows (see docs/serving.md)")

    guarded._experiments_guarded = True  # type: ignore[attr-defined]
    scoring_server.invocations = guarded
