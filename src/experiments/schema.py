"""Typed knobs: every value of the composed config is checked before any folder, cache entry or tracker run exists.

Two checks, both ending in one line that names the key, the bad value and what is allowed:

- the top-level knobs (``k``, ``duplication``, ``seed``, ``validation_fraction``, ``replicates``,
  ``optimized_metric``, ``evaluation.*``, ``progress``, ``log_model``) read into ``Knobs``, the one record of them
  the pipeline receives;
- every config group option (a node with ``_target_``) against the annotated signature of the class it names, so
  ``reranker.learning_rate=abc`` is caught as "not a number" before the class ever sees it. Constructors still
  check ranges (``learning_rate`` must be > 0) and say so in their own words.

The models declare types and ranges only: every default lives in ``conf/config.yaml``, the file users read.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from hydra.utils import get_class
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError

from experiments.errors import ConfigError
from experiments.metrics import METRIC_NAMES

MetricName = Literal["recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5"]
assert set(typing.get_args(MetricName)) == set(METRIC_NAMES)


def _not_a_bool(value: Any) -> Any:
    # pydantic reads True as 1 in lax mode; k=true is a typo, not a count.
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true/false")
    return value


Count = Annotated[int, BeforeValidator(_not_a_bool)]
Fraction = Annotated[float, BeforeValidator(_not_a_bool)]


class EvaluationKnobs(BaseModel):
    """``evaluation.*`` in ``conf/config.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_resamples: Count = Field(ge=1)


class Knobs(BaseModel):
    """The knobs users type at the top level of ``conf/config.yaml``, checked once, before any work.

    Built from the resolved config (other top-level keys, the config groups, are ignored). The upper bounds of
    ``k`` and ``duplication`` depend on the data, so ``miners.base.check_knobs`` checks them once it is loaded.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: Hard negatives per fine-tuning item; 0 = none mined (a bi-encoder then trains on in-batch negatives only).
    k: Count = Field(ge=0)
    #: Fine-tuning items per train example, each with its own draw of negatives.
    duplication: Count = Field(ge=1)
    seed: Count = Field(ge=0)
    #: Share of train (whole groups) held out for every choice a reranker makes; 0 = no validation split.
    validation_fraction: Fraction = Field(ge=0, lt=1)
    #: Mine-fit-evaluate under this many seeds (seed, seed + 1, ...); the run folder is the first seed's.
    replicates: Count = Field(ge=1)
    optimized_metric: MetricName
    evaluation: EvaluationKnobs
    progress: StrictBool
    #: Package the categoriser and log it as the run's model (``log_model=false`` skips it).
    log_model: StrictBool

    @property
    def bootstrap_resamples(self) -> int:
        return self.evaluation.bootstrap_resamples

    def seeds(self) -> list[int]:
        return [self.seed + offset for offset in range(self.replicates)]


def _describe(error: ValidationError, values: Mapping[str, Any]) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return f"{key} is required: add {key}=<value> to the command line (conf/config.yaml sets it)."
    value = first.get("input", values.get(key))
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "bool_type":
        message += " (true or false)"
    return f"{key}={value!r}: {message}."


def read_knobs(config: Mapping[str, Any]) -> Knobs:
    """The top-level knobs of a resolved config (a plain dict), or a one-line ``ConfigError`` for the first bad one."""
    try:
        return Knobs.model_validate(dict(config))
    except ValidationError as error:
        raise ConfigError(_describe(error, config)) from None


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


def check_groups(config: Mapping[str, Any], groups: tuple[str, ...]) -> None:
    """Check every option of the config groups ``groups`` of a resolved config (a plain dict)."""
    for group in groups:
        node = config.get(group)
        if isinstance(node, Mapping):
            check_group(node, f"{group}.")
