"""Writing a file so that no reader ever sees half of it: the one spelling used by every writer of the project."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, *, unique: bool = False) -> None:
    """Write ``data`` to a temporary name beside ``path`` and rename it into place.

    A killed process leaves at most a ``*.partial`` file, never a complete-looking ``path``. Text is written as
    UTF-8. ``unique=True`` puts the process id into the temporary name, for files that parallel processes (the jobs
    of a sweep sharing a cache) may write at once: each writes its own temporary file and the last rename wins.
    """
    suffix = f".{os.getpid()}.partial" if unique else ".partial"
    partial = path.with_name(path.name + suffix)
    try:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data, encoding="utf-8")
        os.replace(partial, path)
    except BaseException as error:  # a full disk or a stop: no .partial left for a later reader to trip over
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno and error.filename is None:
            # A failed write names no file (only a failed open does): name the one being written, so the one-line
            # disk error says where (``folders.disk_error``), not the fullest folder it can think of.
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
