"""The one place mlpilot.features opens DuckDB: lazily imported, memory-bounded, time-zone pinned.

Every query runs in a :class:`DuckSession` whose ``memory_limit`` and ``temp_directory`` let DuckDB spill
sorts, joins and aggregates to disk, so inputs larger than RAM are joined in bounded memory. Both default to
the settings ``MLPILOT_FEATURES_MEMORY_LIMIT`` (2GB) and ``MLPILOT_FEATURES_TEMP_DIRECTORY``
(``<home>/tmp/duckdb``); each process spills into its own subfolder there, removed when it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from mlpilot.config import memory_size_bytes
from mlpilot.errors import InvalidInputError, MissingDependencyError, MlpilotError

__all__ = ["DEFAULT_MEMORY_LIMIT", "DuckSession", "import_duckdb", "quote", "resolve_memory_limit", "sql_string"]

DEFAULT_MEMORY_LIMIT = "2GB"
# Memory each DuckDB thread is given at least (measured: a 32MB limit fails with 2 threads, passes with 1).
_MIN_THREAD_MEMORY = 32 * 10**6

_names = itertools.count()


def import_duckdb() -> ModuleType:
    """Import DuckDB, or explain which extra installs it."""
    try:
        import duckdb
    except ImportError as exc:
        raise MissingDependencyError("duckdb", "features") from exc
    return duckdb


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (column names come from users' files)."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def resolve_memory_limit(memory_limit: str | None) -> str:
    """``memory_limit``, or the ``features_memory_limit`` setting when it is ``None``."""
    if memory_limit is not None:
        return memory_limit
    from mlpilot.config import load_settings

    return load_settings().features_memory_limit


def _resolve_temp_directory(temp_directory: str | Path | None) -> str:
    """This process's spill folder under ``temp_directory`` (default: the ``features_temp_directory`` setting).

    DuckDB names its spill files the same way in every process, so processes sharing a folder would overwrite
    each other's: each gets a subfolder named after its pid.
    """
    if temp_directory is None:
        from mlpilot.config import load_settings

        temp_directory = load_settings().resolved_features_temp_directory
    parent = Path(temp_directory).expanduser().resolve()
    # DuckDB creates the last folder level itself, only when a query spills.
    with contextlib.suppress(OSError):  # unwritable: DuckDB says so if a query ever needs to spill
        parent.mkdir(parents=True, exist_ok=True)
    folder = str(parent / f"pid-{os.getpid()}")
    with _databases_lock:
        _spill_folders.add(folder)
    return folder


def _threads(memory_limit: str, threads: int | None) -> int | None:
    """``threads``, or (``None``) as many as the cores while each gets :data:`_MIN_THREAD_MEMORY`.

    Every DuckDB thread pins buffers of its own (Parquet column chunks, sort and hash partitions) that cannot
    spill: with a small limit and many threads, queries fail instead of spilling, where fewer threads finish.
    """
    if threads is not None:
        return threads
    try:
        limit = memory_size_bytes(memory_limit)
    except ValueError:  # a form only DuckDB understands: leave its default
        return None
    cores = os.cpu_count() or 1
    fitting = max(1, limit // _MIN_THREAD_MEMORY)
    return None if fitting >= cores else fitting


class _Database:
    """A cached DuckDB database and the fsspec filesystems registered with it."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.filesystems: dict[str, Any] = {}
        self.lock = threading.Lock()

    def use_filesystem(self, name: str, fs: Any) -> None:
        """Make ``fs`` the one DuckDB uses for ``name://`` paths (replacing another configuration's)."""
        with self.lock:
            current = self.filesystems.get(name)
            if current is fs:
                return
            if current is not None:
                self.con.unregister_filesystem(name)
            self.con.register_filesystem(fs)
            self.filesystems[name] = fs


_databases: dict[tuple[int, str, str, int | None], _Database] = {}
_databases_lock = threading.Lock()
_spill_folders: set[str] = set()


def _database(memory_limit: str, temp_directory: str, threads: int | None) -> _Database:
    """A cached in-memory DuckDB database per configuration (and per process: handles do not survive a fork).

    Opening a DuckDB database costs ~10 ms while a cursor on an open one is free; sessions take cursors, which
    are isolated from each other (their registered tables and temporary views are their own).
    """
    duckdb = import_duckdb()
    key = (os.getpid(), memory_limit, temp_directory, threads)
    with _databases_lock:
        db = _databases.get(key)
        if db is None:
            config: dict[str, Any] = {
                "memory_limit": memory_limit,
                "temp_directory": temp_directory,
                # Results are ordered explicitly where order matters; dropping insertion order lowers memory.
                "preserve_insertion_order": False,
            }
            if threads is not None:
                config["threads"] = threads
            try:
                db = _Database(duckdb.connect(":memory:", config=config))
            except duckdb.Error as exc:
                raise InvalidInputError(f"cannot configure DuckDB: {exc}", field="memory_limit") from exc
            _databases[key] = db
        return db


@atexit.register
def _close_databases() -> None:
    with _databases_lock:
        for db in _databases.values():
            db.con.close()
        _databases.clear()
        folders = [f for f in _spill_folders if f.endswith(f"pid-{os.getpid()}")]
        _spill_folders.clear()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


class DuckSession:
    """A DuckDB connection configured for feature computation.

    >>> with DuckSession(memory_limit="256MB") as session:
    ...     session.fetch_arrow("SELECT 1 AS one").num_rows
    1

    ``memory_limit`` is a size (``"512MB"``) or a share of physical memory (``"25%"``); ``None`` takes the
    settings' value, as does ``temp_directory``.
    """

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        duckdb = import_duckdb()
        self._duckdb = duckdb
        self.memory_limit = resolve_memory_limit(memory_limit)
        self.temp_directory = _resolve_temp_directory(temp_directory)
        self._db = _database(self.memory_limit, self.temp_directory, _threads(self.memory_limit, threads))
        self.con = self._db.con.cursor()
        self.con.execute("SET TimeZone = 'UTC'")
        self._memo: dict[Any, Any] = {}

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per session and ``key``: e.g. a glob's file list, which every query of one
        training set or materialization run must see identically (positions refer to it)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def use_remote(self, url: str) -> None:
        """Let DuckDB read ``url`` (``s3://…``) through mlpilot's fsspec filesystem for its scheme."""
        from mlpilot.features._remote import remote_filesystem

        fs = remote_filesystem(url)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._db.use_filesystem(protocol, fs)

    def register_table(self, table: Any) -> str:
        """Expose an Arrow table to SQL under a fresh name and return that name."""
        name = f"__mlpilot_t{next(_names)}"
        self.con.register(name, table)
        return name

    def describe(self, from_sql: str) -> dict[str, str]:
        """Column name -> DuckDB type of a FROM clause, reading only metadata where DuckDB can."""
        rows = self.fetchall(f"DESCRIBE SELECT * FROM {from_sql}")
        return {str(row[0]): str(row[1]) for row in rows}

    def execute(self, statement: str) -> None:
        """Run a statement that returns nothing (DDL)."""
        self._guard(lambda: self.con.execute(statement))

    def fetchall(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return its rows as tuples (for small results)."""
        rows: list[tuple[Any, ...]] = self._guard(lambda: self.con.sql(query, params=params).fetchall())
        return rows

    def fetch_arrow(self, query: str, params: list[Any] | None = None) -> Any:
        """Run a query and return the whole result as an Arrow table."""
        return self._guard(lambda: self.con.sql(query, params=params).to_arrow_table())

    def stream_arrow(self, query: str, batch_size: int, params: list[Any] | None = None) -> Iterator[Any]:
        """Run a query and yield Arrow record batches of at most ``batch_size`` rows (bounded memory)."""
        reader = self._guard(lambda: self.con.sql(query, params=params).to_arrow_reader(batch_size))
        while True:
            batch = self._guard(lambda: _next_batch(reader))
            if batch is None:
                return
            if batch.num_rows:
                yield batch

    def _guard(self, call: Callable[[], Any]) -> Any:
        duckdb = self._duckdb
        try:
            return call()
        except duckdb.OutOfMemoryException as exc:
            raise MlpilotError(
                f"DuckDB ran out of memory within memory_limit={self.memory_limit}: raise memory_limit "
                f"or give a temp_directory with more free space ({exc})",
                field="memory_limit",
            ) from exc
        except (
            duckdb.IOException,
            duckdb.BinderException,
            duckdb.CatalogException,
            duckdb.ParserException,
            duckdb.ConversionException,
            duckdb.InvalidInputException,
        ) as exc:
            raise InvalidInputError(f"feature query failed: {exc}", field="source") from exc
        except duckdb.Error as exc:
            raise MlpilotError(f"feature query failed: {exc}") from exc

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DuckSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _next_batch(reader: Any) -> Any:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None
