"""Shared fixtures: a metadata store per backend, an artifact store, service URLs.

Service-backed tests read their URLs from ``MLPILOT_TEST_PG_URL`` and ``MLPILOT_TEST_REDIS_URL``. They skip
with a reason when a URL is unset or unreachable, except under ``MLPILOT_TEST_REQUIRE_SERVICES=1`` (CI), where
an unreachable service fails the run instead of hiding it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.store import Store

REQUIRE_SERVICES = os.environ.get("MLPILOT_TEST_REQUIRE_SERVICES") == "1"


def service_url(var: str) -> str:
    """The URL in ``var``, or skip (fail under MLPILOT_TEST_REQUIRE_SERVICES=1) when unset."""
    url = os.environ.get(var)
    if not url:
        if REQUIRE_SERVICES:
            pytest.fail(f"{var} is not set but MLPILOT_TEST_REQUIRE_SERVICES=1")
        pytest.skip(f"{var} is not set: no service to test against")
    return url


def unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own MLPILOT_* settings or writes into ./.mlpilot."""
    for key in list(os.environ):
        if key.startswith("MLPILOT_") and not key.startswith("MLPILOT_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLPILOT_HOME", str(tmp_path / "mlpilot-home"))


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = service_url("MLPILOT_TEST_PG_URL")
    try:
        import psycopg

        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3).close()
    except Exception as exc:
        unavailable(f"PostgreSQL at {url} is unreachable: {exc}")
    return url


def _pg_schema_url(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards: isolation without creating databases."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    raw = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty metadata database URL: SQLite in tmp_path, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from _pg_schema_url(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated metadata store on each backend."""
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> FsspecArtifactStore:
    return FsspecArtifactStore(str(tmp_path / "artifacts"))
