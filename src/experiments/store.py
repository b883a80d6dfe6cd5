"""The model store: each trained model in a folder named by its fine-tune id, written once, atomically, and
verified against the digests of its files before every reuse."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.errors import UserError
from experiments.models import file_sha256
from experiments.processes import alive

log = logging.getLogger(__name__)

#: Written last into a stored model folder: its presence means the folder is complete.
COMPLETE_MARKER = "COMPLETE.json"
#: The marker's record of every file of the model: ``{relative path: sha256}``.
DIGESTS_KEY = "files_sha256"
#: Written into a stored model after it is complete (an ONNX export, verified on its own): not part of its digests.
DERIVED = ("onnx",)


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The completion record of a stored model folder, or None when the folder is absent or incomplete."""
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record


def folder_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a model folder by relative path, except its marker and later exports (``DERIVED``)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    kept = [path for path in files if path.relative_to(folder).parts[0] not in (COMPLETE_MARKER, *DERIVED)]
    return {path.relative_to(folder).as_posix(): file_sha256(path) for path in kept}


def damage(folder: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with a complete model folder against the digests its marker recorded, or None when intact.

    One SHA-256 pass over the files (about 0.07 s for MiniLM's 90 MB of weights on one core): a file zeroed,
    truncated, replaced, removed or added (a planted ``pytorch_model.bin``) is found before the model is loaded.
    """
    recorded = record.get(DIGESTS_KEY)
    if not isinstance(recorded, dict) or not recorded:
        return f"{folder / COMPLETE_MARKER} records no digest of the model's files (an older version wrote it)"
    found = folder_digests(folder)
    for name in sorted(set(recorded) | set(found)):
        if name not in found:
            return f"{folder / name} is missing"
        if name not in recorded:
            return f"{folder / name} was added after the model was stored"
        if found[name] != recorded[name]:
            return f"{folder / name} does not match the SHA-256 recorded when it was stored"
    return None


def set_aside(path: Path) -> Path | None:
    """Rename a damaged file or folder to a hidden ``.<name>.damaged-<time>-<pid>-<token>`` beside it (nothing is
    deleted: the random token keeps two set-asides in one second apart, where a rename would replace the first).

    Returns the new name, or None when the path is already gone (another process set it aside first).
    """
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    target = path.with_name(f".{path.name}.damaged-{stamp}")
    try:
        path.rename(target)
    except FileNotFoundError:
        return None
    return target


def _retire(folder: Path, problem: str) -> None:
    """Set a stored model that cannot be reused aside, with one warning line; one that cannot be moved is refused."""
    try:
        aside = set_aside(folder)
    except OSError as error:
        raise UserError(
            f"{problem}, and the model cannot be set aside to train it again ({error.strerror}): move {folder} "
            "away, or set paths.models_dir=<a writable folder>."
        ) from None
    kept = f" (the damaged folder is kept as {aside.name})" if aside else ""
    log.warning("stored model %s: %s; training it again%s", folder.name, problem, kept)


def build_once(final_dir: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Return the record of the complete model at ``final_dir``, building it first if needed.

    ``build(tmp_dir)`` writes a model into an empty temporary folder next to ``final_dir`` and returns a
    JSON-serialisable record; the record is written as the completion marker and the folder is then renamed
    into place, so a crash or kill mid-build never leaves a folder that looks complete (a killed build leaves
    only a hidden ``.<id>.tmp-*`` folder, which can be deleted). The marker records the SHA-256 of every file;
    a stored model whose files no longer match is set aside (``set_aside``) with one warning and built again.

    Returns:
        ``(record, reused)``: reused is True when a complete model was already there and nothing was built.
    """
    remove_stale_builds(final_dir.parent)
    record = read_marker(final_dir)
    if record is not None:
        problem = damage(final_dir, record)
        if problem is None:
            return record, True
        _retire(final_dir, problem)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        record = {**build(tmp_dir), DIGESTS_KEY: folder_digests(tmp_dir)}
        (tmp_dir / COMPLETE_MARKER).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        if final_dir.exists() and read_marker(final_dir) is None:  # left by hand, or an unreadable marker
            _retire(final_dir, f"{final_dir / COMPLETE_MARKER} is missing or unreadable")
        try:
            tmp_dir.rename(final_dir)
        except OSError:
            if read_marker(final_dir) is None:
                raise
            # Another process stored the same model first: use theirs, but report the training this one did.
            return record, False
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return record, False


def remove_stale_builds(store: Path) -> list[Path]:
    """Delete temporary build folders (``.<id>.tmp-<pid>-*``) whose process is gone (killed with ``kill -9``).

    Returns the folders removed. Folders of a build still running (its process alive) are left alone.
    """
    removed: list[Path] = []
    if not store.is_dir():
        return removed
    for folder in store.glob(".*.tmp-*-*"):
        pid_text = folder.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and not alive(int(pid_text)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
