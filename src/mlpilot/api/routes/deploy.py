"""Deployments over REST: lifecycle, strategies, promotion and rollback, analysis, and the data plane's feeds.

Thin by design: each handler parses its input, calls :class:`~mlpilot.deploy.Deployments` and returns its
value. Reads need ``viewer``; changes, and the statistics and outcomes the data plane posts, need ``editor``.
``GET /{name}/config`` answers ``304 Not Modified`` to a poller whose ``If-None-Match`` still holds.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mlpilot.api.deps import Services, get_services, require_role
from mlpilot.deploy import (
    ABConfig,
    AnalysisConfig,
    AnalysisReport,
    CanaryConfig,
    DeploymentInfo,
    EndpointFeatures,
    GateConfig,
    Outcome,
    PreviewVerification,
    RevisionInfo,
    RoutingConfig,
    VariantStats,
)
from mlpilot.registry import ModelEvent

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])

Viewer = Annotated[str, Depends(require_role("viewer"))]
Editor = Annotated[str, Depends(require_role("editor"))]
Svc = Annotated[Services, Depends(get_services)]
Reason = Field(default="", max_length=10_000)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateBody(_Body):
    name: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=256)
    version: int = Field(ge=1)
    canary: CanaryConfig | None = None
    analysis: AnalysisConfig | None = None
    gate: GateConfig | None = None
    routing: RoutingConfig | None = None
    retention_seconds: float = Field(default=600.0, ge=0)
    #: the feature service callers' entity keys are looked up in
    features: EndpointFeatures | None = None
    reason: str = Reason


class CanaryBody(_Body):
    version: int = Field(ge=1)
    canary: CanaryConfig | None = None
    analysis: AnalysisConfig | None = None
    skip_gate: bool = False
    reason: str = Reason


class BlueGreenBody(_Body):
    version: int = Field(ge=1)
    retention_seconds: float | None = Field(default=None, ge=0)
    skip_gate: bool = False
    reason: str = Reason


class ShadowBody(_Body):
    version: int = Field(ge=1)
    mirror: float = Field(default=100.0, gt=0, le=100)
    skip_gate: bool = False
    reason: str = Reason


class ABBody(_Body):
    version: int = Field(ge=1)
    ab: ABConfig | None = None
    skip_gate: bool = False
    reason: str = Reason


class ActionBody(_Body):
    reason: str = Reason
    if_revision: int | None = Field(default=None, ge=1)
    latency_threshold_ms: float | None = Field(default=None, gt=0)


class PromoteBody(ActionBody):
    #: promote a blue-green preview that has not passed a verification (the reason is required and recorded)
    force: bool = False


class VerifyBody(_Body):
    #: the data plane to send the smoke requests to: a model server following the deployment
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://")
    #: rows as callers send them (``/v1`` instances); default: the version's sample, else its signature
    inputs: list[Any] | None = Field(default=None, min_length=1, max_length=10_000)
    requests: int | None = Field(default=None, ge=1, le=10_000)
    timeout: float = Field(default=10.0, gt=0, le=300)
    reason: str = Reason


class ObservationsBody(_Body):
    source: str = Field(min_length=1, max_length=128)
    revision: int = Field(ge=1)
    rollout: int = Field(ge=0)
    variants: dict[str, dict[str, Any]] = Field(max_length=16)


class OutcomesBody(_Body):
    outcomes: list[Outcome] = Field(min_length=1, max_length=100_000)


@router.get("")
def list_deployments(services: Svc, _actor: Viewer, model: str | None = None) -> list[DeploymentInfo]:
    return services.deployments.list_deployments(model=model)


@router.post("", status_code=201)
def create(body: CreateBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.create(
        body.name,
        model=body.model,
        version=body.version,
        canary=body.canary,
        analysis=body.analysis,
        gate=body.gate,
        routing=body.routing,
        retention_seconds=body.retention_seconds,
        features=body.features,
        actor=actor,
        reason=body.reason,
    )


@router.get("/{name}")
def get(name: str, services: Svc, _actor: Viewer) -> DeploymentInfo:
    return services.deployments.get(name)


@router.delete("/{name}", status_code=204, response_class=Response)
def delete(name: str, services: Svc, actor: Editor, reason: Annotated[str, Query(max_length=10_000)] = "") -> Response:
    services.deployments.delete(name, actor=actor, reason=reason)
    return Response(status_code=204)


@router.get("/{name}/history")
def history(
    name: str,
    services: Svc,
    _actor: Viewer,
    after_revision: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RevisionInfo]:
    return services.deployments.history(name, after_revision=after_revision, limit=limit)


@router.get("/{name}/events")
def events(
    name: str,
    services: Svc,
    _actor: Viewer,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ModelEvent]:
    return services.deployments.events(name, after_id=after_id, limit=limit)


@router.get("/{name}/config", response_model=None)
def serving_config(name: str, request: Request, services: Svc, _actor: Viewer) -> Response:
    """The serving document the data plane follows; ``If-None-Match`` with its ETag gets a bodiless 304."""
    doc = services.deployments.serving_config(name)
    headers = {"ETag": doc.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == doc.etag:
        return Response(status_code=304, headers=headers)
    return JSONResponse(doc.model_dump(mode="json"), headers=headers)


@router.get("/{name}/analysis")
def analysis(name: str, services: Svc, _actor: Viewer) -> AnalysisReport:
    return services.deployments.analyze(name)


@router.post("/{name}/canary")
def start_canary(name: str, body: CanaryBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.start_canary(
        name,
        body.version,
        canary=body.canary,
        analysis=body.analysis,
        skip_gate=body.skip_gate,
        actor=actor,
        reason=body.reason,
    )


@router.post("/{name}/blue-green")
def start_blue_green(name: str, body: BlueGreenBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.start_blue_green(
        name,
        body.version,
        retention_seconds=body.retention_seconds,
        skip_gate=body.skip_gate,
        actor=actor,
        reason=body.reason,
    )


@router.post("/{name}/shadow")
def start_shadow(name: str, body: ShadowBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.start_shadow(
        name, body.version, mirror=body.mirror, skip_gate=body.skip_gate, actor=actor, reason=body.reason
    )


@router.post("/{name}/ab")
def start_ab(name: str, body: ABBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.start_ab(
        name, body.version, ab=body.ab, skip_gate=body.skip_gate, actor=actor, reason=body.reason
    )


@router.post("/{name}/promote")
def promote(name: str, body: PromoteBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.promote(
        name, actor=actor, reason=body.reason, if_revision=body.if_revision, force=body.force
    )


@router.post("/{name}/verify")
def verify_preview(name: str, body: VerifyBody, services: Svc, actor: Editor) -> PreviewVerification:
    """Smoke requests to the blue-green candidate's preview route on the data plane at ``url``; the result is
    recorded (a revision and an audit event) and returned, passed or not."""
    return services.deployments.verify_preview(
        name,
        body.url,
        inputs=body.inputs,
        requests=body.requests,
        timeout=body.timeout,
        actor=actor,
        reason=body.reason,
    )


@router.post("/{name}/advance")
def advance(name: str, body: ActionBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.advance(
        name,
        actor=actor,
        reason=body.reason,
        if_revision=body.if_revision,
        latency_threshold_ms=body.latency_threshold_ms,
    )


@router.post("/{name}/pause")
def pause(name: str, body: ActionBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.pause(name, actor=actor, reason=body.reason, if_revision=body.if_revision)


@router.post("/{name}/resume")
def resume(name: str, body: ActionBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.resume(name, actor=actor, reason=body.reason)


@router.post("/{name}/rollback")
def rollback(name: str, body: ActionBody, services: Svc, actor: Editor) -> DeploymentInfo:
    return services.deployments.rollback(name, actor=actor, reason=body.reason, if_revision=body.if_revision)


@router.post("/{name}/release-standby")
def release_standby(name: str, services: Svc, actor: Editor) -> DeploymentInfo | None:
    return services.deployments.release_standby(name, actor=actor)


@router.post("/{name}/observations", status_code=204, response_class=Response)
def observations(name: str, body: ObservationsBody, services: Svc, _actor: Editor) -> Response:
    variants = {k: VariantStats.from_dict(v, field=f"variants.{k}") for k, v in body.variants.items()}
    services.deployments.record_observations(
        name, source=body.source, revision=body.revision, rollout=body.rollout, variants=variants
    )
    return Response(status_code=204)


@router.post("/{name}/outcomes")
def outcomes(name: str, body: OutcomesBody, services: Svc, _actor: Editor) -> dict[str, int]:
    return services.deployments.record_outcomes(name, body.outcomes)
