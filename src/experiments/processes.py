"""Which process owns something (a temporary model folder, a tracker run), and whether that process is gone.

A process is named by its host, pid and start time, so a pid reused by a later process is not taken for the
one that was killed.
"""

from __future__ import annotations

import os
import socket

import psutil


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _started(pid: int) -> str:
    """The process's start time, or "" when it cannot be told (gone, or an unreadable ``/proc/stat``: psutil then
    raises ``RuntimeError("line 'btime' not found")``); a run is still recorded, named by host and pid."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, OSError, RuntimeError, ValueError):
        return ""


def this_process() -> dict[str, str]:
    """Tags naming the current process: ``experiments.host``, ``experiments.pid``, ``experiments.started``."""
    pid = os.getpid()
    return {"experiments.host": socket.gethostname(), "experiments.pid": str(pid), "experiments.started": _started(pid)}


def gone(tags: dict[str, str]) -> bool:
    """Whether the process named by ``this_process`` tags has ended; False when it ran on another host (unknown)."""
    pid = tags.get("experiments.pid", "")
    if tags.get("experiments.host") != socket.gethostname() or not pid.isdigit():
        return False
    if not alive(int(pid)):
        return True
    started = tags.get("experiments.started")
    return bool(started) and _started(int(pid)) not in ("", started)  # the pid now belongs to another process
