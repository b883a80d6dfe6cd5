"""The list of trackers a run records into (``trackers: [mlflow, braintrust]``), each isolated from the others.

Like lightning-hydra-template's many-loggers config, ``trackers:`` is a dict of ``_target_`` nodes, one per
selected option of ``conf/trackers/``. ``Trackers`` calls each in turn, in a worker thread bounded by the
tracker's ``timeout_s``: a tracker that raises or does not answer in time is reported in one line, and the others
and the run folder (written before any tracker is called) still hold the run. A tracker with ``strict: true``
fails the run instead, after the others have recorded it.
"""

from __future__ import annotations

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
from experiments.secrets import redact, redact_bytes, scrub
from experiments.tracking.base import FailedRun, TrackedRun, Tracker


class TrackerFailed(UserError):
    """A tracker marked ``strict`` failed; the run folder and the other trackers still hold the run."""


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

    def log_run(self, run: TrackedRun) -> None:
        """Record a finished run in every tracker, with params, tags and files scrubbed of secrets."""
        with scrubbed_copy(run.run_folder) as artifacts:
            clean = replace(run, params=scrub(dict(run.params)), tags=scrub(dict(run.tags)), artifacts=artifacts)
            self._each(lambda tracker: tracker.log_run(clean))

    def log_failure(self, run: FailedRun) -> None:
        clean = FailedRun(name=run.name, params=scrub(dict(run.params)), error=redact(run.error))
        self._each(lambda tracker: tracker.log_failure(clean))

    def _each(self, action: Callable[[Tracker], None]) -> None:
        failures: list[str] = []
        for key, tracker in self.trackers.items():
            self._call(key, tracker, partial(action, tracker), failures)
        if failures:
            raise TrackerFailed(failures[0])

    def _call(
        self, key: str, tracker: Tracker, action: Callable[[], object], failures: list[str] | None = None
    ) -> object:
        """Run ``action`` within ``tracker.timeout_s``; report a failure in one line (collect it when strict)."""
        outcome: dict[str, object] = {}

        def work() -> None:
            try:
                outcome["value"] = action()
            except BaseException as error:  # reported below, in the caller's thread
                outcome["error"] = error

        worker = threading.Thread(target=work, name=f"tracker-{key}", daemon=True)
        worker.start()
        worker.join(tracker.timeout_s)
        if worker.is_alive():
            problem = f"no answer within {tracker.timeout_s:g} s (trackers.{key}.timeout_s)"
        elif "error" in outcome:
            error = outcome["error"]
            while isinstance(error, BaseExceptionGroup) and error.exceptions:  # a batch of uploads: the first
                error = error.exceptions[0]
            problem = redact(f"{type(error).__name__}: {error}".splitlines()[0])[:300]
        else:
            return outcome.get("value")
        if tracker.strict and failures is not None:
            failures.append(f"tracker {key} failed ({problem}); trackers.{key}.strict=true fails the run")
        else:
            print(
                f"warning: tracker {key} failed ({problem}); the run folder and the other trackers have the run",
                file=sys.stderr,
            )
        return None


@contextmanager
def scrubbed_copy(folder: Path) -> Iterator[Path]:
    """A temporary copy of ``folder`` in which every file has secret values redacted."""
    with tempfile.TemporaryDirectory(prefix="run-artifacts-") as temporary:
        target = Path(temporary) / folder.name
        target.mkdir()
        for path in sorted(folder.rglob("*")):
            destination = target / path.relative_to(folder)
            if path.is_dir():
                destination.mkdir(exist_ok=True)
            elif path.is_file() and not path.name.endswith(".partial"):
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(redact_bytes(path.read_bytes()))
        yield target
        shutil.rmtree(target, ignore_errors=True)
