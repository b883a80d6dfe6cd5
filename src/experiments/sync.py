"""Send the runs that a tracker could not record (its server down, or dying mid-run): ``python -m experiments.sync``.

A finished run that a tracker failed to record is kept in its run folder as ``pending-trackers/<tracker>.json``
(``experiments.tracking.pending``: data checked against a schema; nothing read from a run folder is executed, so an
earlier version's ``<tracker>.pickle`` is refused, never loaded, and a tracker is built only from a class of this
project). This command finds them under the outputs folder, rebuilds each tracker from
the run's ``config.json`` (``trackers.<name>``; ``MLFLOW_TRACKING_URI`` in the environment still overrides the
MLflow store, as in a run), and sends each run once: the tracker first deletes whatever an interrupted attempt
or the run's live log recorded of the same run (tag ``experiments.run_uid``; the pending record holds all of it,
loss curve included), and the pending file is removed when the run is sent. A
second sync sends nothing; a run whose tracker fails again stays pending. Two syncs at once never send the same
run: each claims a pending file by renaming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from experiments import run_folder
from experiments.errors import UserError
from experiments.processes import alive
from experiments.secrets import guard_output
from experiments.tracking.base import FailedRun
from experiments.tracking.pending import LEGACY_SUFFIX, PENDING, SUFFIX, legacy_records, load_pending
from experiments.tracking.trackers import Trackers, describe, in_thread

CLAIMED = ".sending-"
#: The package whose classes a tracker may be built from: ``config.json`` sits in a run folder, which may be shared.
TRACKER_PACKAGE = "experiments.tracking."


def default_outputs() -> Path:
    """The outputs folder a run writes to by default (``paths.outputs_dir``)."""
    return Path(os.environ.get("EXPERIMENTS_ROOT", ".")) / "outputs"


def release_stale_claims(outputs: Path) -> None:
    """Pending files claimed by a sync that was killed become pending again (the resend discards its traces)."""
    for claimed in outputs.rglob(f"{PENDING}/*{SUFFIX}{CLAIMED}*"):
        pid = claimed.name.rsplit(CLAIMED, 1)[1]
        if pid.isdigit() and not alive(int(pid)):
            claimed.rename(claimed.with_name(claimed.name.rsplit(CLAIMED, 1)[0]))


def pending_runs(outputs: Path) -> list[Path]:
    """The pending files under ``outputs``, oldest run folder first."""
    return sorted(outputs.rglob(f"{PENDING}/*{SUFFIX}"))


def send(pending: Path) -> bool:
    """Send one pending run to its tracker; True when sent (the pending file is gone), False when still pending."""
    claimed = pending.with_name(f"{pending.name}{CLAIMED}{os.getpid()}")
    try:
        pending.rename(claimed)
    except FileNotFoundError:
        return False  # another sync took it
    key, folder = pending.stem, pending.parent.parent
    try:
        run = load_pending(pending, claimed.read_bytes())
        tracker = build_tracker(folder, key)
        tracker.strict = False
        discard = getattr(tracker, "discard", None)
        uid = run.tags.get("experiments.run_uid")  # a stopped run too: its live run was opened when it started
        if discard is not None and uid:
            outcome = in_thread(key, partial(discard, uid), tracker.timeout_s)
            if "value" not in outcome:
                problem = describe(outcome["error"]) if "error" in outcome else f"no answer in {tracker.timeout_s:g} s"
                print(f"warning: {folder}: tracker {key} still fails ({problem}); still pending", file=sys.stderr)
                claimed.rename(pending)
                return False
        if isinstance(run, FailedRun):  # a run stopped before it was recorded: recorded KILLED now
            if Trackers({key: tracker}).log_failure(run):
                claimed.rename(pending)
                return False
            failed = []
        else:  # a failure writes the pending file again
            failed = Trackers({key: tracker}).log_run(run)
    except BaseException:
        if pending.exists():  # written again by log_run (a tracker failed, or the disk filled while it recorded)
            claimed.unlink(missing_ok=True)
        else:
            claimed.rename(pending)
        raise
    claimed.unlink()
    if not failed:
        print(f"sent: {folder} to {key}")
    return not failed


def tracker_node(folder: Path, key: str) -> Mapping[str, Any]:
    """Tracker ``key``'s node of the run's ``config.json``, refused unless it builds a tracker class of this project.

    Raises:
        UserError: the file is unreadable, has no such tracker, or names a class elsewhere (any class would be
            called with the file's arguments), a nested ``_target_`` or another of Hydra's keys (``_args_``).
    """
    path = folder / run_folder.CONFIG_FILE
    try:
        node = run_folder.load_config(folder).tracker(key)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:  # RecursionError: nested too deep
        raise UserError(f"{path}: no trackers.{key} to send the pending run to ({describe(error)}).") from None
    target = node.get("_target_") if isinstance(node, dict) else None
    # Hydra's other keys (_args_, _partial_, _convert_...) would change what the class is called with or returns.
    special = [name for name in node if str(name).startswith("_") and name != "_target_"] if target else []
    if not isinstance(target, str) or not target.startswith(TRACKER_PACKAGE) or _nested_target(node) or special:
        raise UserError(
            f"{path}: trackers.{key} is not a tracker of this project ({TRACKER_PACKAGE}*, no nested _target_, no "
            "other _key_); sync builds nothing else from a run folder."
        )
    return node


def build_tracker(folder: Path, key: str) -> Any:
    """Tracker ``key`` as the run configured it (``tracker_node``); one that cannot be built is a ``UserError``."""
    node = tracker_node(folder, key)
    try:
        return instantiate(node)
    except Exception as error:  # arguments the class refuses (a config.json edited by hand, or by another version)
        problem = describe(error.__cause__ or error)  # Hydra's own first line names only the class
        raise UserError(f"{folder / run_folder.CONFIG_FILE}: trackers.{key} cannot be built ({problem}).") from None


def main(argv: list[str] | None = None) -> int:
    """Send every pending run under the outputs folder; exit 0 when none is left pending, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sync",
        description="Send the runs a tracker could not record (server down during the run) to it, exactly once.",
    )
    parser.add_argument(
        "outputs", nargs="?", type=Path, default=default_outputs(), help="the outputs folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    guard_output()
    try:
        release_stale_claims(args.outputs)
        sent, unreadable = 0, []
        for path in pending_runs(args.outputs):
            try:
                sent += send(path)
            except UserError as error:  # this one stays pending; the others are still sent
                unreadable.append(error)
        left = len(pending_runs(args.outputs))
        print(f"sync: {sent} run(s) sent, {left} still pending under {args.outputs}")
        if unreadable:
            raise unreadable[0]
        refuse_legacy(args.outputs)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if left == 0 else 1


def _nested_target(node: object, depth: int = 0) -> bool:
    """Whether a ``_target_`` sits below the top of ``node`` (Hydra would build it as well)."""
    if isinstance(node, dict):
        return (depth > 0 and "_target_" in node) or any(_nested_target(v, depth + 1) for v in node.values())
    return isinstance(node, list) and any(_nested_target(value, depth + 1) for value in node)


def refuse_legacy(outputs: Path) -> None:
    """Raise for the pickled records of earlier versions under ``outputs``: loading one could run any code."""
    legacy = legacy_records(outputs)
    if legacy:
        more = f" (and {len(legacy) - 1} more)" if len(legacy) > 1 else ""
        raise UserError(
            f"{legacy[0]}{more}: a pending run in the old {LEGACY_SUFFIX} format, never loaded (a pickle can run "
            "code); rerun that run to record it, or delete the file yourself."
        )


if __name__ == "__main__":
    sys.exit(main())
