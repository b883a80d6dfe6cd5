"""A run's live log: the tracker run opened when the run starts, and the points sent while it trains.

``start_live`` opens, in every tracker that can (``open_live``), the run that the final record will
finish, and returns a ``LiveRun``: the ``FitProgress`` the pipeline hands the reranker. Each tracker gets its own
``LiveFeed``, a daemon thread fed through a bounded queue: a point is queued without waiting (dropped, and
counted, when the queue is full), so a slow or dead server never slows training. The feed stops at the first
failure (one line says so); when the run ends, ``close`` waits at most ``CLOSE_S`` for what is queued. What the
feed did not send is not lost: the run folder holds the whole record, and the final record (or
``python -m experiments.sync`` after it) sends it.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from experiments.rerankers.base import FitStage
from experiments.secrets import redact, scrub
from experiments.tracking.base import validation_key as objective_key
from experiments.tracking.trackers import Trackers, describe

#: Points waiting for a feed's thread; more are dropped (training never waits for a tracker).
QUEUE_SIZE = 1000
#: How long the end of a run waits for the live feeds to send what is queued (all feeds together).
CLOSE_S = 2.0
#: How long a stopped run (SIGTERM, Ctrl-C, a failure before the record) waits to mark its live runs ended (all
#: feeds together): well inside the 2 s in which a stop ends the process, whatever the server does.
END_S = 1.0
#: The training loss of the run's own fine-tune (the same key as the final record's loss history).
TRAIN_LOSS = "train_loss"


@dataclass(frozen=True)
class Point:
    """One metric value at an optimiser step (or an epoch count), stamped when it happened."""

    key: str
    value: float
    step: int
    timestamp_ms: int


@dataclass(frozen=True)
class LiveStart:
    """What a live run is opened with: the run's name, knobs, tags and start (seconds since the epoch)."""

    name: str
    params: Mapping[str, object]
    tags: Mapping[str, str]
    started_at: float


class LiveTracker(Protocol):
    """A tracker that can record a run while it happens (optional; ``MLflowTracker`` can).

    ``open_live`` opens the run that ``log_run`` / ``log_failure`` later finish; ``log_live`` adds points to it;
    ``end_live`` ends it with a status when the process is being stopped. Each may block (it talks to a server):
    only a ``LiveFeed``'s thread calls them.
    """

    def open_live(self, start: LiveStart) -> None: ...

    def log_live(self, points: Sequence[Point]) -> None: ...

    def end_live(self, status: str) -> None: ...


def loss_key(stage: FitStage) -> str:
    """``train_loss`` for the run's own fine-tune, ``selection_train_loss`` for the fit that chooses epochs."""
    return TRAIN_LOSS if stage == "final" else f"selection_{TRAIN_LOSS}"


def curve_key(metric: str) -> str:
    """The per-epoch validation curve of a choice (``selection_validation_mrr_at_1``): under its own name, as
    MLflow shows a metric's point at the highest step as its value, and the chosen setting's own score is the
    objective ``validation_mrr_at_1`` (``base.headline_metrics``)."""
    return f"selection_{objective_key(metric)}"


class LiveFeed:
    """One tracker's live log: a daemon thread sending queued work in order, never waited on by training."""

    def __init__(self, key: str, tracker: LiveTracker, start: LiveStart, size: int = QUEUE_SIZE) -> None:
        self.key = key
        self.tracker = tracker
        self.dropped = 0
        self._queue: queue.Queue[Point] = queue.Queue(maxsize=size)
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self._end_status: str | None = None
        self._thread = threading.Thread(target=self._work, args=(start,), name=f"live-{key}", daemon=True)
        self._thread.start()

    def put(self, point: Point) -> None:
        """Queue ``point`` without waiting; dropped (and counted) when the queue is full or the feed stopped."""
        if self._stopped.is_set():
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(point)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float) -> bool:
        """Send what is queued within ``timeout_s``, then stop; True when everything queued was sent."""
        self._closing.set()
        self._thread.join(timeout_s)
        self._stopped.set()
        return not self._thread.is_alive()

    def end(self, status: str, timeout_s: float) -> None:
        """Stop sending and end the live run with ``status`` (KILLED), waiting at most ``timeout_s``; a run still
        being opened is ended as soon as it is open."""
        self._end_status = status
        self._stopped.set()
        self._thread.join(timeout_s)

    def _work(self, start: LiveStart) -> None:
        if not self._attempt(lambda: self.tracker.open_live(start)):
            return
        while True:
            status = self._end_status
            if status is not None:
                self._attempt(partial(self.tracker.end_live, status))
                return
            if self._stopped.is_set():
                return
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < QUEUE_SIZE:  # what queued up meanwhile goes in one request
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not self._attempt(partial(self.tracker.log_live, batch)):
                return

    def _attempt(self, action: Callable[[], None]) -> bool:
        """Run ``action``; on failure stop the feed and say so in one line (the final record still sends all)."""
        try:
            action()
        except Exception as error:
            self._stopped.set()
            print(
                f"warning: live logging to tracker {self.key} stopped ({describe(error)}); the run is recorded when "
                "it ends",
                file=sys.stderr,
            )
            return False
        return True


class LiveRun:
    """The run's live log, as the ``FitProgress`` a reranker reports to: every call returns at once.

    Args:
        feeds: one ``LiveFeed`` per tracker that records live (none: every call is a no-op).
    """

    def __init__(self, feeds: Sequence[LiveFeed] = ()) -> None:
        self.feeds = list(feeds)

    def training_loss(self, step: int, loss: float, stage: FitStage) -> None:
        self._put(loss_key(stage), loss, step)

    def validation(self, step: int, scores: Mapping[str, float]) -> None:
        for metric, value in scores.items():
            self._put(curve_key(metric), value, step)

    def _put(self, key: str, value: float, step: int) -> None:
        point = Point(key, float(value), int(step), int(time.time() * 1000))
        for feed in self.feeds:
            feed.put(point)

    def close(self, timeout_s: float = CLOSE_S) -> None:
        """Give the feeds at most ``timeout_s`` (together) to send what is queued, then stop them."""
        deadline = time.monotonic() + timeout_s
        for feed in self.feeds:
            feed.close(max(0.0, deadline - time.monotonic()))

    def end(self, status: str, timeout_s: float = END_S) -> None:
        """The process is being stopped: end each live run with ``status``, within ``timeout_s`` for them all."""
        deadline = time.monotonic() + timeout_s
        for feed in self.feeds:
            feed.end(status, max(0.0, deadline - time.monotonic()))


def start_live(
    trackers: Trackers, name: str, params: Mapping[str, object], tags: Mapping[str, str], started_at: float
) -> LiveRun:
    """Open the run in every tracker that records live (in its feed's thread: this returns at once), secrets
    removed as in the final record; the ``LiveRun`` to report progress to."""
    start = LiveStart(redact(name), scrub(dict(params)), scrub(dict(tags)), started_at)
    feeds = [
        LiveFeed(key, tracker, start)  # type: ignore[arg-type]  # has open_live: a LiveTracker
        for key, tracker in trackers.trackers.items()
        if callable(getattr(tracker, "open_live", None))
    ]
    return LiveRun(feeds)
