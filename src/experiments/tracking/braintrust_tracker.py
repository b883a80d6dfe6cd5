"""Braintrust: each run is an experiment with one row per eval query (``trackers=[braintrust]``).

A row is what the seed notebook's ``Eval`` logged: ``input`` (the query), ``output`` (the reranked top 5),
``expected`` (the labels), ``scores`` (``recall@1`` ... ``mrr@5`` of the reranked ranking) and ``metadata`` (the
embedding baseline's top 5 and the fine-tune id). The experiment's metadata holds the run's params, digests and
aggregate metrics. With ``BRAINTRUST_API_KEY`` in the environment the rows are sent; without it they are written
to ``braintrust_rows.jsonl`` in the run folder and the run says so in one line.

The SDK flushes at interpreter exit and retries each request for minutes; here the upload is flushed explicitly,
each request's timeout and retries are bounded by ``timeout_s`` (``bound_sdk``), and the exit-time flush is off,
so a server that does not answer costs the run about ``timeout_s`` (``experiments.tracking.trackers`` enforces it)
and the process exit at most half of that again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.braintrust_client import bound_sdk
from experiments.records.sweep import SweepRecord
from experiments.secrets import BRAINTRUST_KEYS, env_key, scrub
from experiments.tracking.base import FailedRun, TrackedRun

ROWS_FILE = "braintrust_rows.jsonl"
#: Rows are the top of each ranking, as the seed notebook's task returned it.
TOP = 5


def eval_rows(run: TrackedRun) -> list[dict[str, Any]]:
    """One Braintrust row per eval query."""
    return [
        {
            "input": result.example.input,
            "output": result.reranked.labels[:TOP],
            "expected": result.example.expected,
            "scores": result.metrics("reranker"),
            "metadata": {"baseline_top": result.baseline.labels[:TOP], "finetune_id": run.finetune_id},
        }
        for result in run.results
    ]


class BraintrustTracker:
    """Logs each run as a Braintrust experiment named like the run.

    Args:
        project: the Braintrust project (created if missing).
        app_url: the Braintrust app to log in to (self-hosted: your deployment's URL); the login answer names the
            API endpoint the rows go to.
        org_name: the organisation, when the key belongs to several.
        sweep: set by the sweep callback: the sweep's name, kept in each job's experiment metadata and tags.
        strict: fail the run when Braintrust fails (otherwise: one line; the run folder and other trackers keep it).
        timeout_s: the most one run's login, experiment creation and upload may take.
    """

    def __init__(
        self,
        project: str = "reranker-finetuning",
        app_url: str = "https://www.braintrust.dev",
        org_name: str | None = None,
        sweep: str | None = None,
        strict: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        self.project = project
        self.app_url = app_url
        self.org_name = org_name
        self.sweep = sweep
        self.strict = strict
        self.timeout_s = timeout_s
        self._api_key = env_key(BRAINTRUST_KEYS)

    def start_sweep(self, name: str, sweep_dir: Path) -> str:
        """Braintrust experiments do not nest: the sweep is the name its jobs' experiments carry."""
        return name

    def end_sweep(self, record: SweepRecord | None, sweep_dir: Path) -> None:
        return None

    def log_failure(self, run: FailedRun) -> None:
        """Nothing: a Braintrust experiment is an evaluation, and a failed run has none."""
        return None

    def log_run(self, run: TrackedRun) -> None:
        rows: list[dict[str, Any]] = scrub(eval_rows(run))
        if self._api_key is None:
            path = run.run_folder / ROWS_FILE
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
            print(f"Braintrust: no BRAINTRUST_API_KEY in the environment, nothing sent; {len(rows)} rows are in {path}")
            return
        self._send(run, rows)

    def _send(self, run: TrackedRun, rows: list[dict[str, Any]]) -> None:
        bound_sdk(self.timeout_s)
        import braintrust
        from braintrust.logger import BraintrustState

        metadata = {**run.tags, "params": dict(run.params), "metrics": dict(run.metrics)}
        if self.sweep:
            metadata["sweep"] = self.sweep
        experiment = braintrust.init(
            project=self.project,
            experiment=run.name,
            app_url=self.app_url,
            api_key=self._api_key,
            org_name=self.org_name,
            metadata=metadata,
            state=BraintrustState(),
            set_current=False,
        )
        for row in rows:
            experiment.log(**row)
        experiment.flush()
        print(f"Braintrust: {len(rows)} rows logged to experiment {experiment.name} in project {self.project}")
