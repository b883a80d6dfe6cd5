"""How the MLflow UI shows this project's experiment: the model-training view, headline columns, primary metric.

The experiment says it is a model-training one (``mlflow.experimentKind``); the runs table shows no metric column
until one is chosen; and its charts default to an arbitrary metric unless ``mlflow.experiment.primaryMetric.name``
names one. ``describe_experiment`` sets those
tags, plus a saved view (``mlflow.sharedViewState.headline``) whose columns are the knobs and headline metrics;
``python -m experiments.tracking.mlflow_view`` prints the URL that opens it (``make ui`` does).

The chart view groups a run's metrics into sections by the prefix before the last ``/`` and shows the prefixed
sections first (alphabetically), then the unprefixed "Model metrics", each section's charts sorted by key. So the
headline numbers are logged a second time as ``headline/<name>`` (``headline_charts``): the chart view opens on
MRR@1, recall@5 and the objective, above the ~57 charts of every metric under its usual name.

What an experiment's plain link opens is not the experiment's to choose: MLflow 3's UI keeps a per-browser
"workflow type" (the GenAI / Machine learning switch at the top of its sidebar, default GenAI) and the experiment
page follows it, whatever ``mlflow.experimentKind`` says. The printed URL carries ``workflowType=machine_learning``,
which flips that switch; after that, plain links open the training view in that browser too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from experiments.metrics import METRIC_NAMES, metric_key
from experiments.tracking.base import validation_key

VIEW_KEY = "headline"
KIND_TAG = "mlflow.experimentKind"
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
HEADLINE_PARAMS = ("miner", "reranker", "k", "duplication", "seed")
#: The chart view's first section (see the module's docstring).
HEADLINE_SECTION = "headline/"


def headline_charts(metrics: Mapping[str, float], primary_metric: str) -> dict[str, float]:
    """``headline/mrr_at_1``, ``headline/recall_at_5`` and ``headline/validation_mrr_at_1`` (the objective, when
    the run chose on validation): the headline of ``metrics`` again, in the chart section MLflow shows first."""
    keys = dict.fromkeys((metric_key(primary_metric), "recall_at_5", validation_key(primary_metric)))
    return {HEADLINE_SECTION + key: float(metrics[key]) for key in keys if key in metrics}


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the MLflow UI's canonical column key


def headline_view(primary_metric: str) -> dict[str, Any]:
    """The runs table's saved view: knobs and headline metrics as columns, best ``primary_metric`` first."""
    primary = metric_key(primary_metric)
    metrics = [primary] + [metric_key(name) for name in METRIC_NAMES if name != primary_metric]
    columns = [
        _column("attributes", "Dataset"),
        *(_column("params", name) for name in HEADLINE_PARAMS),
        _column("metrics", metrics[0]),
        _column("metrics", f"validation_{primary}"),  # the objective a sweep chose by, when it chose on validation
        *(_column("metrics", name) for name in metrics[1:]),
        _column("metrics", f"delta_{primary}"),
        _column("metrics", f"baseline_{primary}"),
        _column("metrics", "train_seconds"),
    ]
    return {
        "searchFilter": "",
        "orderByKey": _column("metrics", primary),
        "orderByAsc": False,
        "selectedColumns": columns,
        "runsExpanded": {},
    }


def describe_experiment(client: Any, experiment_id: str, primary_metric: str) -> None:
    """Mark the experiment as model training, name its primary metric and save the headline view (idempotent)."""
    wanted = {
        KIND_TAG: "custom_model_development",
        PRIMARY_METRIC_TAG: metric_key(primary_metric),
        VIEW_TAG_PREFIX + VIEW_KEY: json.dumps(headline_view(primary_metric)),
    }
    tags = client.get_experiment(experiment_id).tags
    for key, value in wanted.items():
        if tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


def ui_url(base: str, experiment_id: str) -> str:
    """The runs page of the experiment, opened on the headline view, in the UI's machine-learning workflow."""
    query = f"viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.tracking.mlflow_view <tracking uri> [experiment] [ui base url]``: print the URL."""
    import mlflow

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m experiments.tracking.mlflow_view <tracking uri> [experiment] [ui url]", file=sys.stderr)
        return 2
    uri, experiment, base = (*args, "reranker-finetuning", "http://127.0.0.1:5000")[:3]
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        print(f"open {base} (no run recorded yet in experiment {experiment!r})")
        return 0
    print(f"open {ui_url(base, found.experiment_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
