"""The one place mlpilot.features opens DuckDB: lazily imported, memory-bounded, time-zone pinned.

Every query runs in a :class:`DuckSession` whose ``memory_limit`` and ``temp_directory`` let DuckDB spill
sorts and joins to disk, so inputs larger than RAM are joined in bounded memory.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from mlpilot.errors import InvalidInputError, MissingDependencyError, MlpilotError

__all__ = ["DEFAULT_MEMORY_LIMIT", "DuckSession", "import_duckdb", "quote", "sql_string"]

DEFAULT_MEMORY_LIMIT = "2GB"

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


_databases: dict[tuple[int, str, str, int | None], Any] = {}
_databases_lock = threading.Lock()


def _database(memory_limit: str, temp_directory: str, threads: int | None) -> Any:
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
                db = duckdb.connect(":memory:", config=config)
            except duckdb.Error as exc:
                raise InvalidInputError(f"cannot configure DuckDB: {exc}", field="memory_limit") from exc
            _databases[key] = db
        return db


def _default_temp_directory() -> str:
    # DuckDB only writes here when a query spills, and removes its files when the query ends.
    return str(Path(tempfile.gettempdir()) / f"mlpilot-duckdb-{os.getpid()}")


@atexit.register
def _close_databases() -> None:
    with _databases_lock:
        for db in _databases.values():
            db.close()
        _databases.clear()
    shutil.rmtree(_default_temp_directory(), ignore_errors=True)


class DuckSession:
    """A DuckDB connection configured for feature computation.

    >>> with DuckSession(memory_limit="256MB") as session:
    ...     session.fetch_arrow("SELECT 1 AS one").num_rows
    1
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
        self.memory_limit = memory_limit or DEFAULT_MEMORY_LIMIT
        temp = str(temp_directory) if temp_directory is not None else _default_temp_directory()
        self.con = _database(self.memory_limit, temp, threads).cursor()
        self.con.execute("SET TimeZone = 'UTC'")

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
