"""Feature definitions: entities, feature views and feature services, each with a canonical spec and hash.

    >>> from datetime import timedelta
    >>> from mlpilot.features import Entity, Feature, FeatureService, FeatureView, ParquetSource
    >>> customer = Entity("customer", join_keys=["customer_id"])
    >>> txn = FeatureView(
    ...     "txn_stats",
    ...     entities=[customer],
    ...     source=ParquetSource("data/txn/*.parquet"),
    ...     timestamp_field="event_time",
    ...     available_at_field="loaded_at",
    ...     ttl=timedelta(days=7),
    ...     features=[Feature("amount_7d", "float64"), Feature("count_7d", "int64")],
    ... )
    >>> churn = FeatureService("churn", [txn[["amount_7d"]], "profile:age"])
    >>> txn.spec_hash == FeatureView.from_spec(txn.to_spec()).spec_hash
    True

Constructors reject malformed values at once (a bad dtype, an empty name); checks that need the other
definitions or the source's schema run at plan time (:func:`mlpilot.features.validate.validate_definitions`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, overload

from mlpilot.errors import InvalidInputError
from mlpilot.features.dtypes import DTYPES
from mlpilot.features.sources import Source, source_from_spec

__all__ = [
    "Entity",
    "Feature",
    "FeatureRef",
    "FeatureService",
    "FeatureView",
    "canonical_json",
    "spec_hash",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def canonical_json(spec: Mapping[str, Any]) -> str:
    """The one JSON text of a spec: sorted keys, no whitespace, so equal specs hash equal."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``spec``."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()


def _check_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInputError(
            f"{field}: expected a name of letters, digits and underscores not starting with a digit, got {value!r}",
            field=field,
        )
    return value


def _check_column(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{field}: expected a column name, got {value!r}", field=field)
    return value


def _ttl_seconds(ttl: timedelta | None) -> int | float | None:
    if ttl is None:
        return None
    seconds = ttl.total_seconds()
    return int(seconds) if seconds == int(seconds) else seconds


@dataclass(frozen=True)
class Feature:
    """One feature column of a view: its name in the source and its declared dtype (see ``dtypes.DTYPES``)."""

    name: str
    dtype: str
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "feature.name")
        if self.dtype not in DTYPES:
            raise InvalidInputError(
                f"feature {self.name!r}: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}",
                field=f"features.{self.name}.dtype",
            )

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "description": self.description}


class Entity:
    """What features describe (a customer, a product), identified by one or more join-key columns.

    >>> Entity("customer", join_keys=["customer_id"]).join_keys
    ('customer_id',)
    """

    kind = "entity"

    def __init__(self, name: str, join_keys: Sequence[str], *, description: str = "") -> None:
        self.name = _check_name(name, "entity.name")
        if isinstance(join_keys, str):
            join_keys = [join_keys]
        keys = tuple(_check_column(k, f"entities.{name}.join_keys") for k in join_keys)
        if not keys:
            raise InvalidInputError(
                f"entity {name!r}: join_keys: expected at least one column",
                field=f"entities.{name}.join_keys",
            )
        if len(set(keys)) != len(keys):
            raise InvalidInputError(
                f"entity {name!r}: join_keys: duplicate column in {list(keys)}",
                field=f"entities.{name}.join_keys",
            )
        self.join_keys = keys
        self.description = description

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "join_keys": list(self.join_keys),
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        return cls(spec["name"], spec["join_keys"], description=spec.get("description", ""))

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.to_spec())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entity) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(self.spec_hash)

    def __repr__(self) -> str:
        return f"Entity({self.name!r}, join_keys={list(self.join_keys)!r})"


class FeatureView:
    """Features of one or more entities read from a source, each row valid from its event time.

    ``available_at_field`` (optional) is the column saying when a row became known; a row is used for an
    entity row at time ``t`` only if it happened *and* was available by ``t``. ``ttl`` bounds how old a value
    may be.
    """

    kind = "feature_view"

    def __init__(
        self,
        name: str,
        entities: Sequence[Entity | str],
        source: Source,
        timestamp_field: str,
        available_at_field: str | None = None,
        ttl: timedelta | None = None,
        features: Sequence[Feature] = (),
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.name = _check_name(name, "feature_view.name")
        field = f"feature_views.{name}"
        if isinstance(entities, Entity | str):
            entities = [entities]
        if not entities:
            raise InvalidInputError(
                f"feature view {name!r}: entities: expected at least one", field=f"{field}.entities"
            )
        for entity in entities:
            if not isinstance(entity, Entity | str):
                raise InvalidInputError(
                    f"feature view {name!r}: entities: expected Entity objects or names, got {entity!r}",
                    field=f"{field}.entities",
                )
        self.entities: tuple[Entity | str, ...] = tuple(entities)
        if not isinstance(source, Source):
            raise InvalidInputError(
                f"feature view {name!r}: source: expected ParquetSource, TableSource or SqlSource, "
                f"got {type(source).__name__}",
                field=f"{field}.source",
            )
        self.source = source
        self.timestamp_field = _check_column(timestamp_field, f"{field}.timestamp_field")
        self.available_at_field = (
            None if available_at_field is None else _check_column(available_at_field, f"{field}.available_at_field")
        )
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise InvalidInputError(
                f"feature view {name!r}: ttl: expected a positive timedelta, got {ttl!r}",
                field=f"{field}.ttl",
            )
        self.ttl = ttl
        self.features: tuple[Feature, ...] = tuple(features)
        if not self.features:
            raise InvalidInputError(
                f"feature view {name!r}: features: expected at least one", field=f"{field}.features"
            )
        for feature in self.features:
            if not isinstance(feature, Feature):
                raise InvalidInputError(
                    f"feature view {name!r}: features: expected Feature objects, got {feature!r}",
                    field=f"{field}.features",
                )
        self.description = description
        self.tags: dict[str, str] = dict(tags or {})

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(e if isinstance(e, str) else e.name for e in self.entities)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def join_keys(self) -> tuple[str, ...]:
        """Join-key columns of all entities, in order. Needs resolved entities (see ``Definitions``)."""
        keys: list[str] = []
        for entity in self.entities:
            if isinstance(entity, str):
                raise InvalidInputError(
                    f"feature view {self.name!r} names entity {entity!r} by name only: load it through "
                    "Definitions (or pass definitions=...) so the entity's join keys are known",
                    field=f"feature_views.{self.name}.entities",
                )
            keys.extend(k for k in entity.join_keys if k not in keys)
        return tuple(keys)

    @property
    def ttl_us(self) -> int | None:
        return None if self.ttl is None else self.ttl // timedelta(microseconds=1)

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise InvalidInputError(
            f"feature view {self.name!r} has no feature {name!r} (it has {', '.join(self.feature_names)})",
            field=f"feature_views.{self.name}.features",
        )

    @overload
    def __getitem__(self, names: str) -> FeatureRef: ...
    @overload
    def __getitem__(self, names: Sequence[str]) -> FeatureRef: ...
    def __getitem__(self, names: str | Sequence[str]) -> FeatureRef:
        """A selection of this view's features: ``view["a"]`` or ``view[["a", "b"]]``."""
        selected = (names,) if isinstance(names, str) else tuple(names)
        for name in selected:
            self.feature(name)
        return FeatureRef(self, selected)

    def with_entities(self, entities: Sequence[Entity]) -> FeatureView:
        """A copy of this view whose entities are the given objects (resolving names)."""
        return self._replace(entities=tuple(entities))

    def with_source(self, source: Source) -> FeatureView:
        return self._replace(source=source)

    def _replace(self, **changes: Any) -> FeatureView:
        clone = object.__new__(FeatureView)
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(changes)
        return clone

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "entities": list(self.entity_names),
            "source": self.source.to_spec(),
            "timestamp_field": self.timestamp_field,
            "available_at_field": self.available_at_field,
            "ttl_seconds": _ttl_seconds(self.ttl),
            "features": [f.to_spec() for f in self.features],
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, base_dir: Path | None = None) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        return cls(
            spec["name"],
            entities=list(spec["entities"]),
            source=source_from_spec(spec["source"], base_dir=base_dir),
            timestamp_field=spec["timestamp_field"],
            available_at_field=spec.get("available_at_field"),
            ttl=None if ttl is None else timedelta(seconds=ttl),
            features=[Feature(f["name"], f["dtype"], f.get("description", "")) for f in spec["features"]],
            description=spec.get("description", ""),
            tags=spec.get("tags") or {},
        )

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.to_spec())

    def __repr__(self) -> str:
        return f"FeatureView({self.name!r}, features={list(self.feature_names)!r})"


@dataclass(frozen=True)
class FeatureRef:
    """Some features of one view (``None`` = all of them), as used in services and feature lists."""

    view: FeatureView | str
    features: tuple[str, ...] | None = None

    @property
    def view_name(self) -> str:
        return self.view if isinstance(self.view, str) else self.view.name

    def to_spec(self) -> dict[str, Any]:
        return {"view": self.view_name, "features": None if self.features is None else list(self.features)}

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        """``"view"`` (all features) or ``"view:feature"``."""
        view, sep, feature = text.partition(":")
        _check_name(view, "features")
        if not sep:
            return cls(view)
        return cls(view, (_check_name(feature, "features"),))


class FeatureService:
    """A named set of features a model consumes: views, selections (``view[["a"]]``) or ``"view:feature"``.

    >>> FeatureService("churn", ["txn_stats:amount_7d", "profile"]).to_spec()["features"]
    [{'features': ['amount_7d'], 'view': 'txn_stats'}, {'features': None, 'view': 'profile'}]
    """

    kind = "feature_service"

    def __init__(
        self,
        name: str,
        features: Sequence[FeatureView | FeatureRef | str],
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.name = _check_name(name, "feature_service.name")
        refs: list[FeatureRef] = []
        for item in features:
            if isinstance(item, FeatureRef):
                refs.append(item)
            elif isinstance(item, FeatureView):
                refs.append(FeatureRef(item))
            elif isinstance(item, str):
                refs.append(FeatureRef.parse(item))
            else:
                raise InvalidInputError(
                    f"feature service {name!r}: features: expected views, view[...] selections or "
                    f"'view:feature' strings, got {item!r}",
                    field=f"feature_services.{name}.features",
                )
        if not refs:
            raise InvalidInputError(
                f"feature service {name!r}: features: expected at least one",
                field=f"feature_services.{name}.features",
            )
        self.refs: tuple[FeatureRef, ...] = _merge_refs(refs)
        self.description = description
        self.tags: dict[str, str] = dict(tags or {})

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "features": [
                {"view": r.view_name, "features": None if r.features is None else list(r.features)} for r in self.refs
            ],
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        refs = [
            FeatureRef(item["view"], None if item.get("features") is None else tuple(item["features"]))
            for item in spec["features"]
        ]
        return cls(spec["name"], refs, description=spec.get("description", ""), tags=spec.get("tags") or {})

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.to_spec())

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r})"


def _merge_refs(refs: Sequence[FeatureRef]) -> tuple[FeatureRef, ...]:
    """One ref per view, in first-seen order; "all features" absorbs selections."""
    merged: dict[str, FeatureRef] = {}
    for ref in refs:
        seen = merged.get(ref.view_name)
        if seen is None:
            merged[ref.view_name] = ref
        elif seen.features is None or ref.features is None:
            merged[ref.view_name] = FeatureRef(seen.view if not isinstance(seen.view, str) else ref.view, None)
        else:
            extra = tuple(f for f in ref.features if f not in seen.features)
            merged[ref.view_name] = FeatureRef(seen.view, seen.features + extra)
    return tuple(merged.values())
