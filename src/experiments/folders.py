"""Folders the product writes to: checked before Hydra creates a run folder, and disk errors told in one line.

A read-only outputs folder, a read-only cache or a full disk is a user's situation, not a bug: the message names
the folder and the ``paths.*`` option that moves it, and the exit code is 2.

What stood at a run folder's place before the run is recorded too (``Before``), so that a rejected run removes only
what it made itself: a folder the user pointed ``hydra.run.dir`` at, and every file in it, is never removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError
from experiments.secrets import refuse_resolved_secrets

#: OS errors that mean "this folder cannot take the run's files".
DISK_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}

#: How libraries that do not raise ``OSError(ENOSPC)`` say the disk is full (SQLite, safetensors, the OS).
DISK_FULL_WORDS = ("No space left on device", "database or disk is full", "Disk quota exceeded")

#: The ``paths.*`` options that decide where the product writes, checked before a run starts.
WRITTEN = ("outputs_dir", "cache_dir", "models_dir", "scores_dir", "lancedb_uri", "mlflow_db")


def _problem(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if error.errno == errno.EROFS:
        return "it is read-only"
    return "it is not writable (permission denied)"


def _fix(error: OSError | None, option: str) -> str:
    if error is None or error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free space or set {option}=<another folder>"
    return f"set {option}=<a writable folder>"


def check_writable(folder: Path, option: str) -> None:
    """Write (and remove) a probe file in ``folder``, or in its nearest existing parent when it does not exist yet
    (nothing is created); a failure is a one-line ``UserError``."""
    existing = folder
    while (not existing.exists() or existing.is_file()) and existing != existing.parent:
        existing = existing.parent  # a file option (paths.mlflow_db): its folder must take a file
    probe = existing / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        if error.errno not in DISK_ERRNOS:
            raise
        raise UserError(f"cannot write to {folder}: {_problem(error)}; {_fix(error, option)}.") from None


def written_folders(config: DictConfig) -> dict[str, str]:
    """Every folder option a run writes to, by its full name: the ``paths.*`` ones and any component's own
    ``cache_dir`` (``miner.cache_dir``, ``embedder.cache_dir``, ...), resolved."""
    folders = {f"paths.{key}": str(config.paths.get(key)) for key in WRITTEN if config.paths.get(key)}

    def walk(node: DictConfig, prefix: str) -> None:
        for name in node:
            key = str(name)
            try:
                value = node.get(key)
            except Exception:  # an interpolation only Hydra's runtime resolves: not a folder option
                continue
            if isinstance(value, DictConfig):
                walk(value, f"{prefix}{key}.")
            elif key == "cache_dir" and value and prefix != "paths.":
                folders[f"{prefix}{key}"] = str(value)

    walk(config, "")
    return folders


def disk_error(error: BaseException, folders: Mapping[str, Any]) -> UserError | None:
    """A one-line ``UserError`` for a disk-full / read-only / permission error under one of ``folders``, else None.

    ``folders`` maps option names (``paths.models_dir``, ``miner.cache_dir``) to folders (``written_folders``).
    The option named is the one holding the file (the most specific one).
    """
    os_error = error if isinstance(error, OSError) and error.errno in DISK_ERRNOS else None
    if os_error is not None:
        problem, filename = _problem(os_error), os_error.filename
    elif any(words in str(error) for words in DISK_FULL_WORDS):  # safetensors' or SQLite's own error types
        problem, filename = "the disk is full", None
    else:
        return None
    candidates = [(key, Path(str(value))) for key, value in folders.items() if value]
    if filename:
        inside = [(key, path) for key, path in candidates if Path(str(filename)).is_relative_to(path)]
        owner = max(inside, key=lambda item: len(item[1].parts), default=None)
    else:  # the fullest of the folders (the most specific one on a tie)
        existing_folders = [(key, path if path.is_dir() else path.parent) for key, path in candidates]
        existing = [(key, path) for key, path in existing_folders if path.is_dir()]
        owner = min(existing, key=lambda item: (_free_bytes(item[1]), -len(item[1].parts)), default=None)
    where = f"{filename}" if filename else f"{owner[1]}" if owner else "a file of the run"
    option = owner[0] if owner else "paths.outputs_dir"
    note = str(getattr(error, "note", ""))  # what became of the run (kept pending, or to rerun)
    return UserError(f"cannot write {where}: {problem}; {_fix(os_error, option)}{note}.")


def _free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def _resolved(config: DictConfig, key: str) -> str:
    """``key``'s value, resolved; "" when it cannot be (Hydra reports that itself when it makes the folder)."""
    try:
        return str(OmegaConf.select(config, key))
    except Exception:
        return ""


class WritableFolders(Callback):
    """Before Hydra makes the run (or sweep) folder: every ``paths.*`` folder the run writes must take a file."""

    def _check(self, config: DictConfig, folder: str) -> None:
        """``folder``: the run (or sweep) folder option, whose resolved name must not hold a secret either."""
        try:
            refuse_resolved_secrets({folder: _resolved(config, folder)})
            for key in WRITTEN:
                value = config.paths.get(key)
                if value and "://" not in str(value):
                    check_writable(Path(str(value)), f"paths.{key}")
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)  # SystemExit passes through Hydra's callback guard, before any folder is made

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")
        remember(Before.survey(Path(str(config.hydra.run.dir))))  # before Hydra makes it or writes into it

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")


#: More paths than this in a folder the run is pointed at: too many to list, so a rejected run removes nothing there.
SURVEY_LIMIT = 100_000


@dataclass(frozen=True)
class Before:
    """What stood at a run folder's place before the run started.

    Attributes:
        folder: the run folder (absolute).
        existing: the nearest folder at or above ``folder`` that existed (the folders below it are the run's).
        contents: every path that was inside ``folder`` when it existed; None when the run made ``folder`` itself.
        complete: False when ``folder`` held more than ``SURVEY_LIMIT`` paths (nothing in it is taken for the run's).
    """

    folder: Path
    existing: Path
    contents: frozenset[Path] | None
    complete: bool = True

    @classmethod
    def survey(cls, folder: Path) -> Before:
        folder = Path(os.path.abspath(folder))
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing != folder:
            return cls(folder, existing, None)
        contents: set[Path] = set()
        for root, names, files in os.walk(folder):
            contents.update(Path(root) / name for name in [*names, *files])
            if len(contents) > SURVEY_LIMIT:
                return cls(folder, existing, frozenset(), complete=False)
        return cls(folder, existing, frozenset(contents))

    def created(self) -> list[Path]:
        """The paths in ``folder`` that were not there at the survey, deepest first (``folder`` last if the run made
        it); empty when the survey was incomplete."""
        if not self.complete or not self.folder.is_dir():
            return []
        made = []
        for root, names, files in os.walk(self.folder, topdown=False):
            made += [Path(root) / name for name in [*files, *names]]
        made = [path for path in made if self.contents is None or path not in self.contents]
        return made + ([self.folder] if self.contents is None else [])

    def discard_rejected(self) -> None:
        """Remove what a run rejected before it started made: when it made nothing but Hydra's record of its
        config (``.hydra/``) and its log (``*.log``), those, and the folders it made (``folder``, the day's folder
        above it). A path that stood there before the run is never removed; neither is anything when the run wrote
        more (a run that failed later keeps its folder and its log)."""
        made = self.created()
        inside = [path.relative_to(self.folder) for path in made if path != self.folder]
        if any(path.parts[0] != ".hydra" and not (len(path.parts) == 1 and path.suffix == ".log") for path in inside):
            return
        for path in made:  # deepest first
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
        if self.contents is None:
            parent = self.folder.parent
            while parent != self.existing and parent.is_relative_to(self.existing):
                try:
                    parent.rmdir()  # only when empty: a parallel run's folder beside this one stays
                except OSError:
                    break
                parent = parent.parent


#: The surveys of the run folders this process started, by folder.
_surveys: dict[Path, Before] = {}


def remember(before: Before) -> None:
    """Keep ``before`` for ``surveyed`` (the CLI surveys in a Hydra callback, the run reads it in the task)."""
    _surveys[before.folder] = before


def surveyed(folder: Path) -> Before | None:
    """The survey of ``folder`` taken before this process's run started, if one was."""
    return _surveys.get(Path(os.path.abspath(folder)))
