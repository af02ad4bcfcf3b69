"""Tracking fixtures: a service on each store backend and a factory for runs with data."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from mlpilot.store import Store
from mlpilot.tracking import RunInfo, RunSpec, TrackingService
from tests.conftest import _pg_schema_url

MakeRun = Callable[..., RunInfo]


@pytest.fixture
def service(store: Store) -> TrackingService:
    return TrackingService(store)


@pytest.fixture
def make_run(service: TrackingService) -> MakeRun:
    """Create a run with params, final metric values and tags in one call."""

    def make(
        name: str,
        *,
        experiment: str = "exp",
        params: Mapping[str, object] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        start_time: int | None = None,
        parent_id: str | None = None,
    ) -> RunInfo:
        info = service.create_run(RunSpec(experiment=experiment, name=name, start_time=start_time, parent_id=parent_id))
        service.log_batch(
            info.id,
            metrics=[(k, float(v), 0, 1_000) for k, v in (metrics or {}).items()],
            params={k: str(v) for k, v in (params or {}).items()},
            tags=dict(tags or {}),
        )
        return info

    return make


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingService]:
    """One service per backend shared by a module's read-only tests: building a store per table row is slow."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('shared') / 'meta.db'}"])
    else:
        urls = _pg_schema_url(request.getfixturevalue("pg_url"))
    store = Store(next(urls))
    yield TrackingService(store)
    store.close()
    next(urls, None)  # drops the PostgreSQL schema
