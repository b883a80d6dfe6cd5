"""``tracker=none``: record nothing beyond the run folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.evaluation.evaluate import Summary
from experiments.records import DatasetSplits, FinetuneSet

if TYPE_CHECKING:
    from experiments.serving.package import CategoriserPackage


class NoTracker:
    """A tracker that drops everything (the output folder still holds every result)."""

    def start_sweep(self, name: str) -> str | None:
        return None

    def end_sweep(self) -> None:
        pass

    def start(self, run_name: str, tags: Mapping[str, str]) -> None:
        pass

    def log_params(self, params: Mapping[str, object]) -> None:
        pass

    def log_inputs(self, dataset: DatasetSplits, finetune_set: FinetuneSet | None) -> None:
        pass

    def log_results(self, summary: Summary, extra: Mapping[str, float]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_artifacts(self, directory: Path) -> None:
        pass

    def log_model(self, categoriser: CategoriserPackage) -> None:
        pass

    def end(self, failed: bool) -> None:
        pass
