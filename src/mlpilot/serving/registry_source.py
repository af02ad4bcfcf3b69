"""A :class:`~mlpilot.serving.source.ModelSource` over the model registry (local or remote) and an artifact
store.

The server calls it only when it starts and when it refreshes, never on a request: ``resolve`` asks the
registry which version a reference means now, ``load`` downloads that version's archive, verifies its SHA-256
and loads it with :func:`mlpilot.registry.load_model`.

>>> source = RegistrySource(client.registry, client.artifacts)  # doctest: +SKIP
>>> source.resolve("churn@champion").version  # doctest: +SKIP
3

With ``features=`` (the feature registry: ``client.features``, local or remote) it also provides the
registered feature definitions that endpoints declaring a feature service look their inputs up with
(:mod:`mlpilot.serving.features`); the server reads them at start-up, never on a request, and asks
:meth:`RegistrySource.feature_version` (one small read) on its refresh loop to pick up a new apply.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlpilot.errors import ConfigError, ConflictError
from mlpilot.serving.source import Predictor, ResolvedModel

if TYPE_CHECKING:
    from mlpilot.artifacts import ArtifactStore
    from mlpilot.features.registry import RegisteredSpecs
    from mlpilot.features.store_registry import RegistryVersion
    from mlpilot.registry import ModelVersionInfo, RegistryBackend

__all__ = ["FeatureRegistry", "RegistrySource"]


class FeatureRegistry(Protocol):
    """Where registered feature definitions are read from: ``FeatureStoreService`` and ``RestFeatureStore``."""

    def load_specs(self, version: int | None = None, *, project: str | None = None) -> RegisteredSpecs: ...

    def history(self, *, limit: int = 100, project: str | None = None) -> list[RegistryVersion]: ...


class RegistrySource:
    """Resolves references through ``registry`` and loads versions from ``artifacts``.

    ``allow_pickle=False`` refuses pickled Python models (the ``pyfunc`` flavor), whose loading runs code.
    ``features`` is the feature registry of endpoints that look their inputs up (see :meth:`feature_specs`).
    """

    def __init__(
        self,
        registry: RegistryBackend,
        artifacts: ArtifactStore,
        *,
        allow_pickle: bool = True,
        features: FeatureRegistry | None = None,
    ) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.allow_pickle = allow_pickle
        self.features = features
        self._infos: dict[tuple[str, int], ModelVersionInfo] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> ResolvedModel:
        info = self.registry.resolve(ref)
        with self._lock:
            self._infos[(info.name, info.version)] = info
        return ResolvedModel(info.name, info.version, info.artifact_sha256, info.signature, info.flavor)

    def _info(self, model: ResolvedModel) -> ModelVersionInfo:
        with self._lock:
            info = self._infos.get((model.name, model.version))
        if info is None:
            info = self.registry.get_model_version(model.name, model.version)
        if info.artifact_sha256 != model.digest:
            raise ConflictError(
                f"models:/{model.name}/{model.version}: its artifact changed since it was resolved "
                f"({model.digest[:12]} -> {info.artifact_sha256[:12]})"
            )
        return info

    def load(self, model: ResolvedModel) -> Predictor:
        from mlpilot.registry import load_model

        predictor: Predictor = load_model(self._info(model), None, self.artifacts, allow_pickle=self.allow_pickle)
        return predictor

    def export(self, model: ResolvedModel, folder: Path) -> dict[str, Any]:
        """Fetch ``model``'s archive (hash verified) into ``folder`` for another process to load with
        :func:`mlpilot.registry.load_archive`, which verifies it again: what that process needs, as JSON (the
        shadow lane's worker process; it never sees the store or its credentials)."""
        info = self._info(model)
        archive = folder / f"{info.artifact_sha256}.tar.gz"
        self.artifacts.get_file(info.artifact_sha256, archive)
        return {"info": info.model_dump(mode="json"), "archive": str(archive), "allow_pickle": self.allow_pickle}

    def feature_specs(self, project: str) -> tuple[Mapping[str, Any], ...]:
        """The feature definitions registered in ``project`` (a :data:`~mlpilot.serving.features.FeatureSpecs`)."""
        if self.features is None:
            raise ConfigError(
                "features: this model source has no feature registry (RegistrySource(..., features=client.features))",
                key="features",
            )
        return tuple(self.features.load_specs(project=project).specs)

    def feature_version(self, project: str) -> int:
        """The version of the feature definitions registered in ``project`` now (0: none), without the
        definitions themselves: what a server checks on its refresh loop."""
        if self.features is None:
            raise ConfigError("features: this model source has no feature registry", key="features")
        latest = self.features.history(limit=1, project=project)
        return latest[0].version if latest else 0
