"""Metadata store: SQLAlchemy 2.0 schema, Alembic migrations, SQLite (WAL) and PostgreSQL engines."""

from __future__ import annotations

from mlpilot.store.store import Store, now_ms

__all__ = ["Store", "now_ms"]
