"""The tracking contract the SDK codes against, met by the local service and by the REST client alike.

``TrackingService`` (over a local store) and ``mlpilot.remote.tracking.RestTracking`` (over a ``mlpilot
server``) both implement it, so :func:`mlpilot.tracking.start_run` works unchanged against either.

- Values crossing it are the frozen pydantic models of :mod:`mlpilot.tracking.models`.
- ``log_batch`` is what the background writer calls: metric points as ``(key, value, step, timestamp_ms)``
  tuples, params and tags as string maps, all of one run, written atomically. ``end_run`` takes the run's
  last batch the same way and commits it with the final status.
- Mutating methods take ``actor``, recorded in the audit trail (a server uses the caller's token instead).
- Errors are :class:`~mlpilot.errors.MlpilotError` subclasses: NotFoundError for an unknown run or experiment,
  InvalidInputError (FilterSyntaxError) for bad input, ConflictError for a param re-logged with another value.

>>> from mlpilot.store import Store
>>> from mlpilot.tracking import TrackingService
>>> backend: TrackingBackend = TrackingService(Store("sqlite:///:memory:"))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from mlpilot.tracking.models import (
    ArtifactRef,
    DatasetInfo,
    Experiment,
    MetricPoint,
    Run,
    RunInfo,
    RunPage,
    RunSpec,
    RunStatus,
)

__all__ = ["TrackingBackend"]


@runtime_checkable
class TrackingBackend(Protocol):
    def get_or_create_experiment(self, name: str, *, actor: str = "local") -> Experiment: ...

    def get_experiment(self, name: str) -> Experiment: ...

    def list_experiments(self) -> list[Experiment]: ...

    def create_run(self, spec: RunSpec, *, actor: str = "local") -> RunInfo: ...

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        *,
        end_time: int | None = None,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> RunInfo: ...

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> None: ...

    def log_dataset(
        self, run_id: str, dataset: DatasetInfo, *, context: str = "train", actor: str = "local"
    ) -> None: ...

    def log_artifact(self, run_id: str, artifact: ArtifactRef, *, actor: str = "local") -> None: ...

    def get_run(self, run_id: str) -> Run: ...

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...

    def search_runs(
        self,
        filter: str | None = None,
        *,
        experiment: str | Iterable[str] | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> RunPage: ...
