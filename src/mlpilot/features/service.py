"""The feature store as a service over the metadata store and one online store: what the control plane serves.

    >>> from mlpilot.store import Store
    >>> features = FeatureStoreService(Store("sqlite:///:memory:"), online="sqlite:///:memory:")
    >>> features.load_specs().version
    0
    >>> features.get_online_features([{"customer_id": 42}], ["txn_stats:amount_7d"])  # doctest: +SKIP
    {'customer_id': [42], 'amount_7d': [12.5]}

Lookups resolve feature names against the *registered* definitions (what ``mlpilot features apply`` stored),
cached per registry version: at most every ``refresh_interval`` seconds the service checks the current version
number and re-reads the specs only when it moved. It reuses one :class:`~mlpilot.features.OnlineReader` per
distinct request shape, so a lookup is one online-store round trip per view. :class:`FeatureStoreBackend` is
the contract this service and :class:`~mlpilot.features.rest.RestFeatureStore` (the same calls over HTTP) share.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from mlpilot.errors import InvalidInputError, NotFoundError
from mlpilot.features.catalog import Definitions
from mlpilot.features.lookup import EntityRows, OnlineReader
from mlpilot.features.online import OnlineStore, open_online_store
from mlpilot.features.registry import RegisteredSpecs
from mlpilot.features.store_registry import RegistryVersion, StoreFeatureRegistry, check_project
from mlpilot.features.wire import columns_to_json
from mlpilot.store import Store

__all__ = ["MAX_ENTITY_ROWS", "FeatureStoreBackend", "FeatureStoreService", "OnlineResult"]

#: Entity rows one online lookup may ask for.
MAX_ENTITY_ROWS = 10_000
_READERS = 256


@runtime_checkable
class FeatureStoreBackend(Protocol):
    """What the SDK and CLI need from a feature store, local or remote.

    Contract: ``load_specs``/``apply`` are a :class:`~mlpilot.features.FeatureRegistryBackend` (optimistic,
    whole-set applies; ``load_specs`` also reads an older ``version`` or another ``project``); ``history``
    lists applies newest first; ``get_online_features`` returns the join keys as given then one list per
    feature, resolving names against the registered definitions.
    """

    def load_specs(self, version: int | None = None, *, project: str | None = None) -> RegisteredSpecs: ...

    def apply(
        self, specs: Sequence[Mapping[str, Any]], *, expected_version: int | None = None, actor: str = "local"
    ) -> int: ...

    def history(self, *, limit: int = 100, project: str | None = None) -> list[RegistryVersion]: ...

    def get_online_features(
        self,
        entity_rows: EntityRows,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        full_names: bool = False,
    ) -> dict[str, list[Any]]: ...


@dataclass(frozen=True)
class OnlineResult:
    """One lookup: the registry version it resolved against, the columns, and each feature column's dtype."""

    version: int
    columns: dict[str, list[Any]]
    dtypes: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /v1/features/online`` (see :mod:`mlpilot.features.wire`)."""
        return {"version": self.version, "columns": columns_to_json(self.columns, self.dtypes), "dtypes": self.dtypes}


@dataclass
class _Loaded:
    version: int
    definitions: Definitions
    checked_at: float


class FeatureStoreService:
    """Registered definitions (per project) and online lookups against them.

    ``online`` is an :class:`~mlpilot.features.OnlineStore` or its URL, opened on first use (default: the
    SQLite store under ``MLPILOT_HOME``).
    """

    def __init__(
        self,
        store: Store,
        *,
        online: OnlineStore | str | None = None,
        project: str = "default",
        refresh_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.project = check_project(project)
        self.refresh_interval = refresh_interval
        self._online: OnlineStore | None = online if online is not None and not isinstance(online, str) else None
        self._online_url = online if isinstance(online, str) else None
        self._owns_online = self._online is None
        self._lock = threading.Lock()
        self._loaded: dict[str, _Loaded] = {}
        self._readers: OrderedDict[tuple[Any, ...], OnlineReader] = OrderedDict()

    # -- registry ---------------------------------------------------------------------------------------------
    def registry(self, project: str | None = None) -> StoreFeatureRegistry:
        return StoreFeatureRegistry(self.store, project=project or self.project)

    def load_specs(self, version: int | None = None, *, project: str | None = None) -> RegisteredSpecs:
        return self.registry(project).load_specs(version)

    def apply(
        self,
        specs: Sequence[Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        actor: str = "local",
        project: str | None = None,
    ) -> int:
        version = self.registry(project).apply(specs, expected_version=expected_version, actor=actor)
        with self._lock:
            self._loaded.pop(project or self.project, None)
        return version

    def history(self, *, limit: int = 100, project: str | None = None) -> list[RegistryVersion]:
        return self.registry(project).history(limit=limit)

    # -- online -----------------------------------------------------------------------------------------------
    @property
    def online(self) -> OnlineStore:
        with self._lock:
            if self._online is None:
                self._online = open_online_store(self._online_url)
            return self._online

    def online_features(
        self,
        entity_rows: EntityRows,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        full_names: bool = False,
        project: str | None = None,
        now: datetime | None = None,
    ) -> OnlineResult:
        """Look ``entity_rows`` up; name the features (``"view"``, ``"view:feature"``) or a ``feature_service``."""
        if (features is None) == (feature_service is None):
            raise InvalidInputError("features: give either features or feature_service", field="features")
        if features is not None and (isinstance(features, str) or not features):
            raise InvalidInputError("features: expected a non-empty list of 'view' or 'view:feature'", field="features")
        rows = len(entity_rows[next(iter(entity_rows))]) if isinstance(entity_rows, Mapping) and entity_rows else None
        if rows is None and isinstance(entity_rows, Sequence):
            rows = len(entity_rows)
        if rows is not None and rows > MAX_ENTITY_ROWS:
            raise InvalidInputError(
                f"entity_rows: at most {MAX_ENTITY_ROWS} rows per lookup, got {rows}", field="entity_rows"
            )
        loaded = self._definitions(project or self.project)
        shape = ("s", feature_service) if feature_service is not None else ("f", *(features or ()))
        reader = self._reader((project or self.project, loaded.version, full_names, *shape), loaded, full_names)
        return OnlineResult(loaded.version, reader.read(entity_rows, now=now), reader.dtypes)

    def get_online_features(
        self,
        entity_rows: EntityRows,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        full_names: bool = False,
        project: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, list[Any]]:
        """The columns of :meth:`online_features`."""
        return self.online_features(
            entity_rows, features, feature_service=feature_service, full_names=full_names, project=project, now=now
        ).columns

    def _definitions(self, project: str) -> _Loaded:
        with self._lock:
            loaded = self._loaded.get(project)
        if loaded is not None and time.monotonic() - loaded.checked_at < self.refresh_interval:
            return loaded
        registry = self.registry(project)
        if loaded is not None and registry.current_version() == loaded.version:
            # Unchanged: keep the parsed definitions (and the readers keyed on this version) without reading specs.
            loaded = _Loaded(loaded.version, loaded.definitions, time.monotonic())
            with self._lock:
                self._loaded[project] = loaded
            return loaded
        registered = registry.load_specs()
        if registered.version == 0:
            raise NotFoundError(
                f"no feature definitions are applied in project {project!r}: run 'mlpilot features apply'",
                field="project",
            )
        if loaded is None or loaded.version != registered.version:
            loaded = _Loaded(registered.version, Definitions.from_specs(registered.specs), time.monotonic())
        else:
            loaded = _Loaded(loaded.version, loaded.definitions, time.monotonic())
        with self._lock:
            self._loaded[project] = loaded
        return loaded

    def _reader(self, key: tuple[Any, ...], loaded: _Loaded, full_names: bool) -> OnlineReader:
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        kind, names = key[3], key[4:]
        try:
            wanted: Any = loaded.definitions.service(names[0]) if kind == "s" else list(names)
            reader = OnlineReader(wanted, store=self.online, definitions=loaded.definitions, full_names=full_names)
        except InvalidInputError as exc:
            field = "feature_service" if kind == "s" else "features"
            raise InvalidInputError(exc.message, field=field) from exc
        with self._lock:
            self._readers[key] = reader
            while len(self._readers) > _READERS:
                self._readers.popitem(last=False)
        return reader

    def close(self) -> None:
        with self._lock:
            if self._online is not None and self._owns_online:
                self._online.close()
                self._online = None
