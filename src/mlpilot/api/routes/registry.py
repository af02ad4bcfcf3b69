"""The model registry over REST: models, versions, aliases, resolution and each model's audit trail.

Thin by design: each handler parses its input, calls :class:`~mlpilot.registry.RegistryService` and returns
its value. Reads need the ``viewer`` role, writes ``editor``. Model bytes never pass through here: the SDK
uploads the archive to ``/api/v1/artifacts/{sha256}`` first and registers the version by digest.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mlpilot.api.deps import Services, get_services, require_role
from mlpilot.errors import InvalidInputError
from mlpilot.registry import (
    AliasInfo,
    ModelEvent,
    ModelVersionInfo,
    NewModelVersion,
    RegisteredModelInfo,
)

router = APIRouter(prefix="/api/v1", tags=["registry"])

Viewer = Annotated[str, Depends(require_role("viewer"))]
Editor = Annotated[str, Depends(require_role("editor"))]
Svc = Annotated[Services, Depends(get_services)]
MaxResults = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
TagFilter = Annotated[list[str] | None, Query(description="key=value; repeat for several tags")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateModelBody(_Body):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=100_000)
    tags: dict[str, str] = Field(default_factory=dict)


class EditBody(_Body):
    description: str | None = Field(default=None, max_length=100_000)
    set_tags: dict[str, str] | None = None
    delete_tags: list[str] | None = None


class AliasBody(_Body):
    version: int = Field(ge=1)


def _tags(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"tag: expected key=value, got {pair!r}", field="tag")
        tags[key] = value
    return tags


@router.get("/models")
def search_models(
    services: Svc,
    _actor: Viewer,
    query: str | None = None,
    tag: TagFilter = None,
    max_results: MaxResults = 100,
    offset: Offset = 0,
) -> list[RegisteredModelInfo]:
    return services.registry.search_models(query, tags=_tags(tag), max_results=max_results, offset=offset)


@router.post("/models", status_code=201)
def create_model(body: CreateModelBody, services: Svc, actor: Editor) -> RegisteredModelInfo:
    return services.registry.create_model(body.name, description=body.description, tags=body.tags, actor=actor)


@router.get("/models/{name}")
def get_model(name: str, services: Svc, _actor: Viewer) -> RegisteredModelInfo:
    return services.registry.get_model(name)


@router.patch("/models/{name}")
def update_model(name: str, body: EditBody, services: Svc, actor: Editor) -> RegisteredModelInfo:
    return services.registry.update_model(
        name, description=body.description, set_tags=body.set_tags, delete_tags=body.delete_tags, actor=actor
    )


@router.get("/models/{name}/history")
def model_history(
    name: str,
    services: Svc,
    _actor: Viewer,
    after_id: Offset = 0,
    limit: MaxResults = 100,
) -> list[ModelEvent]:
    return services.registry.model_history(name, after_id=after_id, limit=limit)


@router.post("/models/{name}/versions", status_code=201)
def create_model_version(name: str, body: NewModelVersion, services: Svc, actor: Editor) -> ModelVersionInfo:
    return services.registry.create_model_version(name, body, actor=actor)


@router.get("/models/{name}/versions")
def list_model_versions(
    name: str, services: Svc, _actor: Viewer, max_results: MaxResults = 100, offset: Offset = 0
) -> list[ModelVersionInfo]:
    return services.registry.list_model_versions(name, max_results=max_results, offset=offset)


@router.get("/models/{name}/versions/{version}")
def get_model_version(name: str, version: int, services: Svc, _actor: Viewer) -> ModelVersionInfo:
    return services.registry.get_model_version(name, version)


@router.patch("/models/{name}/versions/{version}")
def update_model_version(name: str, version: int, body: EditBody, services: Svc, actor: Editor) -> ModelVersionInfo:
    return services.registry.update_model_version(
        name,
        version,
        description=body.description,
        set_tags=body.set_tags,
        delete_tags=body.delete_tags,
        actor=actor,
    )


@router.delete("/models/{name}/versions/{version}", status_code=204, response_class=Response)
def delete_model_version(name: str, version: int, services: Svc, actor: Editor) -> Response:
    services.registry.delete_model_version(name, version, actor=actor)
    return Response(status_code=204)


@router.put("/models/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasBody, services: Svc, actor: Editor) -> AliasInfo:
    return services.registry.set_alias(name, alias, body.version, actor=actor)


@router.delete("/models/{name}/aliases/{alias}", status_code=204, response_class=Response)
def delete_alias(name: str, alias: str, services: Svc, actor: Editor) -> Response:
    services.registry.delete_alias(name, alias, actor=actor)
    return Response(status_code=204)


@router.get("/model-versions")
def search_model_versions(
    services: Svc,
    _actor: Viewer,
    name: str | None = None,
    run_id: str | None = None,
    flavor: str | None = None,
    tag: TagFilter = None,
    max_results: MaxResults = 100,
    offset: Offset = 0,
) -> list[ModelVersionInfo]:
    return services.registry.search_model_versions(
        name=name, run_id=run_id, flavor=flavor, tags=_tags(tag), max_results=max_results, offset=offset
    )


@router.get("/model-versions/resolve")
def resolve(
    services: Svc, _actor: Viewer, uri: Annotated[str, Query(min_length=1, max_length=512)]
) -> ModelVersionInfo:
    """The version ``uri`` points at now: ``models:/churn@champion``, ``churn/3``, ``churn/latest``."""
    return services.registry.resolve(uri)
