"""Apply Alembic migrations safely when several processes start at once.

The schema is checked first without a lock (the common case: already at head). Otherwise one process upgrades
while the others wait: behind a file lock next to a SQLite database, behind a transaction-scoped advisory lock on
PostgreSQL. Whoever gets the lock second finds the schema at head and does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock
from sqlalchemy import Connection, Engine, text

from mlpilot.errors import StoreError
from mlpilot.store.engine import IMMEDIATE, sqlite_path

__all__ = ["current_revision", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6D6C70696C6F74  # "mlpilot"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _refuse_unknown(conn: Connection, revision: str | None) -> None:
    """A database migrated by a newer mlpilot than this one: say so, instead of Alembic's "Can't locate revision"."""
    if revision is None:
        return
    try:
        if ScriptDirectory.from_config(_config()).get_revision(revision) is not None:
            return
    except CommandError:  # "Can't locate revision"
        pass
    url = conn.engine.url.render_as_string(hide_password=True)
    raise StoreError(
        f"the metadata store {url} is at schema revision {revision!r}, which this mlpilot does not know (its newest "
        f"is {head_revision()!r}): a newer mlpilot migrated it. Upgrade mlpilot (pip install -U mlpilot) "
        "or use another database (MLPILOT_DB_URL)",
        revision=revision,
        head=head_revision(),
    )


def _upgrade_locked(conn: Connection) -> None:
    revision = current_revision(conn)
    if revision == head_revision():
        return
    _refuse_unknown(conn, revision)
    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def upgrade(engine: Engine) -> None:
    """Bring the schema at ``engine`` to the newest revision; a no-op when it is there already."""
    with engine.connect() as conn:
        revision = current_revision(conn)
        if revision == head_revision():
            return
        _refuse_unknown(conn, revision)
    path = sqlite_path(str(engine.url))
    if engine.dialect.name == "sqlite":
        lock = FileLock(str(path) + ".migrate.lock") if path is not None else None
        if lock is not None:
            lock.acquire(timeout=300)
        try:
            with engine.connect() as conn:
                conn.info[IMMEDIATE] = True
                with conn.begin():
                    _upgrade_locked(conn)
        finally:
            if lock is not None:
                lock.release()
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        _upgrade_locked(conn)
