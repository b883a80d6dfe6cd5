"""The list of trackers a run records into (``trackers: [mlflow, braintrust]``), each isolated from the others.

Like lightning-hydra-template's many-loggers config, ``trackers:`` is a dict of ``_target_`` nodes, one per
selected option of ``conf/trackers/``. ``Trackers`` calls each in turn, in a worker thread bounded by the
tracker's ``timeout_s``: a tracker that raises or does not answer in time is reported in one line, and the others
and the run folder (written before any tracker is called) still hold the run. A tracker with ``strict: true``
fails the run instead, after the others have recorded it.

A finished run is written to the run folder as ``pending-trackers/<tracker>.json`` (plain data:
``tracking.pending``) *before* each tracker is called, and removed once that tracker has recorded it: a tracker that
fails (its server down, or dying mid-run), a disk that fills while the tracker writes, a SIGTERM or a ``kill -9``
while it records all leave the run pending, and ``python -m experiments.sync`` sends it later (``experiments.sync``).
A process stopped (SIGTERM, Ctrl-C) gives each tracker at most ``ABORT_TIMEOUT_S`` to end its open run KILLED
(``abort``) and then goes; a run stopped before recording is kept pending as KILLED (``keep_killed``) without
contacting any tracker, so a stop never waits on a server.
"""

from __future__ import annotations

import errno
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
from experiments.folders import DISK_ERRNOS, DISK_FULL_WORDS
from experiments.records.sweep import SweepRecord
from experiments.secrets import redact, redact_bytes, scrub
from experiments.tracking.base import FailedRun, TrackedRun, Tracker
from experiments.tracking.pending import PENDING, pending_name, remove_if_empty, save_pending

#: How long a tracker may take to mark its open run KILLED when the process is being stopped (a scheduler's grace
#: period is short; what is not marked now is marked by the next run or by sync).
ABORT_TIMEOUT_S = 3.0
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
        #: The last call's failures, by tracker key.
        self.errors: dict[str, BaseException] = {}

    def __len__(self) -> int:
        return len(self.trackers)

    def start_sweep(self, name: str, sweep_dir: Path) -> dict[str, str]:
        """Open a sweep's parent in every tracker; returns tracker name → parent id (for the jobs)."""
        parents: dict[str, str] = {}
        for key, tracker in self.trackers.items():
            parent = self._call(key, tracker, partial(tracker.start_sweep, redact(name), sweep_dir))
            if isinstance(parent, str):
                parents[key] = parent
        return parents

    def end_sweep(self, keys: list[str], record: SweepRecord | None, sweep_dir: Path) -> None:
        """Close the parents opened by ``start_sweep``, handing each the sweep's record (``report.json``, as
        written: redacted) and its folder, for the report's files; None when the sweep wrote no report."""
        clean = None if record is None else SweepRecord.model_validate_json(redact(record.to_json()))
        for key in keys:
            tracker = self.trackers[key]
            self._call(key, tracker, partial(tracker.end_sweep, clean, sweep_dir))

    def log_run(self, run: TrackedRun, kept: Callable[[], None] | None = None) -> list[str]:
        """Record a finished run in every tracker, with params, tags and files scrubbed of secrets.

        A tracker that fails leaves the run pending in the run folder (``pending-trackers/<tracker>.json``).
        ``kept`` is called once the run is kept pending, before any tracker is: what it waits on (the live feeds
        sending what is queued) can never cost the record, whatever stops the process meanwhile.

        Returns:
            The keys of the trackers that failed (the run is pending for them).
        """
        with scrubbed_copy(run.run_folder) as artifacts:
            clean = replace(
                run,
                name=redact(run.name),
                params=scrub(dict(run.params)),
                tags=scrub(dict(run.tags)),
                artifacts=artifacts,
            )
            unkept = self._keep(replace(clean, artifacts=run.run_folder), run.run_folder)
            if kept is not None:
                kept()
            no_room = {key: error for key, error in unkept.items() if _no_room(error)}
            later = f"; it is kept in the run folder: send it later with `{SEND_LATER} {run.run_folder}`"
            failed, strict_failures = self._each(lambda tracker: tracker.log_run(clean), later, no_room)
        for key in self.trackers:
            if key not in failed:
                (run.run_folder / PENDING / pending_name(key)).unlink(missing_ok=True)
        remove_if_empty(run.run_folder / PENDING)
        lost = [key for key in failed if key in unkept]
        for key in lost:
            if key not in no_room:  # the folder still holds the run; only the resend is lost
                print(
                    f"warning: the run could not be kept for tracker {key} ({describe(unkept[key])})", file=sys.stderr
                )
        if any(key in no_room for key in lost):
            first = next(key for key in lost if key in no_room)
            raise NotKept(run.run_folder, [first], no_room[first])
        full = [key for key in failed if is_disk_full(self.errors.get(key))]
        if full:
            cause = self.errors[full[0]]
            where = _file_of(cause) or _store_file(self.trackers[full[0]])
            raise RecordingDiskFull(run.run_folder, full, cause, where)
        if strict_failures:
            raise TrackerFailed(strict_failures[0])
        return failed

    def _keep(self, run: TrackedRun | FailedRun, folder: Path) -> dict[str, BaseException]:
        """Write ``run`` pending for every tracker; the trackers it could not be kept for, with the reason."""
        unkept: dict[str, BaseException] = {}
        for key in self.trackers:
            try:
                save_pending(run, folder, key)
            except (OSError, ValueError, TypeError) as error:  # a full disk; a run that cannot be kept as data
                unkept[key] = error
        return unkept

    def keep_killed(self, run: FailedRun, folder: Path) -> None:
        """A run stopped (SIGTERM, Ctrl-C) before it was recorded: kept pending as KILLED for every tracker, without
        contacting any (a stop never waits on a server); ``python -m experiments.sync`` records it."""
        params, tags = scrub(dict(run.params)), scrub(dict(run.tags))
        clean = replace(run, name=redact(run.name), params=params, tags=tags, error=redact(run.error))
        folder.mkdir(parents=True, exist_ok=True)
        for key, error in self._keep(clean, folder).items():
            print(f"warning: the stopped run could not be kept for tracker {key} ({describe(error)})", file=sys.stderr)
        if self.trackers:
            print(f"note: the run is recorded KILLED by `{SEND_LATER} {folder}`", file=sys.stderr)

    def log_failure(self, run: FailedRun) -> list[str]:
        """Record a failed (or killed) run in every tracker; the keys of the trackers that failed."""
        clean = replace(
            run,
            name=redact(run.name),
            params=scrub(dict(run.params)),
            tags=scrub(dict(run.tags)),
            error=redact(run.error),
        )
        failed, strict_failures = self._each(lambda tracker: tracker.log_failure(clean))
        if strict_failures:
            raise TrackerFailed(strict_failures[0])
        return failed

    def _each(
        self, action: Callable[[Tracker], None], later: str = "", unkept: Mapping[str, object] | None = None
    ) -> tuple[list[str], list[str]]:
        """Call ``action`` on every tracker: the keys of those that failed, and the messages of the strict ones.

        ``later`` ends the failure's line (how to send the run later); the trackers in ``unkept`` (the run could not
        be kept for them) and disk-full failures are not printed: the caller reports them as the run's error."""
        failed: list[str] = []
        strict_failures: list[str] = []
        self.errors = {}
        for key, tracker in self.trackers.items():
            quiet = key in (unkept or {})
            if self._call(key, tracker, partial(action, tracker), strict_failures, later, quiet) is FAILED:
                failed.append(key)
        return failed, strict_failures

    def _call(
        self,
        key: str,
        tracker: Tracker,
        action: Callable[[], object],
        failures: list[str] | None = None,
        later: str = "",
        quiet: bool = False,
    ) -> object:
        """Run ``action`` within ``tracker.timeout_s``; report a failure in one line (collect it when strict).

        Returns the action's value, or ``FAILED`` (the error is kept in ``errors[key]``; ``quiet`` or a full disk:
        not printed, the caller reports it). Stopped meanwhile (SIGTERM, Ctrl-C), the tracker gets
        ``ABORT_TIMEOUT_S`` to end its open run KILLED before the stop goes on.
        """
        outcome = in_thread(key, action, tracker.timeout_s, on_stop=partial(self._abort, key, tracker))
        if "running" in outcome:
            problem = f"no answer within {tracker.timeout_s:g} s (trackers.{key}.timeout_s)"
            self.errors[key] = TimeoutError(problem)
        elif "error" in outcome:
            problem = describe(outcome["error"])
            error = outcome["error"]
            self.errors[key] = error if isinstance(error, BaseException) else RuntimeError(problem)
        else:
            return outcome.get("value")
        if quiet or is_disk_full(self.errors[key]):
            return FAILED
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
    """A failure in one short line, secrets redacted; a server that cannot be reached is said so, whatever the
    SDK wrapped the connection error in (Braintrust: "error when constructing records to flush")."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:  # a batch of uploads: the first
        error = error.exceptions[0]
    unreachable = _connection_failure(error)
    if unreachable is not None:
        return redact(f"server unreachable: {type(unreachable).__name__}: {unreachable}".splitlines()[0])[:300]
    return redact(f"{type(error).__name__}: {error}".splitlines()[0])[:300]


#: Connection failures of the HTTP stacks the SDKs use (requests, urllib3, httpx), by class name.
_CONNECTION_ERRORS = {"ConnectionError", "NewConnectionError", "MaxRetryError", "ConnectError", "ConnectTimeout"}


def _connection_failure(error: object) -> BaseException | None:
    """The connection error behind ``error`` (itself, or what it was raised from), if any."""
    seen: set[int] = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConnectionError) or type(error).__name__ in _CONNECTION_ERRORS:
            return error
        error = error.__cause__ or error.__context__
    return None


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


def _store_file(tracker: Tracker) -> str | None:
    """The local file a tracker writes its records to (``sqlite:///<file>``), to name it when the disk is full."""
    uri = str(getattr(tracker, "tracking_uri", "") or "")
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


def _file_of(error: BaseException | None) -> str | None:
    """The file a disk error names (on ``error`` or an error it was raised from): e.g. the logged model's folder,
    which is not the tracker's store."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.filename:
            return str(error.filename)
        error = error.__cause__ or error.__context__
    return None


def _no_room(error: BaseException) -> bool:
    """A write refused by the disk itself (full, read-only, not writable), not by the run's data."""
    return isinstance(error, OSError) and error.errno in DISK_ERRNOS


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or an error it was raised from) is a full disk: ENOSPC / EDQUOT, or a library's words
    for it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(error) for words in DISK_FULL_WORDS):
            return True
        error = error.__cause__ or error.__context__
    return False


class RecordingDiskFull(OSError):
    """The disk filled while a tracker recorded the run: the run is kept pending (``pending-trackers/``)."""

    def __init__(self, run_folder: Path, keys: list[str], cause: BaseException, store: str | None) -> None:
        super().__init__(errno.ENOSPC, f"No space left on device while tracker {keys[0]} recorded the run", store)
        self.note = f"; the run is kept: send it with `{SEND_LATER} {run_folder}` once there is space"
        self.__cause__ = cause


class NotKept(OSError):
    """A tracker failed and the run could not be kept pending for it either (the run folder's disk is full)."""

    def __init__(self, run_folder: Path, keys: list[str], cause: BaseException) -> None:
        number = cause.errno if isinstance(cause, OSError) and cause.errno else errno.ENOSPC
        super().__init__(number, f"tracker {keys[0]} failed and the run could not be kept", str(run_folder / PENDING))
        self.note = f"; tracker {keys[0]} did not record the run ({describe(cause)}): rerun it once there is space"
        self.__cause__ = cause


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
