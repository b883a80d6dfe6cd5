"""Typed knobs: every value of the composed config is checked before any folder, cache entry or tracker run exists.

Two checks, both ending in one line that names the key, the bad value and what is allowed:

- the top-level knobs (``k``, ``duplication``, ``seed``, ``optimized_metric``, ``evaluation.*``, ``progress``)
  against ``TopLevelKnobs``;
- every config group option (a node with ``_target_``) against the annotated signature of the class it names, so
  ``reranker.learning_rate=abc`` is caught as "not a number" before the class ever sees it. Constructors still
  check ranges (``learning_rate`` must be > 0) and say so in their own words.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any, Literal

from hydra.utils import get_class
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from experiments.errors import ConfigError
from experiments.evaluation.metrics import METRIC_NAMES

MetricName = Literal["recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5"]
assert set(typing.get_args(MetricName)) == set(METRIC_NAMES)


class EvaluationKnobs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_resamples: int = Field(ge=1)


class TopLevelKnobs(BaseModel):
    """The knobs users type at the top level of ``conf/config.yaml``."""

    model_config = ConfigDict(extra="allow")

    # Types only: the ranges of k and duplication depend on the data, and check_knobs says so in its own words.
    k: int
    duplication: int
    seed: int = Field(ge=0)
    optimized_metric: MetricName = "mrr@1"
    progress: bool = True
    evaluation: EvaluationKnobs


def _describe(error: ValidationError, prefix: str, values: Mapping[str, Any]) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    key = f"{prefix}{location}" if location else prefix.rstrip(".")
    value = first.get("input", values.get(location))
    return f"{key}={value!r}: {first['msg']}."


def check_top_level(config: Mapping[str, Any]) -> None:
    """Raise a one-line ``ConfigError`` for the first bad top-level knob."""
    try:
        TopLevelKnobs.model_validate(dict(config))
    except ValidationError as error:
        raise ConfigError(_describe(error, "", config)) from None


def _annotations(target: str) -> dict[str, Any]:
    """The parameter annotations of the ``__init__`` of the class ``target`` names ({} when they cannot be read)."""
    try:
        cls = get_class(target)
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
        parameters = inspect.signature(cls).parameters
    except Exception:  # an unimportable target is reported by instantiate itself, naming the group
        return {}
    return {name: hints[name] for name in parameters if name in hints and name != "return"}


def check_group(node: Mapping[str, Any], prefix: str) -> None:
    """Check each value of a ``_target_`` node (and nested ones) against the target's annotations."""
    target = node.get("_target_")
    hints = _annotations(str(target)) if target else {}
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping):
            check_group(value, f"{prefix}{key}.")
            continue
        hint = hints.get(key)
        if hint is None or _is_component(hint):
            continue
        try:
            TypeAdapter(hint).validate_python(value)
        except ValidationError as error:
            allowed = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            message = error.errors()[0]["msg"]
            raise ConfigError(f"{prefix}{key}={value!r}: {message} (expected {allowed}).") from None


def _is_component(hint: Any) -> bool:
    """Whether a parameter takes a built object (a nested ``_target_`` node), not a plain value."""
    return inspect.isclass(hint) and not issubclass(hint, str | int | float | bool)


def check_config(config: Mapping[str, Any], groups: tuple[str, ...]) -> None:
    """Check the top-level knobs, then every group option, of a resolved config (a plain dict)."""
    check_top_level(config)
    for group in groups:
        node = config.get(group)
        if isinstance(node, Mapping):
            check_group(node, f"{group}.")
