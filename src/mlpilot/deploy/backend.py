"""The deployments contract of the SDK, CLI and controller: local (``Deployments``) or remote
(``RestDeployments``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from mlpilot.deploy.entities import (
    ABConfig,
    AnalysisConfig,
    CanaryConfig,
    DeploymentInfo,
    EndpointFeatures,
    GateConfig,
    PreviewVerification,
    RevisionInfo,
    RoutingConfig,
    ServingDocument,
)
from mlpilot.deploy.observations import VariantStats
from mlpilot.deploy.reports import AnalysisReport, Outcome
from mlpilot.registry import ModelEvent

__all__ = ["DeploymentsBackend"]


@runtime_checkable
class DeploymentsBackend(Protocol):
    """Deployments, their strategies, analysis, promotion and rollback.

    - Every mutating call takes ``actor`` and ``reason`` for the audit trail (a remote server records the
      caller its token names); those that take ``if_revision`` refuse with
      :class:`~mlpilot.errors.ConflictError` when the deployment moved past it.
    - ``start_*`` run the gate first and raise ``ConflictError`` (with the gate report in ``details``) when
      the candidate fails it, unless ``skip_gate``.
    - ``promote`` of a blue-green preview needs a passed ``verify_preview`` of its candidate (else
      ``ConflictError``), or ``force=True`` with a reason (recorded).
    - ``verify_preview`` sends smoke requests to the candidate's preview route on the data plane at ``url`` and
      records the result, passed or not; it raises when the data plane cannot be reached or does not serve the
      candidate (nothing recorded).
    - A gate refusal leaves the deployment as it is and records a ``deployment.gate_refused`` audit event.
    - Reads raise :class:`~mlpilot.errors.NotFoundError` for unknown names.
    - ``create(features=...)`` names the feature service every version of the endpoint looks its inputs up
      from (callers send entity keys); an unregistered service is an
      :class:`~mlpilot.errors.InvalidInputError` naming ``features.service``.
    """

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
    ) -> DeploymentInfo: ...

    def get(self, name: str) -> DeploymentInfo: ...

    def list_deployments(self, *, model: str | None = None) -> list[DeploymentInfo]: ...

    def history(self, name: str, *, after_revision: int = 0, limit: int = 100) -> list[RevisionInfo]: ...

    def events(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ModelEvent]: ...

    def serving_config(self, name: str) -> ServingDocument: ...

    def delete(self, name: str, *, actor: str = "local", reason: str = "") -> None: ...

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
    ) -> DeploymentInfo: ...

    def start_blue_green(
        self,
        name: str,
        version: int,
        *,
        retention_seconds: float | None = None,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo: ...

    def start_shadow(
        self,
        name: str,
        version: int,
        *,
        mirror: float = 100.0,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo: ...

    def start_ab(
        self,
        name: str,
        version: int,
        *,
        ab: ABConfig | None = None,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo: ...

    def promote(
        self,
        name: str,
        *,
        actor: str = "local",
        reason: str = "",
        if_revision: int | None = None,
        force: bool = False,
    ) -> DeploymentInfo: ...

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
    ) -> PreviewVerification: ...

    def advance(
        self,
        name: str,
        *,
        actor: str = "local",
        reason: str = "",
        if_revision: int | None = None,
        latency_threshold_ms: float | None = None,
    ) -> DeploymentInfo: ...

    def pause(
        self, name: str, *, actor: str = "local", reason: str = "", if_revision: int | None = None
    ) -> DeploymentInfo: ...

    def resume(self, name: str, *, actor: str = "local", reason: str = "") -> DeploymentInfo: ...

    def rollback(
        self, name: str, *, actor: str = "local", reason: str = "", if_revision: int | None = None
    ) -> DeploymentInfo: ...

    def release_standby(self, name: str, *, actor: str = "controller") -> DeploymentInfo | None: ...

    def record_observations(
        self, name: str, *, source: str, revision: int, rollout: int, variants: dict[str, VariantStats]
    ) -> None: ...

    def record_outcomes(self, name: str, outcomes: Sequence[Outcome]) -> dict[str, int]: ...

    def analyze(self, name: str) -> AnalysisReport: ...
