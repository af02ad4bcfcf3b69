"""Monitoring over REST: late labels, endpoint settings, checks and their reports, alert rules, ``/metrics``.

Thin by design: each handler parses its input, calls :class:`~mlpilot.monitor.Monitor` and returns its value.
Reads need ``viewer``; writes (labels, settings, running a check, rules) ``editor``. Labels are accepted at
``POST /v1/labels`` (the path data pipelines are told about) and at ``POST /api/v1/labels``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from mlpilot.api.deps import Services, get_services, require_role
from mlpilot.errors import InvalidInputError
from mlpilot.monitor.entities import (
    AlertRule,
    AlertRuleInfo,
    AlertTransition,
    CheckSummary,
    EndpointConfig,
    ProfileInfo,
)
from mlpilot.monitor.labels import LabelBatch, LabelReceipt
from mlpilot.monitor.windows import MAX_TIME_MS, WindowSpec

router = APIRouter(tags=["monitor"])

Viewer = Annotated[str, Depends(require_role("viewer"))]
Editor = Annotated[str, Depends(require_role("editor"))]
Svc = Annotated[Services, Depends(get_services)]


class CheckBody(BaseModel):
    """Which window to check; all empty means the endpoint's configured window."""

    model_config = ConfigDict(extra="forbid")

    last_rows: int | None = Field(default=None, ge=1, le=10_000_000)
    since: Annotated[int, Field(ge=0, le=MAX_TIME_MS)] | datetime | None = None
    until: Annotated[int, Field(ge=0, le=MAX_TIME_MS)] | datetime | None = None
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)

    def spec(self) -> WindowSpec | None:
        if self.last_rows is None and self.since is None and self.until is None and self.version is None:
            return None
        return WindowSpec(self.last_rows, _ms(self.since), _ms(self.until), self.version)


def _ms(value: int | datetime | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class EndpointInfo(BaseModel):
    name: str
    config: EndpointConfig
    latest: CheckSummary | None = None


# -- labels -------------------------------------------------------------------------------------------------


@router.post("/v1/labels", response_model=LabelReceipt)
@router.post("/api/v1/labels", response_model=LabelReceipt)
def post_labels(body: LabelBatch, services: Svc, actor: Editor) -> LabelReceipt:
    """Join late labels to logged predictions (by request id, or entity and time); all or nothing."""
    return services.monitor.log_labels(body, actor=actor)


# -- endpoints and checks -----------------------------------------------------------------------------------


@router.get("/api/v1/monitor/endpoints", response_model=list[EndpointInfo])
def list_endpoints(services: Svc, _: Viewer) -> list[EndpointInfo]:
    """Monitored endpoints (configured, or with a prediction log) and their latest check."""
    latest = {s.endpoint: s for s in services.monitor.latest_checks()}
    return [
        EndpointInfo(name=name, config=config, latest=latest.get(name))
        for name, config in services.monitor.list_endpoints().items()
    ]


@router.get("/api/v1/monitor/endpoints/{name}", response_model=EndpointConfig)
def get_endpoint(name: str, services: Svc, _: Viewer) -> EndpointConfig:
    return services.monitor.endpoint_config(name)


@router.put("/api/v1/monitor/endpoints/{name}", response_model=EndpointConfig)
def put_endpoint(name: str, body: EndpointConfig, services: Svc, actor: Editor) -> EndpointConfig:
    """Declare how an endpoint is monitored: segment fields, label and output columns, window, drift options."""
    return services.monitor.configure_endpoint(name, body, actor=actor)


@router.delete("/api/v1/monitor/endpoints/{name}", status_code=204)
def delete_endpoint(name: str, services: Svc, actor: Editor) -> Response:
    services.monitor.delete_endpoint(name, actor=actor)
    return Response(status_code=204)


@router.post("/api/v1/monitor/endpoints/{name}/checks", response_model=CheckSummary)
def run_check(name: str, services: Svc, actor: Editor, body: CheckBody | None = None) -> CheckSummary:
    """Check a window of the endpoint now; the result is stored and becomes the latest."""
    return services.monitor.run_check(name, body.spec() if body else None, actor=actor)


@router.get("/api/v1/monitor/endpoints/{name}/checks", response_model=list[CheckSummary])
def list_checks(
    name: str, services: Svc, _: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[CheckSummary]:
    return services.monitor.list_checks(name, limit=limit)


@router.get("/api/v1/monitor/endpoints/{name}/checks/latest", response_model=CheckSummary)
def latest_check(name: str, services: Svc, _: Viewer) -> CheckSummary:
    return services.monitor.latest_check(name)


def _check_id(check_id: str) -> int | None:
    if check_id == "latest":
        return None
    if not check_id.isdigit() or int(check_id) > 2**63 - 1:
        raise InvalidInputError(f"check_id: expected a check number or 'latest', got {check_id!r}", field="check_id")
    return int(check_id)


@router.get("/api/v1/monitor/endpoints/{name}/checks/{check_id}/report")
def check_report(name: str, check_id: str, services: Svc, _: Viewer) -> dict[str, Any]:
    """The full report of a check (``DriftReport.to_dict()``); ``latest`` for the newest."""
    return services.monitor.check_report(name, _check_id(check_id))


@router.get("/api/v1/monitor/endpoints/{name}/checks/{check_id}/report.html", response_class=HTMLResponse)
def check_report_html(name: str, check_id: str, services: Svc, _: Viewer) -> HTMLResponse:
    """The report as one self-contained HTML page (inline CSS and SVG, opens offline)."""
    from mlpilot.monitor.html import render_html
    from mlpilot.monitor.report import DriftReport

    report = DriftReport.from_dict(services.monitor.check_report(name, _check_id(check_id)))
    return HTMLResponse(render_html(report))


@router.get("/api/v1/monitor/results", response_model=list[CheckSummary])
def latest_results(services: Svc, _: Viewer) -> list[CheckSummary]:
    """The latest check of every endpoint."""
    return services.monitor.latest_checks()


@router.post("/api/v1/monitor/profiles/{model}/{version}", response_model=ProfileInfo)
def ensure_profile(
    model: str,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    services: Svc,
    _: Editor,
    endpoint: Annotated[str | None, Query()] = None,
) -> ProfileInfo:
    """The reference profile of a model version (computed now if needed), shaped by ``endpoint``'s settings."""
    return services.monitor.ensure_profile(model, version, endpoint=endpoint)


# -- alerts -------------------------------------------------------------------------------------------------


@router.get("/api/v1/monitor/alerts", response_model=list[AlertRuleInfo])
def list_alerts(services: Svc, _: Viewer, endpoint: Annotated[str | None, Query()] = None) -> list[AlertRuleInfo]:
    return services.monitor.alerts.list_rules(endpoint)


@router.put("/api/v1/monitor/alerts/{name}", response_model=AlertRuleInfo)
def put_alert(name: str, body: AlertRule, services: Svc, actor: Editor) -> AlertRuleInfo:
    """Create or replace a rule (its state is kept when it is replaced)."""
    if body.name != name:
        raise InvalidInputError(f"name: the body names {body.name!r} but the path {name!r}", field="name")
    return services.monitor.alerts.set_rule(body, actor=actor)


@router.get("/api/v1/monitor/alerts/{name}", response_model=AlertRuleInfo)
def get_alert(name: str, services: Svc, _: Viewer) -> AlertRuleInfo:
    return services.monitor.alerts.get_rule(name)


@router.delete("/api/v1/monitor/alerts/{name}", status_code=204)
def delete_alert(name: str, services: Svc, actor: Editor) -> Response:
    services.monitor.alerts.delete_rule(name, actor=actor)
    return Response(status_code=204)


@router.post("/api/v1/monitor/alerts/evaluate", response_model=list[AlertTransition])
def evaluate_alerts(services: Svc, _: Editor, run_checks: Annotated[bool, Query()] = True) -> list[AlertTransition]:
    """Evaluate every rule now (what the scheduler does each interval); returns what fired or resolved."""
    return services.monitor.alerts.evaluate(run_checks=run_checks)


# -- Prometheus ---------------------------------------------------------------------------------------------


@router.get("/metrics", include_in_schema=False)
def metrics(services: Svc, _: Viewer) -> Response:
    """Prometheus gauges of the latest monitoring results and alert states."""
    from mlpilot.monitor.exporter import CONTENT_TYPE, render_metrics

    return Response(render_metrics(services.monitor), media_type=CONTENT_TYPE)
