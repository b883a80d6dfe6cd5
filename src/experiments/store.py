"""The model store: each trained model in a folder named by its fine-tune id, written once, atomically."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.processes import alive

#: Written last into a stored model folder: its presence means the folder is complete.
COMPLETE_MARKER = "COMPLETE.json"


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


def build_once(final_dir: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Return the record of the complete model at ``final_dir``, building it first if needed.

    ``build(tmp_dir)`` writes a model into an empty temporary folder next to ``final_dir`` and returns a
    JSON-serialisable record; the record is written as the completion marker and the folder is then renamed
    into place, so a crash or kill mid-build never leaves a folder that looks complete (a killed build leaves
    only a hidden ``.<id>.tmp-*`` folder, which can be deleted).

    Returns:
        ``(record, reused)``: reused is True when a complete model was already there and nothing was built.
    """
    remove_stale_builds(final_dir.parent)
    record = read_marker(final_dir)
    if record is not None:
        return record, True
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        record = build(tmp_dir)
        (tmp_dir / COMPLETE_MARKER).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        if final_dir.exists() and read_marker(final_dir) is None:
            shutil.rmtree(final_dir)  # an incomplete folder left by hand or by an older version
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
