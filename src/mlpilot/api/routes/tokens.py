"""Token management (admin only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from mlpilot.api.deps import Services, get_services, require_role

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class CreateToken(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["viewer", "editor", "admin"] = "viewer"


@router.post("", status_code=201)
def create_token(
    body: CreateToken, services: Services = Depends(get_services), actor: str = Depends(require_role("admin"))
) -> dict[str, Any]:
    secret, info = services.tokens.create(body.name, role=body.role, actor=actor)
    return {"token": secret, **asdict(info)}


@router.get("")
def list_tokens(
    services: Services = Depends(get_services), _actor: str = Depends(require_role("admin"))
) -> list[dict[str, Any]]:
    return [asdict(t) for t in services.tokens.list()]


@router.delete("/{name}")
def revoke_token(
    name: str, services: Services = Depends(get_services), actor: str = Depends(require_role("admin"))
) -> dict[str, Any]:
    return asdict(services.tokens.revoke(name, actor=actor))
