"""Monitoring through a remote ``mlpilot server``: the :class:`~mlpilot.monitor.MonitorBackend` over REST, plus
the endpoint settings and alert rules the CLI manages.

>>> from mlpilot.remote.http import HttpTransport
>>> monitor = RestMonitor(HttpTransport("http://127.0.0.1:5080"))  # doctest: +SKIP
>>> mlpilot.monitor.log_labels(["9f0c…"], [1], backend=monitor)  # doctest: +SKIP
>>> monitor.run_check("churn").drifted_features  # doctest: +SKIP
['income']
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from mlpilot.monitor.entities import (
    AlertRule,
    AlertRuleInfo,
    AlertTransition,
    CheckSummary,
    EndpointConfig,
    ProfileInfo,
)
from mlpilot.monitor.labels import LabelBatch, LabelReceipt
from mlpilot.monitor.windows import WindowSpec
from mlpilot.remote.http import HttpTransport

__all__ = ["RestAlerts", "RestMonitor"]

_API = "/api/v1/monitor"
_summaries = TypeAdapter(list[CheckSummary])
_rules = TypeAdapter(list[AlertRuleInfo])
_transitions = TypeAdapter(list[AlertTransition])


def _endpoint(name: str, suffix: str = "") -> str:
    return f"{_API}/endpoints/{quote(name, safe='')}{suffix}"


class RestAlerts:
    """Alert rules on a remote server (``actor`` arguments are ignored: the server records the token's name)."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport

    def set_rule(self, rule: AlertRule, *, actor: str = "local") -> AlertRuleInfo:
        path = f"{_API}/alerts/{quote(rule.name, safe='')}"
        return AlertRuleInfo.model_validate(self.transport.request("PUT", path, json=rule.model_dump(mode="json")))

    def get_rule(self, name: str) -> AlertRuleInfo:
        return AlertRuleInfo.model_validate(self.transport.request("GET", f"{_API}/alerts/{quote(name, safe='')}"))

    def list_rules(self, endpoint: str | None = None) -> list[AlertRuleInfo]:
        params = {"endpoint": endpoint} if endpoint else None
        return _rules.validate_python(self.transport.request("GET", f"{_API}/alerts", params=params))

    def delete_rule(self, name: str, *, actor: str = "local") -> None:
        self.transport.request("DELETE", f"{_API}/alerts/{quote(name, safe='')}")

    def evaluate(self, *, run_checks: bool = True) -> list[AlertTransition]:
        data = self.transport.request("POST", f"{_API}/alerts/evaluate", params={"run_checks": run_checks})
        return _transitions.validate_python(data)


class RestMonitor:
    """Labels, checks, endpoint settings and profiles on a remote server."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport
        self.alerts = RestAlerts(transport)

    def log_labels(self, batch: LabelBatch, *, actor: str = "local") -> LabelReceipt:
        data = self.transport.request("POST", "/api/v1/labels", json=batch.model_dump(mode="json", exclude_none=True))
        return LabelReceipt.model_validate(data)

    def run_check(self, endpoint: str, window: WindowSpec | None = None, *, actor: str = "local") -> CheckSummary:
        body: dict[str, Any] = {}
        if window is not None:
            body = {
                "last_rows": window.last_rows,
                "since": window.since_ms,
                "until": window.until_ms,
                "version": window.version,
            }
        return CheckSummary.model_validate(self.transport.request("POST", _endpoint(endpoint, "/checks"), json=body))

    def latest_check(self, endpoint: str) -> CheckSummary:
        return CheckSummary.model_validate(self.transport.request("GET", _endpoint(endpoint, "/checks/latest")))

    def latest_checks(self) -> list[CheckSummary]:
        return _summaries.validate_python(self.transport.request("GET", f"{_API}/results"))

    def list_checks(self, endpoint: str, *, limit: int = 50) -> list[CheckSummary]:
        data = self.transport.request("GET", _endpoint(endpoint, "/checks"), params={"limit": limit})
        return _summaries.validate_python(data)

    def check_report(self, endpoint: str, check_id: int | None = None) -> dict[str, Any]:
        which = "latest" if check_id is None else str(int(check_id))
        data: dict[str, Any] = self.transport.request("GET", _endpoint(endpoint, f"/checks/{which}/report"))
        return data

    def configure_endpoint(self, name: str, config: EndpointConfig, *, actor: str = "local") -> EndpointConfig:
        data = self.transport.request("PUT", _endpoint(name), json=config.model_dump(mode="json"))
        return EndpointConfig.model_validate(data)

    def endpoint_config(self, name: str) -> EndpointConfig:
        return EndpointConfig.model_validate(self.transport.request("GET", _endpoint(name)))

    def list_endpoints(self) -> dict[str, EndpointConfig]:
        items = self.transport.request("GET", f"{_API}/endpoints")
        return {str(item["name"]): EndpointConfig.model_validate(item["config"]) for item in items}

    def ensure_profile(self, model: str, version: int, *, endpoint: str | None = None) -> ProfileInfo:
        path = f"{_API}/profiles/{quote(model, safe='')}/{int(version)}"
        params = {"endpoint": endpoint} if endpoint else None
        return ProfileInfo.model_validate(self.transport.request("POST", path, params=params))
