"""Typed settings, read once from ``MLPILOT_*`` environment variables and an optional TOML config file.

Precedence: explicit keyword arguments, then environment variables, then the config file
(``$MLPILOT_CONFIG``, else ``$MLPILOT_HOME/config.toml``), then defaults. A bad value raises
:class:`~mlpilot.errors.ConfigError` naming the key::

    >>> from mlpilot.config import load_settings
    >>> settings = load_settings(home="/tmp/mlp")
    >>> settings.db_url
    'sqlite:////tmp/mlp/mlpilot.db'
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlpilot.errors import ConfigError

__all__ = ["Settings", "load_settings"]

_ENV_PREFIX = "MLPILOT_"


class Settings(BaseSettings):
    """Every knob mlpilot reads. Environment variable names are the field names upper-cased with ``MLPILOT_``."""

    model_config = SettingsConfigDict(env_prefix=_ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(default=Path(".mlpilot"), description="Folder for the embedded store and artifacts.")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL of the metadata store.")
    artifact_url: str | None = Field(default=None, description="Artifact store URL: a folder, file://, s3://.")
    server_url: str | None = Field(default=None, description="A remote `mlpilot server`; the SDK then uses it.")
    token: SecretStr | None = Field(default=None, description="API token sent to a remote server.")
    predictions_url: str | None = Field(
        default=None, description="Where the model server writes, and monitoring reads, the prediction log."
    )
    features_online_url: str | None = Field(
        default=None, description="Online feature store: sqlite:///… (default under home) or redis://…"
    )
    monitor_interval: float = Field(default=60.0, gt=0, description="Seconds between scheduled monitoring rounds.")
    host: str = Field(default="127.0.0.1", description="Address `mlpilot server` binds to.")
    port: int = Field(default=5080, ge=1, le=65535, description="Port `mlpilot server` listens on.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    flush_interval: float = Field(default=0.5, gt=0, description="Seconds between background metric flushes.")
    sqlite_busy_timeout: float = Field(default=60.0, gt=0, description="Seconds SQLite waits on a lock.")

    @field_validator("db_url", "artifact_url", "server_url", "predictions_url", "features_online_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("server_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def resolved_db_url(self) -> str:
        """The metadata store URL, defaulting to SQLite under ``home``."""
        return self.db_url or f"sqlite:///{self.home.resolve() / 'mlpilot.db'}"

    @property
    def resolved_artifact_url(self) -> str:
        """The artifact store URL, defaulting to a folder under ``home``."""
        return self.artifact_url or str(self.home.resolve() / "artifacts")


def _config_file_values(overrides: dict[str, Any]) -> dict[str, Any]:
    explicit = os.environ.get(f"{_ENV_PREFIX}CONFIG")
    home = overrides.get("home") or os.environ.get(f"{_ENV_PREFIX}HOME") or ".mlpilot"
    path = Path(explicit) if explicit else Path(home) / "config.toml"
    if not path.is_file():
        if explicit:
            raise ConfigError(f"MLPILOT_CONFIG: no such file {path}", key="MLPILOT_CONFIG")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}", key="MLPILOT_CONFIG") from exc
    section = data.get("mlpilot", data)
    # Environment variables win over the file: drop keys the environment sets.
    return {k: v for k, v in section.items() if f"{_ENV_PREFIX}{k.upper()}" not in os.environ}


def load_settings(**overrides: Any) -> Settings:
    """Read settings now; keyword arguments override everything else."""
    values = {**_config_file_values(overrides), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "?"
        env_key = f"{_ENV_PREFIX}{key.upper()}"
        raise ConfigError(f"{env_key}: {first['msg']} (got {first.get('input')!r})", key=env_key) from exc
