"""The categoriser as an MLflow pyfunc model, logged with models-from-code (this file is the model's code).

MLflow runs this file when the model is loaded (``mlflow.pyfunc.load_model``, ``mlflow models serve``); the
``experiments`` package travels with the model (``code_paths``), so a registered model works from any folder.

Input: a DataFrame (or a list of mappings) whose rows are transactions (docs/data-formats.md) or
``{"input": "<query text>"}``. Output: one row per input row, ``categories`` (the ``top_n`` best, best first)
and ``scores`` (the reranker's, aligned). Param ``top_n`` (default 5, at most the run's ``top_k``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from experiments.threads import passive_waits

passive_waits()  # the served process loads torch after this file: its OpenMP workers sleep when idle


class CategoriserModel(PythonModel):
    """Ranks categories for transactions or query texts with the run's categoriser."""

    def load_context(self, context: Any) -> None:
        from experiments.serving.categoriser import Categoriser
        from experiments.serving.limits import guard_scoring_server
        from experiments.threads import share_the_cpu

        share_the_cpu()

        self.categoriser = Categoriser.load(Path(context.artifacts["categoriser"]))
        guard_scoring_server()  # 413 for oversized bodies, 400 for deep JSON inside `mlflow models serve`

    # A DataFrame hint is one MLflow infers no signature from (log_model gives it); a list of mappings given to
    # the loaded model arrives here as a DataFrame built against that signature.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from experiments.serving.categoriser import DEFAULT_TOP_N
        from experiments.serving.rows import RowError, query_text

        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        top_n = _top_n((params or {}).get("top_n"), DEFAULT_TOP_N)
        from experiments.serving.limits import MAX_ROWS

        if len(rows) > MAX_ROWS:
            raise mlflow.exceptions.MlflowException.invalid_parameter_value(
                f"{len(rows)} rows in one request; at most {MAX_ROWS} (split the batch, or use `suggest` for files)"
            )
        if not rows:  # MLflow's schema drops unknown columns: a request of {"foo": 1} rows arrives empty
            raise mlflow.exceptions.MlflowException.invalid_parameter_value(
                "no row to rank: each row needs input (query text) or the transaction fields; see docs/serving.md"
            )
        queries = []
        for number, row in enumerate(rows, start=1):
            try:
                queries.append(query_text(row, self.categoriser.query_fields))
            except RowError as error:
                raise mlflow.exceptions.MlflowException.invalid_parameter_value(f"row {number}: {error}") from None
        ranked = self.categoriser.rank(queries, top_n=top_n)
        return pd.DataFrame({"categories": [r.labels for r in ranked], "scores": [r.scores for r in ranked]})


def _top_n(value: Any, default: int) -> int:
    """``top_n`` as given (0 and negatives refused, not replaced by the default), or ``default`` when absent."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().lstrip("-").isdigit():
        raise mlflow.exceptions.MlflowException.invalid_parameter_value(f"top_n={value!r} must be a whole number")
    if int(value) < 1:
        raise mlflow.exceptions.MlflowException.invalid_parameter_value(f"top_n={value} must be at least 1")
    return int(value)


set_model(CategoriserModel())
