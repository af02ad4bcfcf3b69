"""Tracking over REST: experiments, runs, batched logging, metric history and run search.

Thin by design: each handler parses its body, calls :class:`~mlpilot.tracking.TrackingService` and returns its
value. Reads need the ``viewer`` role, writes ``editor``. Metric points travel as compact
``[key, value, step, timestamp_ms]`` arrays; non-finite values as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mlpilot.api.deps import Services, get_services, require_role
from mlpilot.tracking import (
    ArtifactRef,
    DatasetInfo,
    Experiment,
    MetricPoint,
    Run,
    RunInfo,
    RunPage,
    RunSpec,
)

router = APIRouter(prefix="/api/v1", tags=["tracking"])

Viewer = Annotated[str, Depends(require_role("viewer"))]
Editor = Annotated[str, Depends(require_role("editor"))]
Svc = Annotated[Services, Depends(get_services)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentBody(_Body):
    name: str = Field(min_length=1, max_length=256)


class LogBatchBody(_Body):
    metrics: list[tuple[str, float, int, int]] = Field(default_factory=list, max_length=100_000)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class EndRunBody(LogBatchBody):
    """The run's final status, with its last batch (committed together)."""

    status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED"
    end_time: int | None = Field(default=None, ge=0)


class DatasetBody(_Body):
    dataset: DatasetInfo
    context: str = Field(default="train", min_length=1, max_length=64)


class SearchBody(_Body):
    filter: str | None = None
    experiment: str | list[str] | None = None
    order_by: list[str] | None = None
    max_results: int | None = Field(default=None, ge=1)
    page_token: str | None = None


@router.post("/experiments", status_code=200)
def get_or_create_experiment(body: ExperimentBody, services: Svc, actor: Editor) -> Experiment:
    return services.tracking.get_or_create_experiment(body.name, actor=actor)


@router.get("/experiments")
def list_experiments(services: Svc, _actor: Viewer) -> list[Experiment]:
    return services.tracking.list_experiments()


@router.get("/experiments/{name:path}")
def get_experiment(name: str, services: Svc, _actor: Viewer) -> Experiment:
    return services.tracking.get_experiment(name)


@router.post("/runs", status_code=201)
def create_run(spec: RunSpec, services: Svc, actor: Editor) -> RunInfo:
    return services.tracking.create_run(spec, actor=actor)


@router.post("/runs/search")
def search_runs(body: SearchBody, services: Svc, _actor: Viewer) -> RunPage:
    return services.tracking.search_runs(
        body.filter,
        experiment=body.experiment,
        order_by=body.order_by,
        max_results=body.max_results,
        page_token=body.page_token,
    )


@router.get("/runs/{run_id}")
def get_run(run_id: str, services: Svc, _actor: Viewer) -> Run:
    return services.tracking.get_run(run_id)


@router.post("/runs/{run_id}/batch", status_code=204, response_class=Response)
def log_batch(run_id: str, body: LogBatchBody, services: Svc, actor: Editor) -> Response:
    services.tracking.log_batch(run_id, metrics=body.metrics, params=body.params, tags=body.tags, actor=actor)
    return Response(status_code=204)


@router.post("/runs/{run_id}/end")
def end_run(run_id: str, body: EndRunBody, services: Svc, actor: Editor) -> RunInfo:
    return services.tracking.end_run(
        run_id,
        body.status,
        end_time=body.end_time,
        metrics=body.metrics,
        params=body.params,
        tags=body.tags,
        actor=actor,
    )


@router.post("/runs/{run_id}/datasets", status_code=204, response_class=Response)
def log_dataset(run_id: str, body: DatasetBody, services: Svc, actor: Editor) -> Response:
    services.tracking.log_dataset(run_id, body.dataset, context=body.context, actor=actor)
    return Response(status_code=204)


@router.post("/runs/{run_id}/artifacts", status_code=204, response_class=Response)
def log_artifact(run_id: str, body: ArtifactRef, services: Svc, actor: Editor) -> Response:
    services.tracking.log_artifact(run_id, body, actor=actor)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metric-history")
def get_metric_history(
    run_id: str, services: Svc, _actor: Viewer, key: Annotated[str, Query(min_length=1, max_length=256)]
) -> list[MetricPoint]:
    return services.tracking.get_metric_history(run_id, key)
