"""The tracker contract and the helpers every tracker shares (flattening and scrubbing params)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from experiments.evaluation.evaluate import Summary
from experiments.records import DatasetSplits, FinetuneSet

if TYPE_CHECKING:
    from experiments.serving.package import CategoriserPackage

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|credential)", re.IGNORECASE)
REDACTED = "***"


class Tracker(Protocol):
    """Receives one run's params, inputs, results and files. Calls arrive in the order below."""

    def start_sweep(self, name: str) -> str | None:
        """Open a parent run for a sweep; returns its id, or None when the tracker has no such notion."""
        ...

    def end_sweep(self) -> None: ...

    def start(self, run_name: str, tags: Mapping[str, str]) -> None: ...

    def log_params(self, params: Mapping[str, object]) -> None: ...

    def log_inputs(self, dataset: DatasetSplits, finetune_set: FinetuneSet | None) -> None: ...

    def log_results(self, summary: Summary, extra: Mapping[str, float]) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifacts(self, directory: Path) -> None: ...

    def log_model(self, categoriser: CategoriserPackage) -> None:
        """Store the run's categoriser as a model; trackers without a notion of models ignore it."""
        ...

    def end(self, failed: bool) -> None: ...


def scrub(value: Any) -> Any:
    """A copy of a nested config with every secret-looking key's value replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            key: (REDACTED if SECRET_KEY.search(str(key)) and item is not None else scrub(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become their string form."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, int | float | str | bool) or value is None else str(value)
    return flat


def metric_key(name: str) -> str:
    """MLflow forbids ``@`` in metric names: ``recall@1`` is tracked as ``recall_at_1``."""
    return name.replace("@", "_at_")
