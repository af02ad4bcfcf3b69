"""Deployments through a remote ``mlpilot server``: the :class:`~mlpilot.deploy.DeploymentsBackend` over REST.

>>> from mlpilot.remote.http import HttpTransport
>>> deployments = RestDeployments(HttpTransport("http://127.0.0.1:5080"))  # doctest: +SKIP
>>> deployments.start_canary("churn", 4, reason="retrained").spec.state  # doctest: +SKIP
'canary'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

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
    ServingDocument,
    VariantStats,
)
from mlpilot.registry import ModelEvent
from mlpilot.remote.http import HttpTransport

__all__ = ["RestDeployments"]

_API = "/api/v1/deployments"
_infos = TypeAdapter(list[DeploymentInfo])
_revisions = TypeAdapter(list[RevisionInfo])
_events = TypeAdapter(list[ModelEvent])


def _path(name: str, suffix: str = "") -> str:
    return f"{_API}/{quote(name, safe='')}{suffix}"


def _dump(value: BaseModel | None) -> dict[str, Any] | None:
    return value.model_dump(mode="json") if value is not None else None


class RestDeployments:
    """Deployments on a remote server. ``actor`` arguments are ignored: the server records the caller its
    token names."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport

    def _info(self, method: str, path: str, body: dict[str, Any] | None = None) -> DeploymentInfo:
        return DeploymentInfo.model_validate(self.transport.request(method, path, json=body))

    def create(
        self,
        name: str,
        *,
        model: str,
        version: int,
        canary: CanaryConfig | None = None,
        analysis: AnalysisConfig | None = None,
        gate: GateConfig | None = None,
        routing: RoutingConfig | None = None,
        retention_seconds: float = 600.0,
        features: EndpointFeatures | str | None = None,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        if isinstance(features, str):
            features = EndpointFeatures(service=features)
        body = {
            "name": name,
            "model": model,
            "version": version,
            "canary": _dump(canary),
            "analysis": _dump(analysis),
            "gate": _dump(gate),
            "routing": _dump(routing),
            "retention_seconds": retention_seconds,
            "features": _dump(features),
            "reason": reason,
        }
        return self._info("POST", _API, body)

    def get(self, name: str) -> DeploymentInfo:
        return self._info("GET", _path(name))

    def list_deployments(self, *, model: str | None = None) -> list[DeploymentInfo]:
        params = {"model": model} if model is not None else None
        return _infos.validate_python(self.transport.request("GET", _API, params=params))

    def history(self, name: str, *, after_revision: int = 0, limit: int = 100) -> list[RevisionInfo]:
        params = {"after_revision": after_revision, "limit": limit}
        return _revisions.validate_python(self.transport.request("GET", _path(name, "/history"), params=params))

    def events(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ModelEvent]:
        params = {"after_id": after_id, "limit": limit}
        return _events.validate_python(self.transport.request("GET", _path(name, "/events"), params=params))

    def serving_config(self, name: str) -> ServingDocument:
        return ServingDocument.model_validate(self.transport.request("GET", _path(name, "/config")))

    def delete(self, name: str, *, actor: str = "local", reason: str = "") -> None:
        self.transport.request("DELETE", _path(name), params={"reason": reason})

    def start_canary(
        self,
        name: str,
        version: int,
        *,
        canary: CanaryConfig | None = None,
        analysis: AnalysisConfig | None = None,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        body = {
            "version": version,
            "canary": _dump(canary),
            "analysis": _dump(analysis),
            "skip_gate": skip_gate,
            "reason": reason,
        }
        return self._info("POST", _path(name, "/canary"), body)

    def start_blue_green(
        self,
        name: str,
        version: int,
        *,
        retention_seconds: float | None = None,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        body = {"version": version, "retention_seconds": retention_seconds, "skip_gate": skip_gate, "reason": reason}
        return self._info("POST", _path(name, "/blue-green"), body)

    def start_shadow(
        self,
        name: str,
        version: int,
        *,
        mirror: float = 100.0,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        body = {"version": version, "mirror": mirror, "skip_gate": skip_gate, "reason": reason}
        return self._info("POST", _path(name, "/shadow"), body)

    def start_ab(
        self,
        name: str,
        version: int,
        *,
        ab: ABConfig | None = None,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        body = {"version": version, "ab": _dump(ab), "skip_gate": skip_gate, "reason": reason}
        return self._info("POST", _path(name, "/ab"), body)

    def promote(
        self,
        name: str,
        *,
        actor: str = "local",
        reason: str = "",
        if_revision: int | None = None,
        force: bool = False,
    ) -> DeploymentInfo:
        body = {"reason": reason, "if_revision": if_revision, "force": force}
        return self._info("POST", _path(name, "/promote"), body)

    def verify_preview(
        self,
        name: str,
        url: str,
        *,
        inputs: Sequence[Any] | None = None,
        requests: int | None = None,
        timeout: float = 10.0,
        actor: str = "local",
        reason: str = "",
    ) -> PreviewVerification:
        body = {
            "url": url,
            "inputs": list(inputs) if inputs is not None else None,
            "requests": requests,
            "timeout": timeout,
            "reason": reason,
        }
        # The server sends the smoke requests one after another, each allowed ``timeout`` seconds, and ends by
        # itself; its answer can take longer than the transport's usual timeout.
        doc = self.transport.request("POST", _path(name, "/verify"), json=body, wait_long=True)
        return PreviewVerification.model_validate(doc)

    def advance(
        self,
        name: str,
        *,
        actor: str = "local",
        reason: str = "",
        if_revision: int | None = None,
        latency_threshold_ms: float | None = None,
    ) -> DeploymentInfo:
        body = {"reason": reason, "if_revision": if_revision, "latency_threshold_ms": latency_threshold_ms}
        return self._info("POST", _path(name, "/advance"), body)

    def pause(
        self, name: str, *, actor: str = "local", reason: str = "", if_revision: int | None = None
    ) -> DeploymentInfo:
        return self._info("POST", _path(name, "/pause"), {"reason": reason, "if_revision": if_revision})

    def resume(self, name: str, *, actor: str = "local", reason: str = "") -> DeploymentInfo:
        return self._info("POST", _path(name, "/resume"), {"reason": reason})

    def rollback(
        self, name: str, *, actor: str = "local", reason: str = "", if_revision: int | None = None
    ) -> DeploymentInfo:
        return self._info("POST", _path(name, "/rollback"), {"reason": reason, "if_revision": if_revision})

    def release_standby(self, name: str, *, actor: str = "controller") -> DeploymentInfo | None:
        payload = self.transport.request("POST", _path(name, "/release-standby"))
        return DeploymentInfo.model_validate(payload) if payload is not None else None

    def record_observations(
        self, name: str, *, source: str, revision: int, rollout: int, variants: dict[str, VariantStats]
    ) -> None:
        body = {
            "source": source,
            "revision": revision,
            "rollout": rollout,
            "variants": {k: v.to_dict() for k, v in variants.items()},
        }
        self.transport.request("POST", _path(name, "/observations"), json=body)

    def record_outcomes(self, name: str, outcomes: Sequence[Outcome]) -> dict[str, int]:
        body = {"outcomes": [o.model_dump(mode="json") for o in outcomes]}
        counts: dict[str, int] = self.transport.request("POST", _path(name, "/outcomes"), json=body)
        return counts

    def analyze(self, name: str) -> AnalysisReport:
        return AnalysisReport.model_validate(self.transport.request("GET", _path(name, "/analysis")))
