"""Disk caches of float vectors keyed by content (embeddings, reranker scores), safe for parallel jobs.

SQLite gives atomic writes and concurrent readers for free, so two sweep jobs sharing a cache neither corrupt it
nor recompute each other's entries.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def content_key(*parts: str) -> str:
    """``sha256`` of the parts joined by NUL (which no text field contains)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class VectorCache:
    """float32 vectors stored by key in ``<directory>/<name>.sqlite``."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.sqlite"
        with self._connect() as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success, rolls back on error, and is always closed.

        SQLite's "database or disk is full" becomes ``OSError(ENOSPC)`` naming the cache file, so the run reports
        it in one line naming the folder and its ``paths.*`` option (``experiments.folders.disk_error``)."""
        try:
            connection = sqlite3.connect(self.path, timeout=60)
            try:
                with connection:  # the transaction
                    yield connection
            finally:
                connection.close()
        except sqlite3.OperationalError as error:
            if "disk is full" in str(error) or "disk I/O error" in str(error):
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path)) from error
            raise

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, np.ndarray] = {}
        with self._connect() as connection:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        rows = [(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in vectors.items()]
        with self._connect() as connection:
            connection.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
