"""The tracker adapter: a finished (or failed) run, turned into the records every tracker receives.

The pipeline calls ``track`` once, after the run folder is complete, with the ``RunRecord`` it wrote as
``metrics.json``: the tracked metrics come from that record (``run_metrics``), the same road the sweep's parent
run takes when it reads the winner's folder back. ``track_failure`` records a run that failed after validation.
``start_tags`` are the tags a run has from its start (its uid and MLflow's context tags), so the run opened live
(``tracking.live``) and the final record are one run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from experiments.outcome import RunOutcome
from experiments.run_folder import RunRecord
from experiments.secrets import redact
from experiments.tracking.base import FailedRun, TrackedRun, run_metrics
from experiments.tracking.context import run_context
from experiments.tracking.live import LiveRun
from experiments.tracking.trackers import Trackers

RUN_UID = "experiments.run_uid"


def start_tags() -> dict[str, str]:
    """Tags a run has from its start: a unique ``experiments.run_uid`` (what the live run, the final record and
    ``python -m experiments.sync`` find the run by) and who ran it, from what code (``tracking.context``)."""
    return {**run_context(), RUN_UID: uuid.uuid4().hex}


def tracked_run(outcome: RunOutcome, record: RunRecord) -> TrackedRun:
    """Params, tags (digests, the fine-tune id, the run's uid), metrics, per-query rows, the run folder and the
    categoriser as the run's model.

    A miner's top-up counts (``KMeansMiner.topped_up_negatives``) are bookkeeping, not tags: they are in the run
    folder's ``metrics.json`` (``finetune_set.fill_notes``), uploaded with the run."""
    fit, finetune_set = outcome.fit, outcome.finetune_set
    tags = {
        **outcome.tags,
        "finetune_items": str(record.finetune_set.items),
        RUN_UID: outcome.tags.get(RUN_UID) or uuid.uuid4().hex,
        "finetune_set_digest": record.finetune_set.digest,
        "dataset_digest": record.dataset.digest,
        **({"finetune_id": fit.finetune_id} if fit else {}),
    }
    return TrackedRun(
        name=outcome.run_name,
        params=outcome.params,
        tags=tags,
        metrics=run_metrics(record),
        splits=outcome.splits,
        finetune_set=finetune_set,
        summary=outcome.summary,
        results=outcome.evaluation.results,
        finetune_id=record.finetune_id,
        run_folder=outcome.output_dir,
        artifacts=outcome.output_dir,
        loss_history=list(fit.loss_history) if fit else [],
        categoriser=outcome.categoriser,
        started_at=outcome.started_at,
        ended_at=outcome.ended_at,
    )


def track(trackers: Trackers, outcome: RunOutcome, record: RunRecord, live: LiveRun | None = None) -> None:
    """Record a finished run in every tracker (the run folder, ``record`` included, is already written), into the
    run opened ``live`` when the run started: once the run is kept pending, its feeds get ``live.CLOSE_S`` to send
    what is queued, then the trackers record it."""
    trackers.log_run(tracked_run(outcome, record), kept=None if live is None else live.close)


def track_failure(
    trackers: Trackers,
    name: str,
    params: Mapping[str, object],
    error: BaseException,
    folder: Path,
    tags: Mapping[str, str] | None = None,
    started_at: float | None = None,
    live: LiveRun | None = None,
) -> None:
    """Record a run that failed after validation, with its params, diagnostic tags, start time and the reason, as
    FAILED (into the run opened ``live``); a run stopped (SIGTERM, Ctrl-C) is kept pending as KILLED in ``folder``
    instead, so the stop never waits on a tracker (``python -m experiments.sync`` records it): its live run gets
    at most ``live.END_S`` to be marked KILLED."""
    reason = redact(f"{type(error).__name__}: {error}")
    status = "FAILED" if isinstance(error, Exception) else "KILLED"
    run = FailedRun(name, params, reason, status, tags=dict(tags or {}), started_at=started_at)
    if status == "FAILED":
        if live is not None:
            live.close()
        trackers.log_failure(run)
    else:
        if live is not None:
            live.end(status)
        trackers.keep_killed(run, folder)
