"""The Hydra callback that follows a sweep: the trackers' parents, progress per job, and at its end the report, the
failed jobs and the exit status.

Jobs never end a sweep (``experiments.app.main`` records a failing job in its folder and returns); this callback
reads the job folders (``experiments.sweeps.jobs``), so it counts the same with every launcher. It opens the sweep's
parent in every tracker before any job (``experiments.tracking.sweep``); when the sweep ends it writes the comparison
report, prints the winner and the failures, hands the report's record to the trackers as it closes their parents,
and, when a job failed or did not finish, ends the sweep with ``SweepFailed`` (exit status 1).

Progress counts the jobs that ended in *this* invocation: each ``on_job_end`` (in whichever process the launcher
ran the job) appends one line to ``<sweep dir>/.progress``, which ``on_multirun_start`` begins with the start time.
A rerun into the same sweep folder counts a job it reused once (and says ``reused``), not the folders found done.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import run_folder
from experiments.records.sweep import SweepRecord
from experiments.sweeps.jobs import sweep_jobs
from experiments.sweeps.lock import release_studies
from experiments.tracking.sweep import SweepParents

log = logging.getLogger(__name__)


class SweepFailed(SystemExit):
    """A sweep any of whose jobs failed or did not finish: ``python run.py -m`` exits 1 (``experiments.sweep``
    returns ``exit_code=1``). A ``SystemExit``: Hydra turns any other exception raised in a callback into a warning."""

    def __init__(self) -> None:
        super().__init__(1)


#: The trials a resumed search had spent before this invocation: its guard (the first callback) sets it.
search_spent = 0


#: This invocation's progress: the start time, then one line per ended job (appended by whichever process ran it).
PROGRESS_FILE = ".progress"


def start_progress(sweep_dir: Path) -> None:
    """Begin this invocation's count (a rerun into the same folder starts from zero)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / PROGRESS_FILE).write_text(f"{time.time()}\n", encoding="utf-8")


def job_ended(sweep_dir: Path, state: str) -> tuple[int, float]:
    """Record one ended job; returns how many ended in this invocation and when it started (epoch seconds)."""
    path = sweep_dir / PROGRESS_FILE
    # One short O_APPEND write per job: atomic, so parallel workers never interleave their lines.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{state}\n".encode())
    finally:
        os.close(descriptor)
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        started = float(lines[0])
    except (IndexError, ValueError):
        started = 0.0
    return len(lines) - 1, started


def planned_jobs(task_overrides: list[str]) -> int:
    """How many jobs the basic sweeper expands ``a=1,2 b=x,y`` into (the product of the sweeps' sizes)."""
    total = 1
    for override in OverridesParser.create().parse_overrides(task_overrides):
        if override.is_sweep_override():
            total *= len(list(override.sweep_string_iterator()))
    return total


def sweeper_params(config: DictConfig) -> dict[str, str]:
    """``hydra.sweeper.params`` as key -> sweep expression (a grid's named sweep, ``k: 0,4,8``), unresolved."""
    params = config.hydra.sweeper.get("params")
    named = OmegaConf.to_container(params, resolve=False) if isinstance(params, DictConfig) else None
    return {str(key): str(value) for key, value in named.items()} if isinstance(named, dict) else {}


class SweepMonitor(Callback):
    """The one sweep callback: listed after the guards (``conf/config.yaml``), it opens the trackers' parents and
    counts progress while the sweep runs; at its end, the report, the winner, the failed jobs and the exit status."""

    def __init__(self) -> None:
        self._total = 0
        self._sweep_dir: Path | None = None
        self._parents = SweepParents()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        self._parents.open(config)
        # A search sweeper (hparams_search=optuna) says how many trials it runs; a grid is the product of its sweeps,
        # those of the sweeper's params (an experiment file's named sweep) with the command line's over them.
        trials = config.hydra.sweeper.get("n_trials")
        grid = {key: f"{key}={value}" for key, value in sweeper_params(config).items()}
        task = [str(line) for line in config.hydra.overrides.task]
        grid.update({line.partition("=")[0].lstrip("+~"): line for line in task})
        self._total = max(int(trials) - search_spent, 0) if trials else planned_jobs(list(grid.values()))
        start_progress(self._sweep_dir)
        print(f"sweep: {self._total} jobs into {self._sweep_dir}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return  # a single run: there is no sweep to count
        # Runs in the worker with parallel launchers: count from the folders, which every process sees.
        sweep_dir = Path(config.hydra.sweep.dir)
        value = job_return.return_value if job_return is not None and job_return.status.name == "COMPLETED" else None
        state = "failed" if value is None or (isinstance(value, float) and math.isnan(value)) else "done"
        completed_at = run_folder.completed_at(Path(config.hydra.runtime.output_dir))
        ended, started = job_ended(sweep_dir, state)
        if state == "done" and completed_at is not None and completed_at < started:
            state = "reused"  # completed by an earlier invocation of this sweep
        total = self._total or len(sweep_jobs(sweep_dir))
        print(
            f"sweep: {ended}/{total} finished; {config.hydra.job.override_dirname or config.hydra.job.num}: {state}",
            file=sys.stderr,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        record: SweepRecord | None = None
        try:
            code, record = finish(sweep_dir, str(config.optimized_metric))
        except Exception as error:  # Hydra would only warn: a sweep whose end cannot be told never passes for clean
            log.exception("the sweep's end failed")
            print(f"error: {sweep_dir}: the sweep's report could not be written: {error}", file=sys.stderr)
            code = 1
        self._parents.close(record, sweep_dir)
        if code:
            # The exit skips the callbacks listed before this one (Hydra ends them in reverse order): the search
            # guard's end is to give its study back, so that is done here.
            release_studies()
            raise SweepFailed


def finish(sweep_dir: Path, metric: str) -> tuple[int, SweepRecord | None]:
    """Print the sweep's outcome and write its report; returns the exit code (1 when any job failed, did not finish
    or left an unreadable record, or when no job folder is found, else 0) and the report's record (None when no job
    completed). A report is written either way: with no completed job it lists the failures (``report.md``)."""
    from experiments.sweeps.report import TIE_RULE, failures, readable, ties, write_failure_report, write_report

    jobs = [readable(job) for job in sweep_jobs(sweep_dir)]
    completed = sum(job.status == "completed" for job in jobs)
    print(f"\nsweep: {completed} of {len(jobs)} jobs completed in {sweep_dir}")
    record = None
    if completed:
        report = write_report(sweep_dir, metric=metric)
        record = report.record
        print(
            f"winner: {report.winner.label} ({report.metric} {report.winner_value:.3f}, chosen on the "
            f"{report.selection_where})"
        )
        for group in ties(report.rows):
            if report.winner in group:
                print(f"tie: {', '.join(row.label for row in group)} share it; ordered by {TIE_RULE}")
        failed, path = list(report.failed), report.markdown_path
    else:
        failed, path = failures(jobs), write_failure_report(sweep_dir)
    print(f"report: {path}")
    for label, reason in failed:
        print(f"failed: {label}: {reason}")
    lost = failed_this_run(sweep_dir) if not failed else 0
    if not jobs:
        print(f"error: no job folder under {sweep_dir}: the jobs wrote their folders elsewhere, or none started.")
    elif lost:
        print(f"error: {lost} job(s) of this run failed without leaving a job folder under {sweep_dir}.")
    if failed:
        print(
            f"{len(failed)} job(s) failed; rerun the same command with hydra.sweep.dir={sweep_dir} to redo only those."
        )
    return (1 if failed or lost or not jobs else 0), record


def failed_this_run(sweep_dir: Path) -> int:
    """How many jobs of this invocation ended failed, by its progress file (``on_job_end``'s lines)."""
    try:
        lines = (sweep_dir / PROGRESS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    return sum(line == "failed" for line in lines[1:])
