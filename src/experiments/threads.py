"""Threads that share the CPU: a run next to other work should slow by about its share of the cores, not 5-50x.

Two causes make a busy machine far worse than a fair share, and each has a setting here:

- **Spinning.** OpenMP's default wait policy keeps idle worker threads spinning between parallel regions, so
  next to a busy process they burn the very cores the working threads wait for. ``OMP_WAIT_POLICY=PASSIVE``
  makes them sleep (``passive_waits``); ONNX Runtime's own pool follows the same setting
  (``session.intra_op.allow_spinning``, in ``experiments.onnx``). It must be set before torch is imported: the
  OpenMP runtime reads it once, when it loads. ``OMP_WAIT_POLICY=ACTIVE`` suits a machine with nothing else on
  it (spinning answers a single query sooner when every core is idle).
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

log = logging.getLogger(__name__)

#: Seconds of CPU usage sampled to find the free cores.
SAMPLE_S = 0.2


def passive_waits() -> None:
    """Idle OpenMP workers sleep instead of spinning (unless ``OMP_WAIT_POLICY`` is set); call before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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

        busy_percent = psutil.cpu_percent(interval=SAMPLE_S)
    busy_cores = busy_percent / 100.0 * cores
    return max(1, min(cores, round(cores - busy_cores)))


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
