"""The feature store over REST: online lookups, and the registry of applied definitions.

``POST /v1/features/online`` looks features up by entity keys (the path feature-serving clients expect);
``/api/v1/features/registry`` reads and replaces the registered definition set (optimistically, by version)
and lists its applies. Thin by design: parse, call :class:`~mlpilot.features.service.FeatureStoreService`,
return. Lookups and reads need the ``viewer`` role, applies ``editor``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from mlpilot.api.deps import Services, get_services, require_role
from mlpilot.features.rest import ONLINE_PATH, REGISTRY_PATH
from mlpilot.features.service import MAX_ENTITY_ROWS
from mlpilot.features.store_registry import MAX_VERSION, RegistryVersion

router = APIRouter(tags=["features"])

Viewer = Annotated[str, Depends(require_role("viewer"))]
Editor = Annotated[str, Depends(require_role("editor"))]
Svc = Annotated[Services, Depends(get_services)]
Project = Annotated[str, Query(min_length=1, max_length=128)]

KeyValue = StrictInt | StrictStr


class OnlineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: entity keys: a list of rows ``[{"customer_id": 42}]`` or columns ``{"customer_id": [42, 7]}``
    entity_rows: (
        Annotated[list[dict[str, KeyValue]], Field(min_length=1, max_length=MAX_ENTITY_ROWS)]
        | dict[str, Annotated[list[KeyValue], Field(min_length=1, max_length=MAX_ENTITY_ROWS)]]
    )
    #: ``"view"`` or ``"view:feature"`` names; or name a ``feature_service`` instead
    features: Annotated[list[str], Field(min_length=1, max_length=1000)] | None = None
    feature_service: str | None = Field(default=None, min_length=1, max_length=256)
    full_names: bool = False
    project: str = Field(default="default", min_length=1, max_length=128)


class ApplyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    specs: Annotated[list[dict[str, Any]], Field(max_length=10_000)]
    #: the version the specs were planned against; null applies whatever is registered
    expected_version: int | None = Field(default=None, ge=0, le=MAX_VERSION)
    project: str = Field(default="default", min_length=1, max_length=128)


@router.post(ONLINE_PATH)
def online_features(body: OnlineBody, services: Svc, _actor: Viewer) -> dict[str, Any]:
    result = services.features.online_features(
        body.entity_rows,
        body.features,
        feature_service=body.feature_service,
        full_names=body.full_names,
        project=body.project,
    )
    return result.to_json()


@router.get(REGISTRY_PATH)
def registered_specs(
    services: Svc,
    _actor: Viewer,
    project: Project = "default",
    version: Annotated[int | None, Query(ge=0, le=MAX_VERSION)] = None,
) -> dict[str, Any]:
    registered = services.features.load_specs(version, project=project)
    return {"project": project, "version": registered.version, "specs": list(registered.specs)}


@router.put(REGISTRY_PATH)
def apply_specs(body: ApplyBody, services: Svc, actor: Editor) -> dict[str, Any]:
    version = services.features.apply(
        body.specs, expected_version=body.expected_version, actor=actor, project=body.project
    )
    return {"project": body.project, "version": version}


@router.get(f"{REGISTRY_PATH}/history")
def registry_history(
    services: Svc,
    _actor: Viewer,
    project: Project = "default",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RegistryVersion]:
    return services.features.history(limit=limit, project=project)
