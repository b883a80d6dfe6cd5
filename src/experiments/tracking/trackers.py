"""The list of trackers a run records into (``trackers: [mlflow, braintrust]``), each isolated from the others.

Like lightning-hydra-template's many-loggers config, ``trackers:`` is a dict of ``_target_`` nodes, one per
selected option of ``conf/trackers/``. ``Trackers`` calls each in turn, in a worker thread bounded by the
tracker's ``timeout_s``: a tracker that raises or does not answer in time is reported in one line, and the others
and the run folder (written before any tracker is called) still hold the run. A tracker with ``strict: true``
fails the run instead, after the others have recorded it.

A finished run that a tracker failed to record (its server down, or dying mid-run) is kept in the run folder,
``pending-trackers/<tracker>.pickle``, and ``python -m experiments.sync`` sends it later (``experiments.sync``).
A process stopped (SIGTERM, Ctrl-C) while a tracker records asks it to end its open run KILLED (``abort``).
"""

from __future__ import annotations

import pickle
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

from experiments.errors import UserError
from experiments.files import write_atomic
from experiments.secrets import redact, redact_bytes, scrub
from experiments.tracking.base import FailedRun, TrackedRun, Tracker

#: The folder of a run folder holding the runs a tracker could not record yet, one ``<tracker>.pickle`` each.
PENDING = "pending-trackers"
#: How long a tracker may take to mark its open run KILLED when the process is being stopped.
ABORT_TIMEOUT_S = 10.0
SEND_LATER = "python -m experiments.sync"


class TrackerFailed(UserError):
    """A tracker marked ``strict`` failed; the run folder and the other trackers still hold the run."""


class _Failed:
    """What ``Trackers._call`` returns for a tracker that failed (None is a valid answer)."""


FAILED = _Failed()


class Trackers:
    """Calls every configured tracker; one failing tracker never loses the others' record.

    Args:
        trackers: tracker name (its config key, e.g. ``mlflow``) → tracker; empty records nothing.
    """

    def __init__(self, trackers: Mapping[str, Tracker] | None = None) -> None:
        self.trackers = dict(trackers or {})

    def __len__(self) -> int:
        return len(self.trackers)

    def start_sweep(self, name: str) -> dict[str, str]:
        """Open a sweep's parent in every tracker; returns tracker name → parent id (for the jobs)."""
        parents: dict[str, str] = {}
        for key, tracker in self.trackers.items():
            parent = self._call(key, tracker, partial(tracker.start_sweep, name))
            if isinstance(parent, str):
                parents[key] = parent
        return parents

    def end_sweep(self, keys: list[str], sweep_dir: Path) -> None:
        """Close the parents opened by ``start_sweep``; they may attach the sweep's report from ``sweep_dir``."""
        for key in keys:
            tracker = self.trackers[key]
            self._call(key, tracker, partial(tracker.end_sweep, sweep_dir))

    def log_run(self, run: TrackedRun) -> list[str]:
        """Record a finished run in every tracker, with params, tags and files scrubbed of secrets.

        A tracker that fails leaves the run pending in the run folder (``pending-trackers/<tracker>.pickle``).

        Returns:
            The keys of the trackers that failed (the run is pending for them).
        """
        with scrubbed_copy(run.run_folder) as artifacts:
            clean = replace(run, params=scrub(dict(run.params)), tags=scrub(dict(run.tags)), artifacts=artifacts)
            later = f"; it is kept in the run folder: send it later with `{SEND_LATER} {run.run_folder}`"
            failed, strict_failures = self._each(lambda tracker: tracker.log_run(clean), later)
        for key in failed:
            try:
                save_pending(replace(clean, artifacts=run.run_folder), key)
            except (OSError, pickle.PicklingError, TypeError, AttributeError) as error:  # the folder keeps the run
                print(f"warning: the run could not be kept for tracker {key} ({describe(error)})", file=sys.stderr)
        if strict_failures:
            raise TrackerFailed(strict_failures[0])
        return failed

    def log_failure(self, run: FailedRun) -> None:
        clean = replace(run, params=scrub(dict(run.params)), error=redact(run.error))
        _, strict_failures = self._each(lambda tracker: tracker.log_failure(clean))
        if strict_failures:
            raise TrackerFailed(strict_failures[0])

    def _each(self, action: Callable[[Tracker], None], later: str = "") -> tuple[list[str], list[str]]:
        """Call ``action`` on every tracker: the keys of those that failed, and the messages of the strict ones.

        ``later`` ends the failure's line (how to send the run later)."""
        failed: list[str] = []
        strict_failures: list[str] = []
        for key, tracker in self.trackers.items():
            if self._call(key, tracker, partial(action, tracker), strict_failures, later) is FAILED:
                failed.append(key)
        return failed, strict_failures

    def _call(
        self,
        key: str,
        tracker: Tracker,
        action: Callable[[], object],
        failures: list[str] | None = None,
        later: str = "",
    ) -> object:
        """Run ``action`` within ``tracker.timeout_s``; report a failure in one line (collect it when strict).

        Returns the action's value, or ``FAILED``. Stopped meanwhile (SIGTERM, Ctrl-C), the tracker is asked to
        end its open run KILLED before the stop goes on.
        """
        outcome = in_thread(key, action, tracker.timeout_s, on_stop=partial(self._abort, key, tracker))
        if "running" in outcome:
            problem = f"no answer within {tracker.timeout_s:g} s (trackers.{key}.timeout_s)"
        elif "error" in outcome:
            problem = describe(outcome["error"])
        else:
            return outcome.get("value")
        if tracker.strict and failures is not None:
            failures.append(f"tracker {key} failed ({problem}); trackers.{key}.strict=true fails the run{later}")
        else:
            print(
                f"warning: tracker {key} failed ({problem}); the run folder and the other trackers have the run{later}",
                file=sys.stderr,
            )
        return FAILED

    @staticmethod
    def _abort(key: str, tracker: Tracker) -> None:
        abort = getattr(tracker, "abort", None)
        if abort is not None:
            in_thread(key, abort, min(tracker.timeout_s, ABORT_TIMEOUT_S))


def describe(error: object) -> str:
    """A failure in one short line, secrets redacted."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:  # a batch of uploads: the first
        error = error.exceptions[0]
    return redact(f"{type(error).__name__}: {error}".splitlines()[0])[:300]


def in_thread(
    key: str, action: Callable[[], object], timeout_s: float, on_stop: Callable[[], None] | None = None
) -> dict[str, object]:
    """Run ``action`` in a daemon thread for at most ``timeout_s``: ``{"value"}``, ``{"error"}`` or ``{"running"}``.

    A ``BaseException`` raised in the caller's thread meanwhile (SIGTERM, Ctrl-C) calls ``on_stop`` and goes on.
    """
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["value"] = action()
        except BaseException as error:  # reported by the caller, in its own thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name=f"tracker-{key}", daemon=True)
    worker.start()
    try:
        worker.join(timeout_s)
    except BaseException:
        if on_stop is not None:
            on_stop()
        raise
    if worker.is_alive():
        outcome["running"] = True
    return outcome


def save_pending(run: TrackedRun, key: str) -> Path:
    """Keep a run that tracker ``key`` failed to record, for ``python -m experiments.sync``."""
    folder = run.run_folder / PENDING
    folder.mkdir(exist_ok=True)
    path = folder / f"{key}.pickle"
    write_atomic(path, pickle.dumps(run))
    return path


@contextmanager
def scrubbed_copy(folder: Path) -> Iterator[Path]:
    """A temporary copy of ``folder`` in which every file has secret values redacted."""
    with tempfile.TemporaryDirectory(prefix="run-artifacts-") as temporary:
        target = Path(temporary) / folder.name
        target.mkdir()
        for path in sorted(folder.rglob("*")):
            if PENDING in path.relative_to(folder).parts:
                continue
            destination = target / path.relative_to(folder)
            if path.is_dir():
                destination.mkdir(exist_ok=True)
            elif path.is_file() and not path.name.endswith(".partial"):
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(redact_bytes(path.read_bytes()))
        yield target
        shutil.rmtree(target, ignore_errors=True)
