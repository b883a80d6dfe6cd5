"""A local SQLite MLflow store (``outputs/mlflow.db``) is created whole or not at all, and a half-created one is told.

MLflow creates its tables and then runs some fifty schema migrations, committing as it goes: a disk that fills
meanwhile leaves a file that every later connection fails on ("table ... already exists", "duplicate column
name"), after space returns too. So the store is created and migrated in a temporary file beside it and linked
into place only when complete; a store left half-created by an older version, or a file that is no database, is
explained in one line.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from experiments.errors import UserError
from experiments.folders import DISK_FULL_WORDS

#: What a migration says when it runs on a store whose earlier migrations were cut short.
HALF_MIGRATED = ("already exists", "duplicate column name")
#: What SQLite says of a file that is not one of its databases.
NOT_A_DATABASE = "file is not a database"


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI, None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def create_store(uri: str) -> None:
    """Create the SQLite store at ``uri`` atomically when it does not exist yet (other stores: nothing to do).

    The tables are created and migrated in ``.<name>.creating-<pid>-<random>`` beside the store, then hard-linked
    to the store's name: a parallel job that created it first keeps its store (the link fails, ours is dropped).

    Raises:
        OSError: ENOSPC naming the store when the disk fills meanwhile (nothing is left behind).
    """
    path = sqlite_path(uri)
    if path is None or path.exists():
        return
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        engine = create_sqlalchemy_engine(f"sqlite:///{partial}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        _link(partial, path)
    except FileExistsError:
        pass  # another job created the store meanwhile: it did so the same way, so it is complete
    except Exception as error:
        if any(words in str(error) for words in DISK_FULL_WORDS):
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from error
        raise
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _link(partial: Path, path: Path) -> None:
    """Give the complete store its name without replacing one a parallel job gave it first (``FileExistsError``)."""
    try:
        os.link(partial, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: a rename, which may replace a store made a moment ago
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.rename(partial, path)


def unusable_store(uri: str, error: BaseException) -> UserError | None:
    """A one-line explanation when ``error`` comes from a local store whose creation was cut short, or from a file
    that is no SQLite database at all; None for any other error."""
    path = sqlite_path(uri)
    text = str(error)
    if path is None:
        return None
    if NOT_A_DATABASE in text:
        return UserError(f"{path} is not an SQLite database: move it away and rerun, or set paths.mlflow_db=<a file>")
    if not any(words in text for words in HALF_MIGRATED):
        return None
    detail = next((line.strip() for line in text.splitlines() if any(w in line for w in HALF_MIGRATED)), text)
    detail = detail.removeprefix("(sqlite3.OperationalError) ")[:80]
    return UserError(
        f"{path} is a half-created MLflow store ({detail}: its creation was cut short, e.g. by a full disk) and "
        "holds no run; move it away and rerun, or set paths.mlflow_db=<another file>"
    )
