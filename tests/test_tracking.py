"""Params are flat, secrets never leave the process, metric names survive MLflow's character rules."""

from __future__ import annotations

from experiments.evaluation.metrics import METRIC_NAMES
from experiments.tracking.base import flatten, metric_key, scrub


def test_scrub_hides_secret_looking_keys_at_any_depth():
    config = {"tracker": {"api_key": "sk-123", "project": "p"}, "llm": [{"OPENAI_API_KEY": "x", "token": None}]}
    cleaned = scrub(config)
    assert cleaned == {"tracker": {"api_key": "***", "project": "p"}, "llm": [{"OPENAI_API_KEY": "***", "token": None}]}
    assert config["tracker"]["api_key"] == "sk-123"  # the original is untouched


def test_flatten_joins_keys_and_stringifies_lists():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": None}) == {
        "a.b": 1,
        "a.c.d": "x",
        "e": "[1, 2]",
        "f": None,
    }


def test_metric_keys_are_valid_mlflow_names():
    from mlflow.utils.validation import _validate_metric_name

    for name in METRIC_NAMES:
        _validate_metric_name(metric_key(name))
    assert metric_key("recall@1") == "recall_at_1"
