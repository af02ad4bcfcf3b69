"""A :class:`~mlpilot.serving.source.ModelSource` over the model registry (local or remote) and an artifact
store.

The server calls it only when it starts and when it refreshes, never on a request: ``resolve`` asks the
registry which version a reference means now, ``load`` downloads that version's archive, verifies its SHA-256
and loads it with :func:`mlpilot.registry.load_model`.

>>> source = RegistrySource(client.registry, client.artifacts)  # doctest: +SKIP
>>> source.resolve("churn@champion").version  # doctest: +SKIP
3
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from mlpilot.errors import ConflictError
from mlpilot.serving.source import Predictor, ResolvedModel

if TYPE_CHECKING:
    from mlpilot.artifacts import ArtifactStore
    from mlpilot.registry import ModelVersionInfo, RegistryBackend

__all__ = ["RegistrySource"]


class RegistrySource:
    """Resolves references through ``registry`` and loads versions from ``artifacts``.

    ``allow_pickle=False`` refuses pickled Python models (the ``pyfunc`` flavor), whose loading runs code.
    """

    def __init__(self, registry: RegistryBackend, artifacts: ArtifactStore, *, allow_pickle: bool = True) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.allow_pickle = allow_pickle
        self._infos: dict[tuple[str, int], ModelVersionInfo] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> ResolvedModel:
        info = self.registry.resolve(ref)
        with self._lock:
            self._infos[(info.name, info.version)] = info
        return ResolvedModel(info.name, info.version, info.artifact_sha256, info.signature, info.flavor)

    def load(self, model: ResolvedModel) -> Predictor:
        from mlpilot.registry import load_model

        with self._lock:
            info = self._infos.get((model.name, model.version))
        if info is None:
            info = self.registry.get_model_version(model.name, model.version)
        if info.artifact_sha256 != model.digest:
            raise ConflictError(
                f"models:/{model.name}/{model.version}: its artifact changed since it was resolved "
                f"({model.digest[:12]} -> {info.artifact_sha256[:12]})"
            )
        predictor: Predictor = load_model(info, None, self.artifacts, allow_pickle=self.allow_pickle)
        return predictor
