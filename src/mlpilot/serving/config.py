"""The serving config: which model versions to serve, with what batching, limits and prediction log.

It comes from the command line (``mlpilot serve churn@champion fraud/3``), from a TOML file, or as JSON from
the control plane; all three become a :class:`ServeConfig`. A TOML file looks like::

    [serve]
    port = 8080
    refresh_interval = 10

    [serve.batching]          # defaults for every model
    max_batch_size = 64
    max_wait_ms = 2

    [[serve.models]]
    ref = "churn@champion"

    [[serve.models]]
    ref = "fraud/3"
    name = "fraud"
    max_batch_size = 256

    [[serve.models]]
    ref = "churn@champion"
    features = { service = "churn" }     # callers send customer ids; the rest is looked up online

>>> ServeConfig.from_refs(["churn@champion"]).models[0].ref
'churn@champion'
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpilot.errors import ConfigError, InvalidInputError
from mlpilot.serving.batching import BatchSettings
from mlpilot.serving.shadow import ShadowSettings

__all__ = [
    "BatchingConfig",
    "FeaturesConfig",
    "LogConfig",
    "ModelConfig",
    "ServeConfig",
    "ShadowConfig",
    "load_serve_config",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class BatchingConfig(BaseModel):
    """Batching and backpressure knobs; see :class:`~mlpilot.serving.batching.BatchSettings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: int = Field(default=64, ge=1, le=1_000_000)
    max_wait_ms: float = Field(default=2.0, ge=0, le=10_000)
    max_queue_size: int = Field(default=2048, ge=1)
    queue_timeout_ms: float = Field(default=1000.0, gt=0)
    max_concurrency: int = Field(default=0, ge=0)

    def settings(self) -> BatchSettings:
        return BatchSettings(**self.model_dump())


class FeaturesConfig(BaseModel):
    """The feature service a model endpoint looks its inputs up from (see :mod:`mlpilot.serving.features`).

    Callers then send entity keys and request-time fields; the server reads the service's features from the
    online store at ``online_url`` (default: the ``features_online_url`` setting, else the embedded SQLite
    store under ``MLPILOT_HOME``), using the definitions registered in ``project``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str = Field(min_length=1, max_length=200)
    project: str = Field(default="default", min_length=1, max_length=200)
    online_url: str | None = Field(default=None, min_length=1)


class ModelConfig(BaseModel):
    """One model to serve: a registry reference, the name to serve it under, optional batching overrides and
    an optional feature service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str = Field(min_length=1, max_length=300)
    #: served name; by default the registered model's name
    name: str | None = Field(default=None, pattern=_NAME)
    max_batch_size: int | None = Field(default=None, ge=1)
    max_wait_ms: float | None = Field(default=None, ge=0, le=10_000)
    max_queue_size: int | None = Field(default=None, ge=1)
    queue_timeout_ms: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=0)
    #: look inputs up from this feature service (callers send entity keys)
    features: FeaturesConfig | None = None

    def batch_settings(self, defaults: BatchingConfig) -> BatchSettings:
        overrides = {k: v for k, v in self.model_dump(exclude={"ref", "name", "features"}).items() if v is not None}
        return BatchSettings(**{**defaults.model_dump(), **overrides})


class LogConfig(BaseModel):
    """The prediction log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    #: where segments go; by default ``$MLPILOT_HOME/predictions``
    url: str | None = None
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    flush_interval: float = Field(default=5.0, gt=0)


class ShadowConfig(BaseModel):
    """The low-priority lane of mirrored requests; see :class:`~mlpilot.serving.shadow.ShadowSettings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_queue: int = Field(default=256, ge=1, le=1_000_000)
    max_batch_rows: int = Field(default=64, ge=1, le=1_000_000)
    max_wait_ms: float = Field(default=200.0, ge=0, le=600_000)
    deadline_ms: float = Field(default=1000.0, gt=0, le=600_000)
    live_grace_ms: float = Field(default=5.0, ge=0, le=60_000)
    nice: int = Field(default=19, ge=0, le=19)
    #: ``process``: candidates the model source can export run in a worker process; ``thread``: in the server
    isolation: Literal["process", "thread"] = "process"

    @model_validator(mode="after")
    def _wait_within_deadline(self) -> ShadowConfig:
        if self.max_wait_ms >= self.deadline_ms:
            raise ValueError(f"max_wait_ms ({self.max_wait_ms:g}) must be below deadline_ms ({self.deadline_ms:g})")
        return self

    def settings(self) -> ShadowSettings:
        return ShadowSettings(**self.model_dump())


class ServeConfig(BaseModel):
    """Everything ``mlpilot serve`` needs besides a model source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: list[ModelConfig] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    batching: BatchingConfig = BatchingConfig()
    log: LogConfig = LogConfig()
    shadow: ShadowConfig = ShadowConfig()
    #: worker threads running models; 0 means one per core beyond the one serving HTTP (at least one)
    inference_threads: int = Field(default=0, ge=0, le=256)
    #: threads each model call may use inside BLAS/OpenMP; 1 keeps worker threads from fighting over cores
    model_threads: int = Field(default=1, ge=1, le=256)
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    #: requests handled at once across all models; beyond it, 503
    max_in_flight: int = Field(default=4096, ge=1)
    #: seconds between re-resolving references (alias moves); 0 never
    refresh_interval: float = Field(default=10.0, ge=0)
    access_log: bool = True

    @classmethod
    def from_refs(cls, refs: list[str], **options: Any) -> ServeConfig:
        return cls(models=[ModelConfig(ref=r) for r in refs], **options)

    def with_features(self, features: Mapping[str, FeaturesConfig | str]) -> ServeConfig:
        """This config with feature services attached to some of its models.

        Keys name a model by its reference (``churn@champion``), its served name, or its registered name
        (``churn``); values are a :class:`FeaturesConfig` or just a feature service's name.

        >>> ServeConfig.from_refs(["churn@champion"]).with_features({"churn": "churn"}).models[0].features.service
        'churn'
        """
        used: set[str] = set()
        models: list[ModelConfig] = []
        for mc in self.models:
            registered = re.split(r"[@/]", mc.ref.removeprefix("models:/"), maxsplit=1)[0]
            key = next((k for k in (mc.ref, mc.name, registered) if k is not None and k in features), None)
            if key is None:
                models.append(mc)
                continue
            used.add(key)
            value = features[key]
            chosen = FeaturesConfig(service=value) if isinstance(value, str) else value
            models.append(mc.model_copy(update={"features": chosen}))
        unknown = sorted(set(features) - used)
        if unknown:
            raise InvalidInputError(
                f"features: {unknown[0]!r} names none of the served models ({', '.join(m.ref for m in self.models)})",
                field="features",
            )
        return self.model_copy(update={"models": models})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "serving config") -> ServeConfig:
        """Validate a dict (a parsed file, or JSON from the control plane); errors name the key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "?"
            raise ConfigError(f"{source}: {key}: {first['msg']} (got {first.get('input')!r})", key=key) from exc


def load_serve_config(path: str | Path, **overrides: Any) -> ServeConfig:
    """Read a TOML serving config (the ``[serve]`` table, or the top level); keyword arguments override it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read serving config: {exc}", key=str(path)) from exc
    section = data.get("serve", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [serve] must be a table", key="serve")
    merged = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    return ServeConfig.from_dict(merged, source=str(path))
