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
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlpilot.errors import ConfigError

__all__ = ["Settings", "load_settings", "memory_size_bytes"]

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
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, …) for s3:// URLs; credentials and region come "
        "from the usual AWS environment variables and config files.",
    )
    features_memory_limit: str = Field(
        default="2GB",
        description="Memory DuckDB may use for training sets and materialization before spilling to disk: "
        "a size (512MB, 2GB, 1.5GiB) or a share of physical memory (25%).",
    )
    features_temp_directory: Path | None = Field(
        default=None, description="Where DuckDB spills when over the memory limit (default under home)."
    )

    @field_validator(
        "db_url", "artifact_url", "server_url", "predictions_url", "features_online_url", "s3_endpoint_url"
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("server_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("features_memory_limit")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        match = _MEMORY.match(value)
        if match is None or (match.group(2).upper() not in _SIZE_UNITS and match.group(2) != "%"):
            raise ValueError("expected a size such as 512MB, 2GB or 1.5GiB, or a share of memory such as 25%")
        if float(match.group(1)) <= 0 or (match.group(2) == "%" and float(match.group(1)) > 100):
            raise ValueError("expected a positive size, or a share of memory up to 100%")
        return value.strip()

    @property
    def resolved_db_url(self) -> str:
        """The metadata store URL, defaulting to SQLite under ``home``."""
        return self.db_url or f"sqlite:///{self.home.resolve() / 'mlpilot.db'}"

    @property
    def resolved_artifact_url(self) -> str:
        """The artifact store URL, defaulting to a folder under ``home``."""
        return self.artifact_url or str(self.home.resolve() / "artifacts")

    @property
    def resolved_features_temp_directory(self) -> Path:
        """Where DuckDB spills, defaulting to ``<home>/tmp/duckdb``."""
        return self.features_temp_directory or self.home.resolve() / "tmp" / "duckdb"

    @property
    def features_memory_limit_bytes(self) -> int:
        """:attr:`features_memory_limit` in bytes (a share is taken of this machine's physical memory)."""
        return memory_size_bytes(self.features_memory_limit)

    def storage_options(self, url: str) -> dict[str, Any]:
        """fsspec options for ``url``: the S3 endpoint for ``s3://`` URLs, nothing otherwise.

        Credentials are deliberately not settings: s3fs (botocore) reads them from ``AWS_*`` variables,
        ``~/.aws`` files or an instance role, so they never pass through mlpilot's own config or logs.
        """
        if url.startswith(("s3://", "s3a://")) and self.s3_endpoint_url:
            return {"client_kwargs": {"endpoint_url": self.s3_endpoint_url}}
        return {}


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*|%)\s*$")


def memory_size_bytes(value: str) -> int:
    """Bytes of a size such as ``"2GB"``/``"1.5GiB"``, or of a share of physical memory such as ``"25%"``.

    >>> memory_size_bytes("1.5KiB")
    1536
    """
    match = _MEMORY.match(value)
    if match is None or (match.group(2).upper() not in _SIZE_UNITS and match.group(2) != "%"):
        raise ValueError(f"not a memory size: {value!r}")
    if match.group(2) == "%":
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(physical * float(match.group(1)) / 100)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


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
