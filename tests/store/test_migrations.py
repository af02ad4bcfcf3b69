from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from mlpilot.errors import ConfigError
from mlpilot.store import Store
from mlpilot.store.migrate import current_revision, head_revision
from mlpilot.store.schema import Base


def test_new_store_is_migrated_to_head(store: Store) -> None:
    with store.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_reopening_a_store_keeps_its_data(db_url: str) -> None:
    first = Store(db_url)
    with first.write() as s:
        s.execute(text("INSERT INTO experiments (name, created_at, tags) VALUES ('e', 1, '{}')"))
    first.close()
    again = Store(db_url)
    with again.read() as s:
        assert s.execute(text("SELECT name FROM experiments")).scalars().all() == ["e"]
    again.close()


def test_sqlite_store_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}", busy_timeout=12)
    with store.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 12000
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_default_home_folder_is_created(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path / 'deep' / 'er' / 'm.db'}").close()
    assert (tmp_path / "deep" / "er" / "m.db").exists()


def _open(url: str) -> str:
    store = Store(url)
    with store.engine.connect() as conn:
        rev = current_revision(conn)
    store.close()
    return str(rev)


def test_many_processes_opening_a_new_store_at_once_all_succeed(db_url: str) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Pool(6) as pool:
        revisions = pool.map(_open, [db_url] * 6)
    assert revisions == [head_revision()] * 6


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "oracle+cx://a"])
def test_unsupported_database_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="MLPILOT_DB_URL"):
        Store(url)


def test_a_store_migrated_by_a_newer_mlpilot_is_refused_with_a_clear_error(db_url: str) -> None:
    from mlpilot.errors import StoreError

    first = Store(db_url)
    with first.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    first.close()
    with pytest.raises(StoreError, match=r"schema revision '9999_from_the_future'.*Upgrade mlpilot") as caught:
        Store(db_url)
    assert caught.value.details == {"revision": "9999_from_the_future", "head": head_revision()}
    # nothing was changed: the newer mlpilot still finds its own revision
    check = Store(db_url, migrate=False)
    with check.read() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999_from_the_future"
    check.close()
