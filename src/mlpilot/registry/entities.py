"""The values that cross the registry protocol: small frozen pydantic models that serialise to JSON."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlpilot.registry.signature import Signature

__all__ = [
    "AliasInfo",
    "ModelEvent",
    "ModelVersionInfo",
    "NewModelVersion",
    "RegisteredModelInfo",
    "check_tags",
]

_SHA256 = r"^[0-9a-f]{64}$"
# JSON has no NaN or infinity, and PostgreSQL refuses them in a JSON column.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` if every key is 1-256 characters and every value at most 5000; ValueError otherwise."""
    for key, value in tags.items():
        if not key or len(key) > 256:
            raise ValueError(f"tag keys are 1-256 characters, got {key!r}")
        if len(value) > 5000:
            raise ValueError(f"tag {key!r}: values are at most 5000 characters")
    return tags


class RegisteredModelInfo(BaseModel):
    """A registered model: a name grouping numbered versions, with aliases pointing at some of them."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    tags: dict[str, str]
    created_at: int
    updated_at: int
    latest_version: int | None
    #: alias -> version number
    aliases: dict[str, int]


class ModelVersionInfo(BaseModel):
    """One immutable version of a model: its artifact, flavor, signature, requirements and lineage."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    flavor: str
    artifact_sha256: str
    artifact_size: int
    signature: Signature | None
    requirements: list[str]
    sample_sha256: str | None
    run_id: str | None
    metrics: dict[str, float]
    tags: dict[str, str]
    description: str
    #: where the version came from beyond its run: the run's datasets, and anything the caller recorded
    lineage: dict[str, Any]
    created_at: int
    aliases: list[str]

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``: the reference that never moves."""
        return f"models:/{self.name}/{self.version}"


class AliasInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    alias: str
    version: int
    updated_at: int


class ModelEvent(BaseModel):
    """An audit event about a model (``model.registered``, ``model.alias_set``, ...)."""

    model_config = ConfigDict(frozen=True)

    id: int
    time: int
    kind: str
    subject: str
    actor: str
    payload: dict[str, Any]


class NewModelVersion(BaseModel):
    """What the SDK sends to register a version; the artifact and the sample are already stored by digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flavor: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    artifact_sha256: str = Field(pattern=_SHA256)
    artifact_size: int = Field(ge=0)
    signature: Signature | None = None
    requirements: list[str] = Field(default_factory=list, max_length=1000)
    sample_sha256: str | None = Field(default=None, pattern=_SHA256)
    run_id: str | None = Field(default=None, min_length=1, max_length=32)
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = Field(default="", max_length=100_000)
    lineage: dict[str, Any] = Field(default_factory=dict)
    #: aliases to point at the new version, set in the same transaction that creates it
    aliases: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags)
