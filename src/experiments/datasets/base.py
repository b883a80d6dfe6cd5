"""The dataset contract: one method that returns the splits."""

from __future__ import annotations

from typing import Protocol

from experiments.records import DatasetSplits


class Dataset(Protocol):
    """Anything that can produce train/eval examples and the candidate categories."""

    def load(self) -> DatasetSplits:
        """Return the splits; raise ``DataError`` naming the file and line for a malformed input."""
        ...

    def config_dict(self) -> dict[str, object]:
        """What identifies this dataset: recorded as ``DatasetSplits.source`` (the trackers read its file paths)."""
        ...
