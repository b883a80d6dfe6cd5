"""The lock on a search's study: one process at a time searches it (``hparams_search=optuna``).

``flock`` on a file beside the study's SQLite file (``optuna.db.lock``), or in the sweep folder for any other storage
(``.search.lock``): the kernel releases it when its process ends, however it ends, so a killed search never leaves a
study locked. The file names its holder, for the refusal. A study on a database server shared between machines is
not locked across them.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from experiments.errors import UserError

#: The locks this process holds, by lock file: the open descriptor that holds each.
_HELD: dict[Path, int] = {}


def lock_file(storage: str | None, sweep_dir: Path) -> Path:
    """Where the lock on a study lives: beside its SQLite file, else in the sweep folder."""
    if storage and storage.startswith("sqlite:///"):
        database = Path(storage.removeprefix("sqlite:///"))
        return database.with_name(database.name + ".lock")
    return Path(sweep_dir) / ".search.lock"


def hold_study(storage: str | None, sweep_dir: Path) -> Path:
    """Take the study's lock for this process (a no-op when it already holds it); a one-line ``UserError`` when
    another process holds it."""
    path = lock_file(storage, sweep_dir)
    if path in _HELD:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(f"{path}: cannot create the search's lock file: {error.strerror or error}.") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 200, 0).decode("utf-8", errors="replace").strip() or "another process"
        os.close(descriptor)
        raise UserError(
            f"{path}: this study is being searched by {holder}; wait for it to end (a search resumes where it "
            "stopped), or give this one another hydra.sweep.dir."
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _HELD[path] = descriptor
    return path


def release_studies() -> None:
    """Give back every lock this process holds (its end would too)."""
    while _HELD:
        _, descriptor = _HELD.popitem()
        os.close(descriptor)
