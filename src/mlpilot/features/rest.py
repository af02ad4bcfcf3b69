"""The feature store of a remote ``mlpilot server``: the same calls as :class:`FeatureStoreService`, over HTTP.

    >>> from mlpilot.remote.http import HttpTransport                       # doctest: +SKIP
    >>> features = RestFeatureStore(HttpTransport("http://mlp:5080", token="mlp_..."))  # doctest: +SKIP
    >>> features.get_online_features([{"customer_id": 42}], ["txn_stats:amount_7d"])  # doctest: +SKIP
    {'customer_id': [42], 'amount_7d': [12.5]}
    >>> apply_definitions(features, load_definitions("features.py"))       # doctest: +SKIP

It takes any transport with ``request(method, path, *, json=None, params=None)`` returning decoded JSON and
raising the server's errors as :class:`~mlpilot.errors.MlpilotError` types (``mlpilot.remote.HttpTransport``),
so this package never imports the client layers. Definitions are validated against their sources where they
are planned (the caller's machine); the server re-checks their structure before storing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from mlpilot.errors import RemoteError
from mlpilot.features.lookup import EntityRows
from mlpilot.features.registry import RegisteredSpecs
from mlpilot.features.store_registry import RegistryVersion, check_project
from mlpilot.features.wire import columns_from_json

__all__ = ["ONLINE_PATH", "REGISTRY_PATH", "RestFeatureStore", "Transport"]

ONLINE_PATH = "/v1/features/online"
REGISTRY_PATH = "/api/v1/features/registry"


class Transport(Protocol):
    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any: ...


def _rows_as_json(entity_rows: EntityRows) -> Any:
    if isinstance(entity_rows, Mapping):
        return {str(k): list(v) for k, v in entity_rows.items()}
    return [dict(row) for row in entity_rows]


class RestFeatureStore:
    """A :class:`~mlpilot.features.service.FeatureStoreBackend` talking to a control plane."""

    def __init__(self, transport: Transport, *, project: str = "default") -> None:
        self.transport = transport
        self.project = check_project(project)

    def load_specs(self, version: int | None = None, *, project: str | None = None) -> RegisteredSpecs:
        params: dict[str, Any] = {"project": check_project(project) if project is not None else self.project}
        if version is not None:
            params["version"] = version
        doc = self.transport.request("GET", REGISTRY_PATH, params=params)
        return RegisteredSpecs(int(doc["version"]), tuple(doc["specs"]))

    def apply(
        self, specs: Sequence[Mapping[str, Any]], *, expected_version: int | None = None, actor: str = "local"
    ) -> int:
        """Replace the registered set; the server records the caller's token name as the actor."""
        body = {"project": self.project, "specs": [dict(s) for s in specs], "expected_version": expected_version}
        doc = self.transport.request("PUT", REGISTRY_PATH, json=body)
        return int(doc["version"])

    def history(self, *, limit: int = 100, project: str | None = None) -> list[RegistryVersion]:
        chosen = check_project(project) if project is not None else self.project
        docs = self.transport.request("GET", f"{REGISTRY_PATH}/history", params={"project": chosen, "limit": limit})
        return [RegistryVersion(**doc) for doc in docs]

    def get_online_features(
        self,
        entity_rows: EntityRows,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        full_names: bool = False,
    ) -> dict[str, list[Any]]:
        body: dict[str, Any] = {
            "project": self.project,
            "entity_rows": _rows_as_json(entity_rows),
            "full_names": full_names,
        }
        if features is not None:
            body["features"] = list(features)
        if feature_service is not None:
            body["feature_service"] = feature_service
        doc = self.transport.request("POST", ONLINE_PATH, json=body)
        try:
            return columns_from_json(doc["columns"], doc["dtypes"])
        except (KeyError, TypeError) as exc:
            raise RemoteError(f"unexpected answer from {ONLINE_PATH}: {exc!r}") from exc
