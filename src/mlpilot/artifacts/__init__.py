"""Content-addressed artifact storage (SHA-256, verified on every read) over fsspec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpilot.artifacts.base import ArtifactStore, sha256_file
from mlpilot.artifacts.fsstore import FsspecArtifactStore
from mlpilot.artifacts.paths import safe_name

if TYPE_CHECKING:
    from mlpilot.config import Settings

__all__ = [
    "ArtifactStore",
    "FsspecArtifactStore",
    "artifact_store_from_settings",
    "open_artifact_store",
    "safe_name",
    "sha256_file",
]


def artifact_store_from_settings(settings: Settings, url: str | None = None) -> ArtifactStore:
    """The artifact store at ``url`` (default: the settings' artifact URL) with the settings' storage options,
    such as ``MLPILOT_S3_ENDPOINT_URL`` for ``s3://`` URLs."""
    target = url or settings.resolved_artifact_url
    return open_artifact_store(target, **settings.storage_options(target))


def open_artifact_store(url: str, **storage_options: Any) -> ArtifactStore:
    """The one composition point for artifact backends: a folder, ``file://…`` or ``s3://bucket/prefix``."""
    from mlpilot.errors import ConfigError

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in ("file", "s3", "memory"):
        raise ConfigError(
            f"MLPILOT_ARTIFACT_URL: unsupported scheme {scheme!r}; use a folder, file:// or s3://",
            key="MLPILOT_ARTIFACT_URL",
        )
    return FsspecArtifactStore(url, **storage_options)
