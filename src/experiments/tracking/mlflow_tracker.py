"""MLflow tracking: a local SQLite store under ``outputs/`` by default, or ``MLFLOW_TRACKING_URI``."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.evaluation.evaluate import Summary
from experiments.records import DatasetSplits, FinetuneSet
from experiments.tracking.base import metric_key

if TYPE_CHECKING:
    from experiments.serving.package import CategoriserPackage

log = logging.getLogger(__name__)

# MLflow caps a param value at 6,000 characters.
MAX_PARAM_LENGTH = 6000


class MLflowTracker:
    """Logs one run to MLflow.

    Args:
        experiment: MLflow experiment name.
        tracking_uri: where runs go when ``MLFLOW_TRACKING_URI`` is not set; the default config points at an
            absolute ``sqlite:///.../outputs/mlflow.db`` so parallel jobs agree on one store.
        artifact_location: artifact root for a newly created experiment (absolute, so the working directory
            does not matter).
        parent_run_id: nest this run under a parent (a sweep's run), when given.
    """

    def __init__(
        self,
        experiment: str = "reranker-finetuning",
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        self.experiment = experiment
        self.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri
        self.artifact_location = artifact_location
        self.parent_run_id = parent_run_id
        self.run_id: str | None = None
        self._sweep_run_id = ""

    def _connect(self) -> None:
        import mlflow

        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment) is None:
            # A parallel job may create it first: then the experiment exists, which is all we need.
            with contextlib.suppress(mlflow.exceptions.MlflowException):
                mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)
        mlflow.set_experiment(self.experiment)

    def start_sweep(self, name: str) -> str:
        """Open the parent run of a sweep and return its id (jobs nest under it)."""
        import mlflow

        self._connect()
        run = mlflow.start_run(run_name=name, tags={"sweep": "parent"})
        mlflow.end_run()  # children attach by id; leaving it active would nest them twice
        self._sweep_run_id = run.info.run_id
        return run.info.run_id

    def end_sweep(self) -> None:
        """Mark the sweep's parent run finished."""
        import mlflow

        mlflow.MlflowClient().set_terminated(self._sweep_run_id, status="FINISHED")

    def start(self, run_name: str, tags: Mapping[str, str]) -> None:
        import mlflow

        self._connect()
        run = mlflow.start_run(run_name=run_name, tags=dict(tags), parent_run_id=self.parent_run_id)
        self.run_id = run.info.run_id
        log.info("MLflow run %s in %s", self.run_id, mlflow.get_tracking_uri())

    def log_params(self, params: Mapping[str, object]) -> None:
        import mlflow

        mlflow.log_params({key: str(value)[:MAX_PARAM_LENGTH] for key, value in params.items()})

    def log_inputs(self, dataset: DatasetSplits, finetune_set: FinetuneSet | None) -> None:
        import mlflow
        import pandas as pd
        from mlflow.data.pandas_dataset import from_pandas

        digest = dataset.digest()[:32]
        for context, examples in (("train", dataset.train), ("eval", dataset.eval)):
            frame = pd.DataFrame({"input": [e.input for e in examples], "expected": [e.expected for e in examples]})
            # A file's path is its source; a generated set has none (MLflow then records the code location).
            source = dataset.source.get(f"{context}_path")
            located = {"source": str(source)} if source else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
                data = from_pandas(frame, name=f"{dataset.name}-{context}", digest=digest, **located)
            mlflow.log_input(data, context=context)
        if finetune_set is not None:
            frame = pd.DataFrame([item.model_dump() for item in finetune_set.items])
            mlflow.log_input(
                from_pandas(frame, name="finetune-set", digest=finetune_set.digest()[:32]),
                context="training",
            )

    def log_results(self, summary: Summary, extra: Mapping[str, float]) -> None:
        import mlflow
        import pandas as pd

        metrics: dict[str, float] = dict(extra)
        for system, prefix in (("reranker", ""), ("baseline", "baseline_")):
            for name, value in summary.systems[system].items():
                key = prefix + metric_key(name)
                metrics.update({key: value.mean, f"{key}_ci_low": value.low, f"{key}_ci_high": value.high})
        for name, value in summary.delta.items():
            key = "delta_" + metric_key(name)
            metrics.update({key: value.mean, f"{key}_ci_low": value.low, f"{key}_ci_high": value.high})
        metrics.update({f"latency_{key}_ms": value for key, value in summary.latency_ms.items()})
        metrics["candidate_recall"] = summary.candidate_recall
        mlflow.log_metrics(metrics)
        mlflow.log_table(data=pd.DataFrame(summary.table_rows()), artifact_file="metric_table.json")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags(dict(tags))

    def log_artifacts(self, directory: Path) -> None:
        import mlflow

        mlflow.log_artifacts(str(directory))
        # The run folder's path finds this run again (``python -m experiments.register <run folder>``).
        mlflow.set_tag("run_folder", str(directory.resolve()))

    def log_model(self, categoriser: CategoriserPackage) -> None:
        """Log the categoriser as this run's pyfunc model ``categoriser`` (``runs:/<run id>/categoriser``)."""
        from experiments.serving.mlflow_model import log_categoriser

        info = log_categoriser(categoriser)
        log.info("model: %s (python -m experiments.suggest %s ...)", info.model_uri, self.run_id)

    def end(self, failed: bool) -> None:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED" if failed else "FINISHED")
