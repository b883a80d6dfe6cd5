"""Disk caches of float vectors keyed by content (embeddings, reranker scores), safe for parallel jobs.

SQLite gives atomic writes and concurrent readers for free, so two sweep jobs sharing a cache neither corrupt it
nor recompute each other's entries. Every entry carries its dimension and a checksum of its key and bytes, checked
on each read: a vector zeroed or altered on disk is computed again, never used. A file that is not a SQLite database
is set aside and the cache starts empty; a cache another process keeps locked is done without; each with one
warning line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from experiments.store import set_aside

log = logging.getLogger(__name__)

#: The table of checked entries (an older ``vectors`` table without checksums is left unread).
TABLE = "entries"
#: How long a read or write waits for another process's lock before the run goes on without the cache.
LOCK_TIMEOUT_S = 60.0

#: Caches found locked in this process: not waited for again (a run opens its caches many times).
_locked: set[Path] = set()


def content_key(*parts: str) -> str:
    """``sha256`` of the parts joined by NUL (which no text field contains)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def checksum(key: str, blob: bytes) -> bytes:
    """What an entry must hash to: its key and its bytes (a vector moved to another key fails too)."""
    return hashlib.blake2b(key.encode() + b"\x00" + blob, digest_size=16).digest()


class CacheUnavailable(Exception):
    """The cache cannot be used for now (locked by another process); the caller computes without it."""


class VectorCache:
    """float32 vectors stored by key in ``<directory>/<name>.sqlite``.

    Args:
        directory: the cache folder (created if missing).
        name: the file's stem.
        lock_timeout_s: how long to wait for another process's lock before going on without the cache
            (default ``LOCK_TIMEOUT_S``).
    """

    def __init__(self, directory: Path, name: str, lock_timeout_s: float | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.sqlite"
        self.lock_timeout_s = LOCK_TIMEOUT_S if lock_timeout_s is None else lock_timeout_s
        self.usable = self.path not in _locked
        if self.usable:
            self._create()

    def _create(self) -> None:
        try:
            with self._connect() as connection:
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} "
                    "(key TEXT PRIMARY KEY, dim INTEGER NOT NULL, checksum BLOB NOT NULL, vector BLOB NOT NULL)"
                )
        except CacheUnavailable:
            pass

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success, rolls back on error, and is always closed.

        SQLite's "database or disk is full" becomes ``OSError(ENOSPC)`` naming the cache file, so the run reports
        it in one line naming the folder and its ``paths.*`` option (``experiments.folders.disk_error``). A lock
        held past ``lock_timeout_s`` turns the cache off for this process (``CacheUnavailable``); a file that is
        not a database is set aside and the cache starts again, empty."""
        try:
            connection = sqlite3.connect(self.path, timeout=self.lock_timeout_s)
            try:
                with connection:  # the transaction
                    yield connection
            finally:
                connection.close()
        except sqlite3.OperationalError as error:
            if "disk is full" in str(error) or "disk I/O error" in str(error):
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path)) from error
            if "locked" not in str(error):
                raise
            self.usable = False
            _locked.add(self.path)
            log.warning(
                "%s is locked by another process (waited %.0f s); this run goes on without that cache",
                self.path,
                self.lock_timeout_s,
            )
            raise CacheUnavailable(str(self.path)) from error
        except sqlite3.DatabaseError as error:  # "file is not a database", "database disk image is malformed"
            aside = set_aside(self.path)
            kept = f" (kept as {aside.name})" if aside else ""
            log.warning("%s is not a readable SQLite cache (%s); starting it empty%s", self.path, error, kept)
            self._create()
            raise CacheUnavailable(str(self.path)) from error

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` that pass their checks (missing or damaged keys are absent)."""
        found: dict[str, np.ndarray] = {}
        if not self.usable:
            return found
        damaged = 0
        try:
            with self._connect() as connection:
                for start in range(0, len(keys), 500):
                    chunk = list(keys[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT key, dim, checksum, vector FROM {TABLE} WHERE key IN ({marks})"
                    for key, dim, digest, blob in connection.execute(query, chunk):
                        if len(blob) != 4 * dim or digest != checksum(key, blob):
                            damaged += 1
                            continue
                        found[key] = np.frombuffer(blob, dtype=np.float32)
        except CacheUnavailable:
            return {}
        if damaged:
            log.warning("%s: %d cached vectors fail their checksum; computing them again", self.path, damaged)
        return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        """Store ``vectors`` (replacing entries of the same keys); nothing is stored while the cache is unusable."""
        if not self.usable:
            return
        rows = []
        for key, vector in vectors.items():
            blob = np.asarray(vector, dtype=np.float32).tobytes()
            rows.append((key, len(blob) // 4, checksum(key, blob), blob))
        with contextlib.suppress(CacheUnavailable), self._connect() as connection:
            connection.executemany(
                f"INSERT OR REPLACE INTO {TABLE} (key, dim, checksum, vector) VALUES (?, ?, ?, ?)", rows
            )
