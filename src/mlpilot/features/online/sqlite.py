"""The default online store: one SQLite file (WAL), one row per (view, entity key).

>>> store = SqliteOnlineStore(":memory:")
>>> store.write_batch("txn", [StoredRow("[1]", 10, 10, b'{"x": 1.0}')], watermark=10)
>>> store.read("txn", ["[1]", "[2]"])[1] is None, store.read_watermark("txn")
(True, 10)
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

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
_PAYLOAD_ONE = "SELECT payload FROM mlpilot_online_rows WHERE view = ? AND entity_key = ? AND event_time >= ?"
# SQLite's default limit on bound parameters is 32766; stay far below it.
_READ_CHUNK = 500
_MIN_TIME = -(2**63)  # "no TTL": every stored row qualifies


class _Connection(sqlite3.Connection):
    """A connection the store can track weakly: a thread's reader closes when its thread ends."""


class SqliteOnlineStore:
    """Online store in a SQLite file (``":memory:"`` for a private in-memory store). Thread-safe.

    Writes go through one connection under a lock. Reads use one connection per thread (WAL lets readers run
    alongside the writer and each other), opened on a thread's first read and closed with the store or when the
    thread ends; an in-memory store, private to its connection, serializes its reads on the writer's.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = self._connect()
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._con.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open online store {self.path}: {exc}") from exc
        # One writer connection shared by threads: sqlite3 objects are not safe to use concurrently.
        self._lock = threading.Lock()
        self._shared_reads = self.path in (":memory:", "")
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        self._read_sql: dict[int, str] = {}
        self._payload_sql: dict[int, str] = {}

    def _connect(self) -> _Connection:
        con = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            check_same_thread=False,
            isolation_level=None,
            factory=_Connection,
            cached_statements=256,  # one IN (...) statement per batch size
        )
        assert isinstance(con, _Connection)
        return con

    def _reader(self) -> _Connection:
        con: _Connection | None = getattr(self._local, "con", None)
        if con is not None:
            return con
        with self._lock:
            if self._closed:
                raise StoreError(f"online store {self.path}: read failed: the store is closed")
            try:
                con = self._connect()
                con.execute("PRAGMA query_only=1")
            except sqlite3.Error as exc:
                raise StoreError(f"online store {self.path}: read failed: {exc}") from exc
            self._readers.add(con)
        self._local.con = con
        return con

    def _fetch(self, sql: str, params: Sequence[object]) -> list[Any]:
        try:
            if self._shared_reads:
                with self._lock:
                    return self._con.execute(sql, params).fetchall()
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"online store {self.path}: read failed: {exc}") from exc

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
            rows = self._fetch(_READ_ONE, (view, entity_keys[0]))
            return [StoredRow(*rows[0]) if rows else None]
        found: dict[str, StoredRow] = {}
        for start in range(0, len(entity_keys), _READ_CHUNK):
            chunk = entity_keys[start : start + _READ_CHUNK]
            sql = self._read_sql.get(len(chunk))
            if sql is None:
                sql = self._read_sql[len(chunk)] = (
                    "SELECT entity_key, event_time, available_at, payload FROM mlpilot_online_rows "
                    f"WHERE view = ? AND entity_key IN ({','.join('?' * len(chunk))})"
                )
            for row in self._fetch(sql, (view, *chunk)):
                found[row[0]] = StoredRow(*row)
        return [found.get(key) for key in entity_keys]

    def read_payloads(
        self, view: str, entity_keys: Sequence[str], *, min_event_time: int | None = None
    ) -> list[bytes | None]:
        """Each key's payload, or ``None`` (no row, or ``event_time < min_event_time``): one statement per 500
        keys, prepared once per batch size, with the TTL applied in SQL."""
        since = _MIN_TIME if min_event_time is None else min_event_time
        if len(entity_keys) == 1:
            rows = self._fetch(_PAYLOAD_ONE, (view, entity_keys[0], since))
            return [rows[0][0] if rows else None]
        found: dict[str, bytes] = {}
        for start in range(0, len(entity_keys), _READ_CHUNK):
            chunk = entity_keys[start : start + _READ_CHUNK]
            sql = self._payload_sql.get(len(chunk))
            if sql is None:
                sql = self._payload_sql[len(chunk)] = (
                    "SELECT entity_key, payload FROM mlpilot_online_rows WHERE view = ? AND event_time >= ? "
                    f"AND entity_key IN ({','.join('?' * len(chunk))})"
                )
            found.update(self._fetch(sql, (view, since, *chunk)))
        return list(map(found.get, entity_keys))

    def read_watermark(self, view: str) -> int | None:
        rows = self._fetch("SELECT watermark FROM mlpilot_online_watermarks WHERE view = ?", (view,))
        return None if not rows else int(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for con in list(self._readers):
                con.close()
            self._con.close()

    def __enter__(self) -> SqliteOnlineStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({self.path!r})"
