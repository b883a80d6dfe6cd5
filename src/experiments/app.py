"""From a composed Hydra config to a finished run: build the components, run the pipeline, report.

The only place that reads ``cfg``; library code receives plain arguments.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from experiments import run_folder
from experiments.errors import UserError
from experiments.folders import disk_error, surveyed, written_folders
from experiments.metrics import DEFAULT_METRIC
from experiments.pipeline import Components, Folders, RunOutcome, run_experiment
from experiments.schema import check_groups, read_knobs
from experiments.secrets import redact_folder, redact_logs, refuse_resolved_secrets, refuse_secret_options, scrub
from experiments.sweeps.jobs import completed_metric, record_failure
from experiments.sweeps.labels import shown_knob
from experiments.tracking.trackers import Trackers

log = logging.getLogger(__name__)

#: The config groups that become a run's components (``experiments.pipeline.Components``), in build order.
#: ``trackers`` is a dict of tracker nodes (none, one or several), built into one ``Trackers`` list.
GROUPS = ("dataset", "embedder", "retrieval", "miner", "reranker")


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values, interpolations resolved; an unset required option becomes a one-line error."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        raise UserError(f"{error.full_key} is required: add {error.full_key}=<value> to the command line.") from None
    assert isinstance(container, dict)
    return {str(key): value for key, value in container.items()}


def hydra_choices() -> dict[str, str]:
    """The option chosen per config group (``{"miner": "kmeans"}``) when running under Hydra, else {}."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {str(group): str(option) for group, option in choices.items() if not str(group).startswith("hydra")}


def hydra_option_knobs() -> list[str]:
    """The options' own knobs set on the command line, as ``knob=value`` (``reranker.epochs=1`` → ``epochs=1``),
    for the run's name; paths and model references are left out, as they are from sweep folder names."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    hydra = HydraConfig.get()
    excluded = {str(key) for key in hydra.job.config.override_dirname.exclude_keys}
    named = []
    for override in hydra.overrides.task:
        key, equals, value = str(override).lstrip("+~").partition("=")
        group, dot, knob = key.partition(".")
        if equals and dot and group in GROUPS and key not in excluded:
            named.append(shown_knob(f"{knob}={value}"))  # display only: floats to 3 significant digits
    return named


def discard_rejected(output_dir: Path) -> None:
    """Remove what a rejected run made (its folder, the day's folder above it, Hydra's files), never what was there
    before the run started (``folders.Before``); without a survey of the folder, nothing."""
    before = surveyed(output_dir)
    if before is not None:
        before.discard_rejected()


def build(cfg: DictConfig, group: str) -> Any:
    """Instantiate one config group, turning a rejected option into a one-line ``UserError``."""
    try:
        return instantiate(cfg.get(group) or {})
    except MissingMandatoryValue as error:
        raise UserError(f"{error.full_key} is required: add {error.full_key}=<value> to the command line.") from None
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError | ValueError | TypeError):
            raise UserError(f"{group}: {cause}") from None
        raise


def run(cfg: DictConfig, output_dir: Path) -> RunOutcome:
    """Run the experiment the config describes and write its folder under ``output_dir``."""
    refuse_secret_options(OmegaConf.to_container(cfg, resolve=False))
    redact_logs()
    values = resolved(cfg)
    refuse_resolved_secrets(values)
    knobs = read_knobs(values)
    check_groups(values, (*GROUPS, "trackers"))
    parts = Components(**{group: build(cfg, group) for group in GROUPS}, trackers=Trackers(build(cfg, "trackers")))
    config = scrub(OmegaConf.to_container(cfg, resolve=True))
    folders = Folders(
        output_dir=output_dir,
        models_dir=Path(cfg.paths.models_dir),
        scores_dir=Path(cfg.paths.scores_dir),
    )
    return run_experiment(parts, knobs, folders, config, choices=hydra_choices(), option_knobs=hydra_option_knobs())


def limit_threads(parallel_jobs: int | None) -> None:
    """Give each of ``parallel_jobs`` concurrent jobs its share of the cores, so they do not thrash each other; a
    single job takes every core (or ``EXPERIMENTS_THREADS``), whatever the load, so its results do not depend on
    what else the machine was doing (``experiments.threads``)."""
    if not parallel_jobs or parallel_jobs == 1:
        from experiments.threads import share_the_cpu

        share_the_cpu(adaptive=False)
        return
    from experiments.threads import set_torch_threads

    cores = os.cpu_count() or 1
    jobs = cores if parallel_jobs < 0 else parallel_jobs  # joblib's n_jobs=-1: one job per core
    set_torch_threads(max(1, cores // jobs))


def _print_outcome(outcome: RunOutcome) -> None:
    print()
    print(outcome.table)
    if outcome.fit is not None:
        state = "reused" if outcome.fit.reused else f"trained in {outcome.fit.train_seconds:.1f}s"
        print(f"fine-tune id: {outcome.fit.finetune_id} ({state})")
    print(f"fine-tuning set: {len(outcome.finetune_set)} items, digest {outcome.finetune_set.digest()[:16]}")
    for note, count in outcome.finetune_set.fill_notes.items():
        if count:
            print(f"note: {note} = {count} (the strategy's pool ran short; set miner.strict=true to fail instead)")
    print(f"run folder: {outcome.output_dir}")


class Terminated(BaseException):
    """SIGTERM (what schedulers and ``kill`` send): unwinds like Ctrl-C, so temporary files are removed."""


#: Seconds a SIGTERM's unwinding may take before the process is ended regardless (a signal lost in a ``__del__``).
SIGTERM_GRACE_S = 10.0
#: How long after a SIGTERM that a finalizer swallowed it is sent again (``_redeliver``).
REDELIVER_S = 0.01


def _on_sigterm(signum: int, frame: object) -> None:
    # Python ignores an exception raised in a __del__ or a weakref callback (a garbage collection can run them in
    # the main thread at any moment: a regex object, SQLAlchemy's class registry after a tracker's thread used a
    # store), so a signal landing there would be lost: ``_redeliver`` sends it again, and a timer ends the process
    # anyway if the unwinding has not done so within SIGTERM_GRACE_S. The normal unwinding (temporary files
    # removed, the run kept pending as KILLED) takes well under a second; the grace is longer so that a loaded
    # machine never cuts it short, and far inside a scheduler's 30 s. Temporary folders a cut-short exit leaves
    # are removed by the next run.
    timer = threading.Timer(SIGTERM_GRACE_S, _terminate_now, args=(signum,))
    timer.daemon = True
    timer.start()
    raise Terminated(f"terminated by signal {signum}")


def _redeliver(unraisable: Any) -> None:
    """``sys.unraisablehook``: a ``Terminated`` that Python ignored (raised inside a finalizer) is not printed with
    its traceback but sent again, from another thread a moment later (sent from here, it would be raised inside
    this hook and ignored too), so the main thread unwinds once the finalizer is over; anything else goes to the
    hook that was there before."""
    if isinstance(unraisable.exc_value, Terminated):
        again = threading.Timer(REDELIVER_S, os.kill, args=(os.getpid(), signal.SIGTERM))
        again.daemon = True
        again.start()
        return
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def on_sigterm_unwind() -> None:
    """Make SIGTERM unwind the main thread like Ctrl-C (``Terminated``), even when it lands in a finalizer."""
    global _previous_unraisablehook
    signal.signal(signal.SIGTERM, _on_sigterm)
    if sys.unraisablehook is not _redeliver:
        _previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, _redeliver


def _terminate_now(signum: int) -> None:
    print(f"error: terminated (signal {signum})", file=sys.stderr)
    exit_now(128 + signum)


def exit_now(code: int) -> None:
    """End the process at once: the stack has unwound (temporary files are gone, the run is kept pending), and
    nothing may wait on a tracker's threads or an upload pool at interpreter exit (a scheduler's grace period)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def main(cfg: DictConfig, output_dir: Path, in_sweep: bool = False, parallel_jobs: int | None = None) -> float:
    """CLI entry: run, print the table and the run folder, return ``optimized_metric`` of the reranker.

    A single run exits 2 with one line, no traceback, on a user mistake. A sweep job never ends the sweep: its
    failure (a user mistake or any exception) is written to ``failed.json`` in its folder and it returns NaN;
    a job whose folder already holds a completed run of the same config returns that run's value (a rerun of the
    same sweep redoes only what failed or never finished).
    """
    metric = str(cfg.get("optimized_metric", DEFAULT_METRIC))
    redact_folder(output_dir / ".hydra")  # Hydra's copy of the config and overrides, before anything reads it
    if threading.current_thread() is threading.main_thread():
        on_sigterm_unwind()
    try:
        limit_threads(parallel_jobs)
        if in_sweep:
            previous = completed_metric(output_dir, scrub(OmegaConf.to_container(cfg, resolve=True)), metric)
            if previous is not None:
                print(f"reused: {output_dir} already holds this configuration's completed run")
                return previous
            run_folder.clear_failure(output_dir)
        outcome = run(cfg, output_dir)
    except UserError as error:
        if not in_sweep:
            print(f"error: {error}", file=sys.stderr)
            discard_rejected(output_dir)
            sys.exit(2)
        print(f"error: {record_failure(output_dir, error, user_error=True)}", file=sys.stderr)
        return float("nan")
    except Terminated:
        print(f"error: terminated (SIGTERM); temporary files removed; {output_dir} is incomplete", file=sys.stderr)
        exit_now(128 + signal.SIGTERM)
    except Exception as error:
        disk = disk_error(error, written_folders(cfg))
        if disk is not None and not in_sweep:
            print(f"error: {disk}", file=sys.stderr)
            sys.exit(2)
        if disk is not None:
            print(f"error: {record_failure(output_dir, disk, user_error=True)}", file=sys.stderr)
            return float("nan")
        if not in_sweep:
            raise
        log.exception("job failed")  # the traceback goes to the job's log file too
        print(f"error: {record_failure(output_dir, error, user_error=False)}", file=sys.stderr)
        return float("nan")
    _print_outcome(outcome)
    return outcome.metric(metric)
