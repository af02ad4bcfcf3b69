"""Tracking fixtures: a service on each store backend and a factory for runs with data."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from mlpilot.store import Store
from mlpilot.tracking import RunInfo, RunSpec, TrackingService

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
        info = service.create_run(
            RunSpec(experiment=experiment, name=name, start_time=start_time, parent_id=parent_id)
        )
        service.log_batch(
            info.id,
            metrics=[(k, float(v), 0, 1_000) for k, v in (metrics or {}).items()],
            params={k: str(v) for k, v in (params or {}).items()},
            tags=dict(tags or {}),
        )
        return info

    return make
