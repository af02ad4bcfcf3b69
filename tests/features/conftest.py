"""Fixtures for the feature store: small tables, definitions, and an online store per backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import service_url, unavailable

pa = pytest.importorskip("pyarrow")
pytest.importorskip("duckdb", reason="needs the features extra: pip install 'mlpilot[features]'")

T0 = datetime(2024, 1, 1)


def hours(h: float) -> datetime:
    """A naive timestamp ``h`` hours after 2024-01-01 (naive = UTC for mlpilot)."""
    return T0 + timedelta(hours=h)


def table(**columns: Any) -> Any:
    """An Arrow table; lists of datetimes become microsecond timestamps."""
    arrays = {}
    for name, values in columns.items():
        if values and any(isinstance(v, datetime) for v in values):
            arrays[name] = pa.array(values, pa.timestamp("us"))
        else:
            arrays[name] = values
    return pa.table(arrays)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = service_url("MLPILOT_TEST_REDIS_URL")
    try:
        import redis
    except ImportError:
        unavailable("the redis package is not installed: pip install 'mlpilot[redis]'")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {url} is unreachable: {exc}")
    return url


def _drop_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "redis"])
def online_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty online store URL: a SQLite file, or Redis under a unique key prefix removed afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'online.db'}"
        return
    base = request.getfixturevalue("redis_url")
    prefix = f"mlpilot-test-{uuid.uuid4().hex[:12]}:"
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}prefix={prefix}"
    finally:
        _drop_prefix(base, prefix)


@pytest.fixture
def online_store(online_url: str) -> Iterator[Any]:
    from mlpilot.features import open_online_store

    store = open_online_store(online_url)
    yield store
    store.close()


@pytest.fixture
def make_view() -> Callable[..., Any]:
    """A factory of one-entity feature views over in-memory rows (key column ``cid``, time column ``et``)."""
    from mlpilot.features import Entity, Feature, FeatureView, TableSource

    customer = Entity("customer", join_keys=["cid"])

    def make(
        rows: Any,
        *,
        name: str = "txn",
        features: dict[str, str] | None = None,
        available_at: str | None = None,
        ttl: timedelta | None = None,
    ) -> Any:
        declared = features or {"x": "float64"}
        return FeatureView(
            name,
            [customer],
            TableSource(rows),
            timestamp_field="et",
            available_at_field=available_at,
            ttl=ttl,
            features=[Feature(n, d) for n, d in declared.items()],
        )

    return make
