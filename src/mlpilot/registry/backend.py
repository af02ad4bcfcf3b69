"""The registry contract of the SDK and CLI: local (``RegistryService``) or remote (``RestRegistry``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from mlpilot.registry.entities import (
    AliasInfo,
    ModelEvent,
    ModelVersionInfo,
    NewModelVersion,
    RegisteredModelInfo,
)

__all__ = ["RegistryBackend"]


@runtime_checkable
class RegistryBackend(Protocol):
    """Registered models, versions and aliases.

    - ``create_model_version`` registers version N+1 of a name (creating the model on first use) from metadata
      whose artifact is already in the artifact store, pointing ``new.aliases`` at it in the same transaction.
    - ``resolve`` turns ``models:/name@alias``, ``models:/name/3`` or ``models:/name/latest`` into a version.
    - ``set_alias``/``delete_alias`` move aliases, each with an audit event in the same transaction.
    - Reads raise :class:`~mlpilot.errors.NotFoundError` for unknown names, versions and aliases.
    - Every mutating call takes ``actor`` (the caller's name, ``local`` in process) for the audit trail.
    """

    def create_model_version(self, name: str, new: NewModelVersion, *, actor: str = "local") -> ModelVersionInfo: ...

    def create_model(
        self, name: str, *, description: str = "", tags: dict[str, str] | None = None, actor: str = "local"
    ) -> RegisteredModelInfo: ...

    def get_model(self, name: str) -> RegisteredModelInfo: ...

    def search_models(
        self,
        query: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[RegisteredModelInfo]: ...

    def get_model_version(self, name: str, version: int) -> ModelVersionInfo: ...

    def list_model_versions(self, name: str, *, max_results: int = 100, offset: int = 0) -> list[ModelVersionInfo]: ...

    def search_model_versions(
        self,
        *,
        name: str | None = None,
        run_id: str | None = None,
        flavor: str | None = None,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[ModelVersionInfo]: ...

    def resolve(self, uri: str) -> ModelVersionInfo: ...

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
        actor: str = "local",
    ) -> RegisteredModelInfo: ...

    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
        actor: str = "local",
    ) -> ModelVersionInfo: ...

    def delete_model_version(self, name: str, version: int, *, actor: str = "local") -> None: ...

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = "local") -> AliasInfo: ...

    def delete_alias(self, name: str, alias: str, *, actor: str = "local") -> None: ...

    def model_history(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ModelEvent]: ...
