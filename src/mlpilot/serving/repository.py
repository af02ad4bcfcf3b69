"""The served models: which versions are loaded, which one each name answers with, and hot swaps.

A reference (``churn@champion``) is bound to a served name (``churn``) and the version it resolved to. When a
reference moves (an alias was set elsewhere) or the config changes, the new version is loaded, verified and
warmed in a worker thread while the old one keeps serving; then the name is switched to it in one step on the
event loop. Requests already holding the old version finish on it. A version that fails to load is refused
(counted in ``mlpilot_serve_model_load_failures_total``) and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from mlpilot.errors import MlpilotError, NotFoundError
from mlpilot.serving.batching import Batcher
from mlpilot.serving.config import ModelConfig, ServeConfig
from mlpilot.serving.errors import ModelLoadError
from mlpilot.serving.metrics import ServingMetrics
from mlpilot.serving.model import ServedModel, limit_threads
from mlpilot.serving.shadow import ShadowLane
from mlpilot.serving.source import ModelSource, ResolvedModel

__all__ = ["Deployed", "ModelRepository", "SwapEvent"]

logger = logging.getLogger("mlpilot.serving")


@dataclass(eq=False)
class Deployed:
    """A loaded version with its batcher."""

    model: ServedModel
    batcher: Batcher


@dataclass
class _Name:
    versions: dict[int, Deployed] = field(default_factory=dict)
    default: int = 0


@dataclass(frozen=True)
class _Binding:
    config: ModelConfig
    name: str
    version: int
    digest: str


@dataclass(frozen=True)
class SwapEvent:
    """What a refresh changed: ``ref`` now serves ``new`` under ``name`` (``old`` is None on first load), or
    ``error`` says why the new version was refused."""

    ref: str
    name: str
    old: int | None
    new: int | None
    error: str | None = None
    #: the type of the underlying error (``IntegrityError`` for a corrupt artifact, ``NotFoundError``, ...)
    cause: str | None = None


class ModelRepository:
    """Loads, serves and swaps model versions for one server.

    >>> config = ServeConfig.from_refs(["churn@champion"])
    >>> repo = ModelRepository(source, config, executor, 1, metrics)  # doctest: +SKIP
    >>> repo.load_all(); repo.lookup("churn").model.version  # doctest: +SKIP
    3
    """

    def __init__(
        self,
        source: ModelSource,
        config: ServeConfig,
        executor: Executor,
        slots: int,
        metrics: ServingMetrics,
    ) -> None:
        self.source = source
        self.config = config
        self._executor = executor
        self._slots = slots
        self._metrics = metrics
        self._bindings: list[_Binding] = []
        self._names: dict[str, _Name] = {}
        self._lock = asyncio.Lock()
        self._retiring: set[Deployed] = set()
        self._inline = False
        #: the low-priority lane every batcher hands mirrored requests to
        self.shadow = ShadowLane(
            metrics,
            config.shadow.settings(),
            model_threads=config.model_threads,
            exporter=getattr(source, "export", None),
        )

    def allow_inline(self) -> None:
        """Let batchers run a lone cheap request on the event loop thread (its thread pools are limited now)."""
        self._inline = True
        for entry in self._names.values():
            for deployed in entry.versions.values():
                deployed.batcher.inline = True

    # -- the request path: dictionary lookups only -----------------------------------------------------------
    def lookup(self, name: str, version: int | None = None) -> Deployed:
        entry = self._names.get(name)
        if entry is None:
            raise NotFoundError(f"model {name!r} is not served here (served: {sorted(self._names)})", field="model")
        deployed = entry.versions.get(entry.default if version is None else version)
        if deployed is None:
            raise NotFoundError(
                f"model {name!r} version {version} is not served here (served versions: {sorted(entry.versions)})",
                field="version",
            )
        return deployed

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def versions(self, name: str) -> list[int]:
        entry = self._names.get(name)
        return sorted(entry.versions) if entry else []

    @property
    def ready(self) -> bool:
        return bool(self._names) and len(self._bindings) == len(self.config.models)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, entry in self._names.items():
            refs = [b.config.ref for b in self._bindings if b.name == name]
            out.append(
                {
                    "name": name,
                    "default_version": entry.default,
                    "versions": sorted(entry.versions),
                    "refs": refs,
                }
            )
        return out

    # -- loading (worker threads) ----------------------------------------------------------------------------
    def _load(self, config: ModelConfig, resolved: ResolvedModel) -> Deployed:
        name = config.name or resolved.name
        started = time.perf_counter()
        try:
            predictor = self.source.load(resolved)
            with limit_threads(self.config.model_threads):
                served = ServedModel.prepare(name, resolved, predictor, load_seconds=time.perf_counter() - started)
        except Exception as exc:
            self._metrics.load_failures.labels(name).inc()
            detail = exc.message if isinstance(exc, MlpilotError) else f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(
                f"model {name!r} version {resolved.version} ({config.ref}) refused: {detail}",
                model=name,
                version=resolved.version,
            ) from exc
        self._metrics.load_seconds.labels(name).observe(time.perf_counter() - started)
        batcher = Batcher(
            served,
            self._executor,
            self._slots,
            config.batch_settings(self.config.batching),
            self._metrics,
            self.shadow,
        )
        batcher.inline = self._inline
        return Deployed(served, batcher)

    def _existing(self, name: str, resolved: ResolvedModel) -> Deployed | None:
        entry = self._names.get(name)
        found = entry.versions.get(resolved.version) if entry else None
        return found if found is not None and found.model.digest == resolved.digest else None

    def _resolve_and_load(self, config: ModelConfig) -> tuple[ResolvedModel, Deployed | None]:
        resolved = self.source.resolve(config.ref)
        name = config.name or resolved.name
        if self._existing(name, resolved) is not None:
            return resolved, None
        return resolved, self._load(config, resolved)

    def load_all(self) -> None:
        """Load every configured model now (blocking, before the server starts); raises on a failure."""
        bindings: list[_Binding] = []
        for config in self.config.models:
            resolved = self.source.resolve(config.ref)
            name = config.name or resolved.name
            deployed = self._existing(name, resolved) or self._load(config, resolved)
            self._install(name, deployed)
            bindings.append(_Binding(config, name, resolved.version, resolved.digest))
            logger.info("serving %s as %s version %s", config.ref, name, resolved.version)
        self._bindings = bindings
        self._reconcile()

    # -- swapping (event loop) -------------------------------------------------------------------------------
    def _install(self, name: str, deployed: Deployed) -> None:
        entry = self._names.setdefault(name, _Name())
        entry.versions[deployed.model.version] = deployed
        if not entry.default:
            entry.default = deployed.model.version
        self._metrics.model_info.labels(name, str(deployed.model.version), deployed.model.digest).set(1)

    def _reconcile(self) -> None:
        """Point each name at its first binding's version and retire versions no binding names any more."""
        wanted: dict[str, list[int]] = {}
        for b in self._bindings:
            wanted.setdefault(b.name, []).append(b.version)
        for name in list(self._names):
            entry = self._names[name]
            keep = wanted.get(name, [])
            if keep:
                entry.default = keep[0]
            for version in [v for v in entry.versions if v not in keep]:
                self._retire(name, entry.versions.pop(version))
            if not entry.versions:
                del self._names[name]

    def _retire(self, name: str, deployed: Deployed) -> None:
        model = deployed.model
        with contextlib.suppress(KeyError):
            self._metrics.model_info.remove(name, str(model.version), model.digest)
        logger.info("retired %s version %s", name, model.version)
        self.shadow.forget(model)
        self._retiring.add(deployed)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._retiring.discard(deployed)
            return
        # In-flight requests hold the old version and finish on it; drop our reference once they have.
        task = loop.create_task(deployed.batcher.drain())
        task.add_done_callback(lambda _: self._retiring.discard(deployed))

    async def refresh(self) -> list[SwapEvent]:
        """Re-resolve every reference and swap in versions that changed. Never raises for a bad version."""
        async with self._lock:
            events: list[SwapEvent] = []
            bindings = list(self._bindings)
            for i, binding in enumerate(bindings):
                try:
                    resolved, deployed = await asyncio.to_thread(self._resolve_and_load, binding.config)
                except MlpilotError as exc:
                    logger.error("%s: keeping version %s: %s", binding.config.ref, binding.version, exc.message)
                    events.append(
                        SwapEvent(binding.config.ref, binding.name, binding.version, None, exc.message, _cause(exc))
                    )
                    continue
                if resolved.version == binding.version and resolved.digest == binding.digest:
                    continue
                name = binding.config.name or resolved.name
                if deployed is not None:
                    self._install(name, deployed)
                bindings[i] = _Binding(binding.config, name, resolved.version, resolved.digest)
                self._bindings = bindings
                self._metrics.swaps.labels(name).inc()
                self._reconcile()
                logger.info(
                    "%s: swapped %s version %s -> %s",
                    binding.config.ref,
                    name,
                    binding.version,
                    resolved.version,
                )
                events.append(SwapEvent(binding.config.ref, name, binding.version, resolved.version))
            return events

    async def apply(self, config: ServeConfig) -> list[SwapEvent]:
        """Serve ``config``'s models instead: new references are loaded first; removed ones retired after.

        If any new model fails to load, nothing changes and the errors are returned.
        """
        async with self._lock:
            current = {b.config: b for b in self._bindings}
            bindings: list[_Binding] = []
            pending: list[tuple[str, Deployed]] = []
            events: list[SwapEvent] = []
            for mc in config.models:
                known = current.get(mc)
                try:
                    resolved, deployed = await asyncio.to_thread(self._resolve_and_load, mc)
                except MlpilotError as exc:
                    old = known.version if known else None
                    events.append(SwapEvent(mc.ref, mc.name or "", old, None, exc.message, _cause(exc)))
                    continue
                name = mc.name or resolved.name
                if deployed is not None:
                    pending.append((name, deployed))
                bindings.append(_Binding(mc, name, resolved.version, resolved.digest))
                if known is None or known.version != resolved.version:
                    events.append(SwapEvent(mc.ref, name, known.version if known else None, resolved.version))
            if any(e.error for e in events):
                return events
            self.config = config
            self.shadow.settings = config.shadow.settings()
            for name, deployed in pending:
                self._install(name, deployed)
            self._bindings = bindings
            self._reconcile()
            return events

    async def drain(self) -> None:
        """Wait for every queued request to be answered (at shutdown)."""
        batchers = [d.batcher for e in self._names.values() for d in e.versions.values()]
        batchers += [d.batcher for d in self._retiring]
        await asyncio.gather(*(b.drain() for b in batchers))
        await self.shadow.drain()

    def close(self) -> None:
        """Stop the shadow lane's worker thread (after :meth:`drain`, at shutdown)."""
        self.shadow.close()


def _cause(exc: BaseException) -> str:
    return type(exc.__cause__ or exc).__name__
