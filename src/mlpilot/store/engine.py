"""Engines for the metadata store, one composition point per URL scheme.

SQLite runs in WAL mode with a busy timeout, and write transactions start with ``BEGIN IMMEDIATE``: a deferred
transaction that later tries to write cannot wait for the lock (SQLite would fail at once with "database is
locked" to avoid a deadlock), while an immediate one queues behind the current writer for up to the busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool, StaticPool

from mlpilot.errors import ConfigError, MissingDependencyError

__all__ = ["IMMEDIATE", "make_engine", "sqlite_path"]

#: Connection-level flag: the next transaction on this connection is a write (``BEGIN IMMEDIATE`` on SQLite).
IMMEDIATE = "mlpilot_immediate"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str, *, busy_timeout: float = 60.0) -> Engine:
    """Create the engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"MLPILOT_DB_URL: not a database URL: {url!r}", key="MLPILOT_DB_URL") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, busy_timeout)
    if backend == "postgresql":
        return _postgres_engine(parsed.set(drivername="postgresql+psycopg").render_as_string(False))
    raise ConfigError(
        f"MLPILOT_DB_URL: unsupported database {backend!r}; use sqlite:///… or postgresql+psycopg://…",
        key="MLPILOT_DB_URL",
    )


def _sqlite_engine(url: str, busy_timeout: float) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see module docstring).
        connect_args={"timeout": busy_timeout, "isolation_level": None, "check_same_thread": False},
        # A file database keeps a small pool: closing the last connection makes SQLite checkpoint the WAL, which
        # costs ~1 ms a transaction. An in-memory database exists once per connection, so every thread shares one.
        poolclass=StaticPool if path is None else QueuePool,
        **({"pool_size": 5, "max_overflow": 10} if path is not None else {}),
    )
    if path is not None:
        # A forked child must not reuse the parent's SQLite connections (that corrupts the database): drop them.
        ref = weakref.ref(engine)

        def _after_fork() -> None:
            eng = ref()
            if eng is not None:
                eng.dispose(close=False)

        os.register_at_fork(after_in_child=_after_fork)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.info.pop(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: str) -> Engine:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("psycopg", "postgres") from exc
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
