"""The registry through a remote ``mlpilot server``: the :class:`~mlpilot.registry.RegistryBackend` over REST.

``log_model(model, "churn", registry=RestRegistry(transport), artifacts=RestArtifactStore(transport))`` works
as it does locally: the archive and sample go up as blobs by digest, then one request registers the version.

>>> from mlpilot.remote.http import HttpTransport
>>> registry = RestRegistry(HttpTransport("http://127.0.0.1:5080"))  # doctest: +SKIP
>>> registry.resolve("models:/churn@champion").version  # doctest: +SKIP
3
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from mlpilot.registry import (
    AliasInfo,
    ModelEvent,
    ModelVersionInfo,
    NewModelVersion,
    RegisteredModelInfo,
)
from mlpilot.remote.http import HttpTransport

__all__ = ["RestRegistry"]

_API = "/api/v1"
_models = TypeAdapter(list[RegisteredModelInfo])
_versions = TypeAdapter(list[ModelVersionInfo])
_events = TypeAdapter(list[ModelEvent])


def _model_path(name: str, suffix: str = "") -> str:
    return f"{_API}/models/{quote(name, safe='')}{suffix}"


def _tag_params(tags: dict[str, str] | None) -> list[str] | None:
    return [f"{k}={v}" for k, v in tags.items()] if tags else None


def _edit_body(
    description: str | None, set_tags: dict[str, str] | None, delete_tags: Iterable[str] | None
) -> dict[str, Any]:
    return {
        "description": description,
        "set_tags": set_tags,
        "delete_tags": list(delete_tags) if delete_tags is not None else None,
    }


class RestRegistry:
    """Registered models, versions and aliases on a remote server. ``actor`` arguments are ignored: the server
    records the caller its token names."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport

    def create_model_version(self, name: str, new: NewModelVersion, *, actor: str = "local") -> ModelVersionInfo:
        body = new.model_dump(mode="json")
        return ModelVersionInfo.model_validate(
            self.transport.request("POST", _model_path(name, "/versions"), json=body)
        )

    def create_model(
        self, name: str, *, description: str = "", tags: dict[str, str] | None = None, actor: str = "local"
    ) -> RegisteredModelInfo:
        body = {"name": name, "description": description, "tags": tags or {}}
        return RegisteredModelInfo.model_validate(self.transport.request("POST", f"{_API}/models", json=body))

    def get_model(self, name: str) -> RegisteredModelInfo:
        return RegisteredModelInfo.model_validate(self.transport.request("GET", _model_path(name)))

    def search_models(
        self,
        query: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[RegisteredModelInfo]:
        params: dict[str, Any] = {"max_results": max_results, "offset": offset}
        if query:
            params["query"] = query
        if tags:
            params["tag"] = _tag_params(tags)
        return _models.validate_python(self.transport.request("GET", f"{_API}/models", params=params))

    def get_model_version(self, name: str, version: int) -> ModelVersionInfo:
        path = _model_path(name, f"/versions/{int(version)}")
        return ModelVersionInfo.model_validate(self.transport.request("GET", path))

    def list_model_versions(self, name: str, *, max_results: int = 100, offset: int = 0) -> list[ModelVersionInfo]:
        params = {"max_results": max_results, "offset": offset}
        return _versions.validate_python(self.transport.request("GET", _model_path(name, "/versions"), params=params))

    def search_model_versions(
        self,
        *,
        name: str | None = None,
        run_id: str | None = None,
        flavor: str | None = None,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[ModelVersionInfo]:
        params: dict[str, Any] = {"max_results": max_results, "offset": offset}
        for key, value in (("name", name), ("run_id", run_id), ("flavor", flavor)):
            if value is not None:
                params[key] = value
        if tags:
            params["tag"] = _tag_params(tags)
        return _versions.validate_python(self.transport.request("GET", f"{_API}/model-versions", params=params))

    def resolve(self, uri: str) -> ModelVersionInfo:
        payload = self.transport.request("GET", f"{_API}/model-versions/resolve", params={"uri": uri})
        return ModelVersionInfo.model_validate(payload)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
        actor: str = "local",
    ) -> RegisteredModelInfo:
        body = _edit_body(description, set_tags, delete_tags)
        return RegisteredModelInfo.model_validate(self.transport.request("PATCH", _model_path(name), json=body))

    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
        actor: str = "local",
    ) -> ModelVersionInfo:
        body = _edit_body(description, set_tags, delete_tags)
        path = _model_path(name, f"/versions/{int(version)}")
        return ModelVersionInfo.model_validate(self.transport.request("PATCH", path, json=body))

    def delete_model_version(self, name: str, version: int, *, actor: str = "local") -> None:
        self.transport.request("DELETE", _model_path(name, f"/versions/{int(version)}"))

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = "local") -> AliasInfo:
        path = _model_path(name, f"/aliases/{quote(alias, safe='')}")
        return AliasInfo.model_validate(self.transport.request("PUT", path, json={"version": version}))

    def delete_alias(self, name: str, alias: str, *, actor: str = "local") -> None:
        self.transport.request("DELETE", _model_path(name, f"/aliases/{quote(alias, safe='')}"))

    def model_history(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ModelEvent]:
        params = {"after_id": after_id, "limit": limit}
        return _events.validate_python(self.transport.request("GET", _model_path(name, "/history"), params=params))
