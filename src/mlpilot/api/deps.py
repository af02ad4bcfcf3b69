"""What handlers depend on: the services, and the caller's identity checked against a role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Depends, Request

from mlpilot.artifacts import ArtifactStore, artifact_store_from_settings
from mlpilot.auth import TokenService, role_allows
from mlpilot.config import Settings
from mlpilot.deploy import Deployments
from mlpilot.errors import AuthenticationError, PermissionDeniedError
from mlpilot.features.online import default_online_url
from mlpilot.features.service import FeatureStoreService
from mlpilot.monitor.backend import default_predictions_url
from mlpilot.monitor.service import Monitor
from mlpilot.registry import RegistryService, load_model
from mlpilot.store import Store
from mlpilot.tracking import TrackingService

__all__ = ["Services", "get_services", "require_role"]


@dataclass
class Services:
    """The control plane's services over one metadata store and one artifact store."""

    store: Store
    artifacts: ArtifactStore
    settings: Settings
    tracking: TrackingService = field(init=False)
    registry: RegistryService = field(init=False)
    tokens: TokenService = field(init=False)
    deployments: Deployments = field(init=False)
    monitor: Monitor = field(init=False)
    features: FeatureStoreService = field(init=False)

    def __post_init__(self) -> None:
        self.tracking = TrackingService(self.store)
        self.registry = RegistryService(self.store)
        self.tokens = TokenService(self.store)
        self.deployments = Deployments(self.store, artifacts=self.artifacts)
        self.monitor = Monitor(
            self.store,
            self.artifacts,
            predictions_url=default_predictions_url(self.settings),
            interval=self.settings.monitor_interval,
            # Reference profiles include the model's predictions on its training sample.
            model_loader=lambda name, version: load_model(f"models:/{name}/{version}", self.registry, self.artifacts),
        )
        # The online store opens on the first lookup: MLPILOT_FEATURES_ONLINE_URL, else SQLite under home.
        online = self.settings.features_online_url or default_online_url(self.settings.home)
        self.features = FeatureStoreService(self.store, online=online)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        store = Store(settings.resolved_db_url, busy_timeout=settings.sqlite_busy_timeout)
        return cls(store=store, artifacts=artifact_store_from_settings(settings), settings=settings)

    def close(self) -> None:
        self.monitor.close()
        self.features.close()
        self.artifacts.close()
        self.store.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def require_role(role: str) -> Callable[..., str]:
    """A dependency returning the caller's name (``local`` without a token) once it may act as ``role``.

    A bearer token, when sent, is always verified and its role applies. Without one, the caller is trusted only
    when the server does not require auth (bound to loopback).
    """

    def dependency(request: Request, services: Services = Depends(get_services)) -> str:
        header = request.headers.get("authorization")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise AuthenticationError("expected 'Authorization: Bearer <token>'", field="authorization")
            info = services.tokens.verify(secret.strip())
            if not role_allows(info.role, role):
                raise PermissionDeniedError(
                    f"token {info.name!r} has role {info.role!r}; this needs {role!r}", field="authorization"
                )
            return info.name
        if request.app.state.require_auth:
            raise AuthenticationError(
                "this server is not bound to loopback: every request needs 'Authorization: Bearer <token>'",
                field="authorization",
            )
        return "local"

    return dependency
