"""Send the runs that a tracker could not record (its server down, or dying mid-run): ``python -m experiments.sync``.

A finished run that a tracker failed to record is kept in its run folder as ``pending-trackers/<tracker>.pickle``
(``experiments.tracking.trackers``). This command finds them under the outputs folder, rebuilds each tracker from
the run's ``config.json`` (``trackers.<name>``; ``MLFLOW_TRACKING_URI`` in the environment still overrides the
MLflow store, as in a run), and sends each run once: the tracker first deletes whatever an interrupted attempt
recorded of the same run (tag ``experiments.run_uid``), and the pending file is removed when the run is sent. A
second sync sends nothing; a run whose tracker fails again stays pending. Two syncs at once never send the same
run: each claims a pending file by renaming it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

from hydra.utils import instantiate

from experiments.processes import alive
from experiments.secrets import guard_output
from experiments.tracking.base import FailedRun, TrackedRun
from experiments.tracking.trackers import PENDING, Trackers, describe, in_thread

CLAIMED = ".sending-"


def default_outputs() -> Path:
    """The outputs folder a run writes to by default (``paths.outputs_dir``)."""
    return Path(os.environ.get("EXPERIMENTS_ROOT", ".")) / "outputs"


def release_stale_claims(outputs: Path) -> None:
    """Pending files claimed by a sync that was killed become pending again (the resend discards its traces)."""
    for claimed in outputs.rglob(f"{PENDING}/*.pickle{CLAIMED}*"):
        pid = claimed.name.rsplit(CLAIMED, 1)[1]
        if pid.isdigit() and not alive(int(pid)):
            claimed.rename(claimed.with_name(claimed.name.rsplit(CLAIMED, 1)[0]))


def pending_runs(outputs: Path) -> list[Path]:
    """The pending files under ``outputs``, oldest run folder first."""
    return sorted(outputs.rglob(f"{PENDING}/*.pickle"))


def send(pending: Path) -> bool:
    """Send one pending run to its tracker; True when sent (the pending file is gone), False when still pending."""
    claimed = pending.with_name(f"{pending.name}{CLAIMED}{os.getpid()}")
    try:
        pending.rename(claimed)
    except FileNotFoundError:
        return False  # another sync took it
    key, folder = pending.stem, pending.parent.parent
    try:
        run: TrackedRun | FailedRun = pickle.loads(claimed.read_bytes())
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tracker = instantiate(config["trackers"][key])
        tracker.strict = False
        discard = getattr(tracker, "discard", None)
        uid = run.tags.get("experiments.run_uid") if isinstance(run, TrackedRun) else None
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
            failed = Trackers({key: tracker}).log_run(replace(run, run_folder=folder, artifacts=folder))
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
    release_stale_claims(args.outputs)
    pending = pending_runs(args.outputs)
    sent = sum(send(path) for path in pending)
    left = len(pending_runs(args.outputs))
    print(f"sync: {sent} run(s) sent, {left} still pending under {args.outputs}")
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
