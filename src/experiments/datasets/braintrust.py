"""Train and eval examples from a Braintrust dataset, split by ``metadata.split`` as the seed notebook did.

``dataset=braintrust dataset.project=<project> dataset.name=<dataset>``. Every row is an example row
(``{"input": str, "expected": [str, ...], "metadata": {"split": "train" | "eval", ...}}``); rows of other splits
are ignored. Categories come from ``categories_path`` (a local file, as for ``dataset=jsonl``) or from the labels.
"""

from __future__ import annotations

from typing import Any

from experiments.braintrust_client import bound_sdk
from experiments.datasets.jsonl import validated, with_categories
from experiments.errors import DataError, ServiceError
from experiments.records import DatasetSplits, Example
from experiments.secrets import BRAINTRUST_KEYS, require_key


class BraintrustDataset:
    """Examples fetched from Braintrust (``braintrust.init_dataset``).

    Args:
        project: the Braintrust project holding the dataset.
        name: the dataset's name.
        app_url: the Braintrust app to log in to (self-hosted: your deployment's URL).
        org_name: the organisation, when the key belongs to several.
        train_split, eval_split: the values of ``metadata.split`` that mark train and eval rows.
        categories_path: optional local categories file (see docs/data-formats.md).
        timeout_s: bound on each HTTP request to Braintrust.

    Needs ``BRAINTRUST_API_KEY`` in the environment (checked here, before any work).
    """

    def __init__(
        self,
        project: str,
        name: str,
        app_url: str = "https://www.braintrust.dev",
        org_name: str | None = None,
        train_split: str = "train",
        eval_split: str = "eval",
        categories_path: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.project = project
        self.name = name
        self.app_url = app_url
        self.org_name = org_name
        self.train_split = train_split
        self.eval_split = eval_split
        self.categories_path = categories_path
        self.timeout_s = timeout_s
        self._api_key = require_key(BRAINTRUST_KEYS, "dataset=braintrust")

    def config_dict(self) -> dict[str, object]:
        return {"name": "braintrust", "project": self.project, "dataset": self.name, "app_url": self.app_url}

    def _fetch(self) -> list[dict[str, Any]]:
        bound_sdk(self.timeout_s)
        import braintrust
        from braintrust.logger import BraintrustState

        dataset = braintrust.init_dataset(
            project=self.project,
            name=self.name,
            app_url=self.app_url,
            api_key=self._api_key,
            org_name=self.org_name,
            state=BraintrustState(),
        )
        try:
            return [dict(row) for row in dataset]
        except Exception as error:  # the SDK raises plain exceptions for network and HTTP failures
            problem = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise ServiceError(f"Braintrust dataset {self.project}/{self.name} could not be read: {problem}") from None

    def load(self) -> DatasetSplits:
        splits: dict[str, list[Example]] = {self.train_split: [], self.eval_split: []}
        for row in self._fetch():
            where = f"braintrust:{self.project}/{self.name}: row {row.get('id', '?')}"
            split = (row.get("metadata") or {}).get("split")
            if split in splits:
                fields = {key: row.get(key) for key in ("input", "expected", "metadata")}
                splits[split].append(validated(Example, fields, where))
        for split, examples in splits.items():
            if not examples:
                raise DataError(
                    f"braintrust:{self.project}/{self.name}: no rows with metadata.split={split!r}; set "
                    "dataset.train_split / dataset.eval_split to the values your rows use."
                )
        train, evaluation = splits[self.train_split], splits[self.eval_split]
        return with_categories("braintrust", train, evaluation, self.categories_path, self.config_dict())
