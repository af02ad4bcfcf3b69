"""The default online store: one SQLite file (WAL), one row per (view, entity key).

>>> store = SqliteOnlineStore(":memory:")
>>> store.write_batch("txn", [StoredRow("[1]", 10, 10, b'{"x": 1.0}')], watermark=10)
>>> store.read("txn", ["[1]", "[2]"])[1] is None, store.read_watermark("txn")
(True, 10)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from mlpilot.errors import StoreError
from mlpilot.features.online.base import StoredRow

__all__ = ["SqliteOnlineStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mlpilot_online_rows ("
    " view TEXT NOT NULL, entity_key TEXT NOT NULL, event_time INTEGER NOT NULL,"
    " available_at INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (view, entity_key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS mlpilot_online_watermarks ( view TEXT PRIMARY KEY, watermark INTEGER NOT NULL)",
)
_UPSERT = (
    "INSERT INTO mlpilot_online_rows (view, entity_key, event_time, available_at, payload) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (view, entity_key) DO UPDATE SET event_time = excluded.event_time, "
    "available_at = excluded.available_at, payload = excluded.payload "
    "WHERE (excluded.event_time, excluded.available_at) >= "
    "(mlpilot_online_rows.event_time, mlpilot_online_rows.available_at)"
)
_WATERMARK = (
    "INSERT INTO mlpilot_online_watermarks (view, watermark) VALUES (?, ?) ON CONFLICT (view) DO UPDATE "
    "SET watermark = max(mlpilot_online_watermarks.watermark, excluded.watermark)"
)
_READ_ONE = (
    "SELECT entity_key, event_time, available_at, payload FROM mlpilot_online_rows WHERE view = ? AND entity_key = ?"
)
# SQLite's default limit on bound parameters is 32766; stay far below it.
_READ_CHUNK = 500


class SqliteOnlineStore:
    """Online store in a SQLite file (``":memory:"`` for a private in-memory store). Thread-safe."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._con.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open online store {self.path}: {exc}") from exc
        # One connection shared by threads: sqlite3 objects are not safe to use concurrently.
        self._lock = threading.Lock()
        self._read_sql: dict[int, str] = {}

    def write_batch(self, view: str, rows: Sequence[StoredRow], *, watermark: int | None = None) -> None:
        params = [(view, r.entity_key, r.event_time, r.available_at, r.payload) for r in rows]
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    if params:
                        self._con.executemany(_UPSERT, params)
                    if watermark is not None:
                        self._con.execute(_WATERMARK, (view, watermark))
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"online store {self.path}: write failed: {exc}") from exc

    def read(self, view: str, entity_keys: Sequence[str]) -> list[StoredRow | None]:
        if len(entity_keys) == 1:
            with self._lock:
                try:
                    row = self._con.execute(_READ_ONE, (view, entity_keys[0])).fetchone()
                except sqlite3.Error as exc:
                    raise StoreError(f"online store {self.path}: read failed: {exc}") from exc
            return [None if row is None else StoredRow(*row)]
        found: dict[str, StoredRow] = {}
        for start in range(0, len(entity_keys), _READ_CHUNK):
            chunk = entity_keys[start : start + _READ_CHUNK]
            sql = self._read_sql.get(len(chunk))
            if sql is None:
                marks = ",".join("?" * len(chunk))
                sql = (
                    "SELECT entity_key, event_time, available_at, payload FROM mlpilot_online_rows "
                    f"WHERE view = ? AND entity_key IN ({marks})"
                )
                self._read_sql[len(chunk)] = sql
            with self._lock:
                try:
                    rows = self._con.execute(sql, (view, *chunk)).fetchall()
                except sqlite3.Error as exc:
                    raise StoreError(f"online store {self.path}: read failed: {exc}") from exc
            for row in rows:
                found[row[0]] = StoredRow(*row)
        return [found.get(key) for key in entity_keys]

    def read_watermark(self, view: str) -> int | None:
        with self._lock:
            try:
                row = self._con.execute(
                    "SELECT watermark FROM mlpilot_online_watermarks WHERE view = ?", (view,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"online store {self.path}: read failed: {exc}") from exc
        return None if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> SqliteOnlineStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({self.path!r})"
