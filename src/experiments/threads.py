"""Threads that share the CPU: a run next to other work should slow by about its share of the cores, not 5-50x.

Two causes make a busy machine far worse than a fair share, and each has a setting here:

- **Spinning.** OpenMP's default wait policy keeps idle worker threads spinning between parallel regions, so
  next to a busy process they burn the very cores the working threads wait for; on idle cores the same spinning
  answers sooner (a waking thread costs tens of microseconds, a parallel region a few). So the policy follows the
  machine. torch's OpenMP runtime reads ``OMP_WAIT_POLICY`` once, when it loads: ``choose_wait_policy`` (``run.py``)
  keeps OpenMP's default (spin briefly, then sleep) when every core is free at the start and sets ``PASSIVE`` when
  other work is running; ``suggest`` and the served model, which live long and score with ONNX Runtime, keep
  torch ``PASSIVE`` (``passive_waits``).
  ONNX Runtime's pool is decided per call instead (``SpinGate``, used by ``experiments.onnx``): its threads spin
  while no other process keeps a core busy, re-checked once a second from the CPU-time counters, so a neighbour
  that starts later turns spinning off. An ``OMP_WAIT_POLICY`` set by the user fixes both.
- **Stragglers.** A parallel region ends when its slowest thread does. With one thread per core and a core
  shared with a busy process, every region waits for the thread that gets half a core. ``fair_threads`` counts
  the cores that are free when the process starts and uses that many threads (at least one). Only inference
  (``suggest``, the served model) adapts this way: a *run* uses every core (or ``EXPERIMENTS_THREADS``) whatever
  the load, because the thread count changes the order of floating-point sums in training, and the same seed and
  data must give the same model and metrics on a busy machine as on an idle one.

``EXPERIMENTS_THREADS`` overrides the count, and an ``OMP_WAIT_POLICY`` already in the environment is kept.
joblib sweeps keep their own split (cores divided by jobs; ``experiments.app.limit_threads``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

#: Seconds of CPU usage sampled to find the free cores.
SAMPLE_S = 0.2
#: Seconds of CPU usage sampled at a run's start to choose torch's wait policy (part of every warm rerun).
POLICY_SAMPLE_S = 0.1
#: Seconds between two looks at the other processes' CPU use while ONNX Runtime scores.
SPIN_CHECK_S = 1.0
#: Set beside ``OMP_WAIT_POLICY`` when this module chose it (not the user): ONNX Runtime then decides per call.
CHOSEN_MARK = "EXPERIMENTS_WAIT_POLICY"


def passive_waits() -> None:
    """Idle OpenMP workers sleep instead of spinning (unless ``OMP_WAIT_POLICY`` is set); call before torch loads."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ[CHOSEN_MARK] = "chosen"


def choose_wait_policy(cores: int | None = None, busy_percent: float | None = None) -> str:
    """torch's OpenMP wait policy for this process, chosen before torch loads, returned as a word.

    The user's ``OMP_WAIT_POLICY`` is kept. Otherwise, when every core is free now, the variable stays unset:
    OpenMP's own default spins for a moment after each parallel region and then sleeps, which takes 16-22% off a
    training step on idle cores like ``ACTIVE`` does, but leaves no thread spinning once training is over
    (``ACTIVE`` spins for good: the idle torch pool then took the cores from the evaluation's ONNX Runtime threads,
    7.8 ms a query instead of 4.2). When other work is running: ``PASSIVE``. The policy never changes a result.

    Args:
        cores: the machine's logical cores (default ``os.cpu_count()``).
        busy_percent: the whole machine's CPU use in percent (default: measured over ``POLICY_SAMPLE_S``).

    Returns:
        ``ACTIVE`` or ``PASSIVE`` (set), or ``default`` (OpenMP's own, left unset).
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"].upper()
    cores = cores or os.cpu_count() or 1
    if busy_percent is None:
        import psutil

        try:
            busy_percent = psutil.cpu_percent(interval=POLICY_SAMPLE_S)
        except Exception:  # no /proc: assume company, the safe side
            busy_percent = 100.0
    os.environ[CHOSEN_MARK] = "chosen"
    if free_cores(cores, busy_percent / 100.0 * cores) >= cores:
        return "default"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"


def free_cores(cores: int, busy_cores: float) -> int:
    """The cores that ``busy_cores`` of other work leave free, rounded to whole cores."""
    return max(0, min(cores, round(cores - busy_cores)))


class CpuCounters(NamedTuple):
    """CPU seconds spent by the whole machine and by this process, at a monotonic wall time."""

    wall: float
    machine_busy: float
    own: float


def read_counters() -> CpuCounters:
    """The counters now (``/proc/stat`` and this process's own times; no sampling sleep)."""
    import psutil

    machine = psutil.cpu_times()
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
    # guest time is already counted in user time on Linux: do not count it twice
    busy -= getattr(machine, "guest", 0.0) + getattr(machine, "guest_nice", 0.0)
    own = psutil.Process().cpu_times()
    return CpuCounters(time.monotonic(), busy, own.user + own.system)


def others_busy_cores(before: CpuCounters, after: CpuCounters, cores: int) -> float:
    """Cores kept busy by other processes between two readings (this process's own threads left out)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    others = (after.machine_busy - before.machine_busy) - (after.own - before.own)
    return max(0.0, min(float(cores), others / wall))


class SpinGate:
    """Whether ONNX Runtime's worker threads may spin between parallel regions, asked before each call.

    Spinning answers one query about 1.5x sooner on idle cores (3.3 against 5.0 ms for the default model on two
    cores) and about 2x later next to a busy process, whose cores the spinning threads then take. So the gate
    spins only while the other processes leave a free core for every thread; it reads the CPU-time counters at
    most once per ``every_s`` (a neighbour that starts later turns spinning off within a second). A user's
    ``OMP_WAIT_POLICY`` fixes the answer: ``ACTIVE`` always spins, ``PASSIVE`` never.

    Args:
        threads: the session's intra-op threads.
        cores: the machine's logical cores (default ``os.cpu_count()``).
        every_s: seconds between readings.
        read: reads the counters (tests pass their own).
        clock: the wall clock of ``read``'s readings.
    """

    def __init__(
        self,
        threads: int,
        cores: int | None = None,
        every_s: float = SPIN_CHECK_S,
        read: Callable[[], CpuCounters] = read_counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threads = threads
        self.cores = cores or os.cpu_count() or 1
        self.every_s = every_s
        self._read = read
        self._clock = clock
        # one thread has no workers to spin
        self.fixed = False if threads <= 1 else fixed_spinning()
        self._last: CpuCounters | None = None
        if self.fixed is None:
            try:
                self._last = read()
            except Exception as error:  # no /proc (an odd container): never spin, say so once
                log.info("cannot read the CPU counters (%s): ONNX Runtime threads will sleep when idle", error)
                self.fixed = False
        self._spin: bool | None = self.fixed

    def spin(self) -> bool:
        """True when the threads may spin now (the counters are read at most once per ``every_s``)."""
        if self.fixed is not None:
            return self.fixed
        assert self._last is not None
        if self._spin is not None and self._clock() - self._last.wall < self.every_s:
            return self._spin
        try:
            now = self._read()
            if now.wall - self._last.wall < SAMPLE_S / 4:  # too short a window to tell: look a little longer
                time.sleep(SAMPLE_S / 4)
                now = self._read()
        except Exception as error:  # the counters went away: sleep from now on
            log.info("cannot read the CPU counters (%s): ONNX Runtime threads will sleep when idle", error)
            self.fixed = False
            return False
        others = others_busy_cores(self._last, now, self.cores)
        self._spin = free_cores(self.cores, others) >= self.threads
        self._last = now
        return self._spin


def fixed_spinning() -> bool | None:
    """The user's ``OMP_WAIT_POLICY`` as a spinning answer (True for ACTIVE), None when it is ours to choose."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").upper()
    if not policy or os.environ.get(CHOSEN_MARK) == "chosen":
        return None
    return policy == "ACTIVE"


def fair_threads(cores: int | None = None, busy_percent: float | None = None) -> int:
    """Intra-op threads for this process: ``EXPERIMENTS_THREADS``, else the cores other work leaves free.

    Args:
        cores: the machine's logical cores (default ``os.cpu_count()``).
        busy_percent: the whole machine's CPU use in percent (default: measured over ``SAMPLE_S``).

    Raises:
        ConfigError: ``EXPERIMENTS_THREADS`` is not a whole number of at least 1.
    """
    override = os.environ.get("EXPERIMENTS_THREADS")
    if override:
        if not override.isdigit() or int(override) < 1:
            from experiments.errors import ConfigError

            raise ConfigError(
                f"EXPERIMENTS_THREADS={override!r} must be a whole number of at least 1 (or unset: use the free cores)"
            )
        return int(override)
    cores = cores or os.cpu_count() or 1
    if busy_percent is None:
        import psutil

        try:
            busy_percent = psutil.cpu_percent(interval=SAMPLE_S)
        except Exception:  # an unreadable /proc/stat: take every core, as torch would by itself
            busy_percent = 0.0
    return max(1, free_cores(cores, busy_percent / 100.0 * cores))


def share_the_cpu(adaptive: bool = True) -> int:
    """Set torch's intra-op threads (ONNX Runtime sessions follow torch's count).

    torch is not imported for this: a run whose models, embeddings and scores are all cached never needs it
    (1.3-1.8 s of a warm rerun). Before torch loads, ``OMP_NUM_THREADS`` carries the count, which torch reads
    when it starts its pool; once it is loaded, ``torch.set_num_threads`` does.

    Args:
        adaptive: ``fair_threads()`` (inference); False: ``EXPERIMENTS_THREADS`` or every core, whatever the load
            (a run: its results must not depend on what else the machine was doing).
    """
    cores = os.cpu_count() or 1
    threads = fair_threads() if adaptive else fair_threads(cores=cores, busy_percent=0.0)
    set_torch_threads(threads)
    log.info("using %d of %d cores", threads, cores)
    return threads


def set_torch_threads(threads: int) -> None:
    """torch's intra-op threads, whether or not torch is loaded yet (without loading it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    else:
        torch.set_num_threads(threads)
