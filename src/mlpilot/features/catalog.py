"""A set of definitions (entities, views, services) that refer to each other by name, and the resolution of a
``features=`` argument into concrete views and feature names.

    >>> from mlpilot.features import Definitions, Entity, Feature, FeatureView, TableSource
    >>> import pyarrow as pa
    >>> rows = pa.table({"customer_id": [1], "ts": pa.array([0], pa.timestamp("us")), "age": [30]})
    >>> defs = Definitions([
    ...     Entity("customer", join_keys=["customer_id"]),
    ...     FeatureView("profile", ["customer"], TableSource(rows), "ts", features=[Feature("age", "int64")]),
    ... ])
    >>> [(s.view.name, s.features) for s in defs.resolve(["profile:age"])]
    [('profile', ('age',))]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features.definitions import Entity, FeatureRef, FeatureService, FeatureView

__all__ = ["Definition", "Definitions", "FeaturesArg", "Selection", "resolve_features"]

Definition = Entity | FeatureView | FeatureService
FeaturesArg = FeatureService | FeatureView | FeatureRef | str | Sequence[FeatureView | FeatureRef | str]

_KIND_ORDER = {"entity": 0, "feature_view": 1, "feature_service": 2}


@dataclass(frozen=True)
class Selection:
    """Some features of one view whose entities are resolved."""

    view: FeatureView
    features: tuple[str, ...]


class Definitions:
    """Entities, feature views and feature services, unique by name within their kind.

    Entities that views reference as objects are added automatically. Two different definitions under one name
    are refused at once.
    """

    def __init__(self, objects: Iterable[Definition] = (), *, base_dir: str | Path | None = None) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.entities: dict[str, Entity] = {}
        self.views: dict[str, FeatureView] = {}
        self.services: dict[str, FeatureService] = {}
        self._origins: dict[str, FeatureView] = {}  # view name -> the object the user passed (before rebasing)
        for obj in objects:
            self.add(obj)

    def add(self, obj: Definition) -> None:
        """Add one definition; a different definition with the same kind and name is an error."""
        if isinstance(obj, Entity):
            self._add_entity(obj)
        elif isinstance(obj, FeatureView):
            origin = self._origins.get(obj.name)
            if origin is obj:
                return
            if origin is not None:
                raise InvalidInputError(
                    f"duplicate feature view name {obj.name!r}: defined twice",
                    field=f"feature_views.{obj.name}",
                )
            self._origins[obj.name] = obj
            view = obj if self.base_dir is None else obj.with_source(obj.source.rebased(self.base_dir))
            self.views[obj.name] = view
            for entity in obj.entities:
                if isinstance(entity, Entity):
                    self._add_entity(entity, via=obj.name)
        elif isinstance(obj, FeatureService):
            if obj.name in self.services and self.services[obj.name] is not obj:
                raise InvalidInputError(
                    f"duplicate feature service name {obj.name!r}: defined twice",
                    field=f"feature_services.{obj.name}",
                )
            self.services[obj.name] = obj
            for ref in obj.refs:
                if isinstance(ref.view, FeatureView):
                    self.add(ref.view)
        else:
            raise InvalidInputError(
                f"definitions: expected Entity, FeatureView or FeatureService, got {type(obj).__name__}",
                field="definitions",
            )

    def _add_entity(self, entity: Entity, via: str | None = None) -> None:
        seen = self.entities.get(entity.name)
        if seen is not None and seen is not entity and seen != entity:
            where = f" (used by feature view {via!r})" if via else ""
            raise InvalidInputError(
                f"duplicate entity name {entity.name!r}: defined twice with different join keys "
                f"{list(seen.join_keys)} and {list(entity.join_keys)}{where}",
                field=f"entities.{entity.name}",
            )
        self.entities.setdefault(entity.name, entity)

    def __iter__(self) -> Iterator[Definition]:
        yield from self.entities.values()
        yield from self.views.values()
        yield from self.services.values()

    def __len__(self) -> int:
        return len(self.entities) + len(self.views) + len(self.services)

    def view(self, name: str) -> FeatureView:
        """The view called ``name``, its entities resolved to objects."""
        view = self.views.get(name)
        if view is None:
            raise InvalidInputError(
                f"unknown feature view {name!r}" + _known(self.views), field=f"feature_views.{name}"
            )
        return self.resolve_view(view)

    def resolve_view(self, view: FeatureView) -> FeatureView:
        """``view`` with entity names replaced by this set's entities (and this set's copy if it holds it)."""
        if self._origins.get(view.name) is view:
            view = self.views[view.name]
        if all(isinstance(e, Entity) for e in view.entities):
            return view
        resolved: list[Entity] = []
        for entity in view.entities:
            if isinstance(entity, Entity):
                resolved.append(entity)
            elif entity in self.entities:
                resolved.append(self.entities[entity])
            else:
                raise InvalidInputError(
                    f"feature view {view.name!r}: unknown entity {entity!r}" + _known(self.entities),
                    field=f"feature_views.{view.name}.entities",
                )
        return view.with_entities(resolved)

    def service(self, name: str) -> FeatureService:
        service = self.services.get(name)
        if service is None:
            raise InvalidInputError(
                f"unknown feature service {name!r}" + _known(self.services), field=f"feature_services.{name}"
            )
        return service

    def resolve(self, features: FeaturesArg) -> list[Selection]:
        """Concrete views and feature names for a ``features=`` argument (see :func:`resolve_features`)."""
        return resolve_features(features, self)

    def to_specs(self) -> list[dict[str, Any]]:
        """Every definition's spec, ordered by kind then name."""
        specs = [obj.to_spec() for obj in self]
        return sorted(specs, key=lambda s: (_KIND_ORDER[s["kind"]], s["name"]))

    @classmethod
    def from_specs(cls, specs: Iterable[Mapping[str, Any]], *, base_dir: str | Path | None = None) -> Definitions:
        """Rebuild definitions from specs (as stored by a registry backend)."""
        base = Path(base_dir) if base_dir is not None else None
        objects: list[Definition] = []
        for spec in specs:
            kind = spec.get("kind")
            if kind == "entity":
                objects.append(Entity.from_spec(spec))
            elif kind == "feature_view":
                objects.append(FeatureView.from_spec(spec, base_dir=base))
            elif kind == "feature_service":
                objects.append(FeatureService.from_spec(spec))
            else:
                raise InvalidInputError(f"spec.kind: unknown kind {kind!r}", field="kind")
        return cls(objects)


def _known(names: Mapping[str, object]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none defined)"


def resolve_features(features: FeaturesArg, definitions: Definitions | None = None) -> list[Selection]:
    """Turn a service, a view, a ``view[...]`` selection, ``"view"``/``"view:feature"`` strings or a list of
    those into one :class:`Selection` per view (first-seen order, features deduplicated).

    Names need ``definitions``; view objects with Entity objects do not.
    """
    items: Sequence[FeatureView | FeatureRef | str]
    if isinstance(features, FeatureService):
        items = list(features.refs)
    elif isinstance(features, FeatureView | FeatureRef | str):
        items = [features]
    else:
        items = list(features)
    if not items:
        raise InvalidInputError("features: expected at least one feature", field="features")
    order: list[str] = []
    chosen: dict[str, tuple[FeatureView, list[str]]] = {}
    for item in items:
        ref = item if isinstance(item, FeatureRef) else FeatureRef.parse(item) if isinstance(item, str) else None
        view_obj: FeatureView
        if isinstance(item, FeatureView):
            view_obj, names = item, None
        elif ref is not None:
            names = ref.features
            if isinstance(ref.view, FeatureView):
                view_obj = ref.view
            elif definitions is None:
                raise InvalidInputError(
                    f"features: {ref.view_name!r} is a name; pass definitions=... to resolve it",
                    field="features",
                )
            else:
                view_obj = definitions.view(ref.view_name)
        else:
            raise InvalidInputError(f"features: cannot use {item!r} as a feature reference", field="features")
        view_obj = definitions.resolve_view(view_obj) if definitions is not None else view_obj
        view_obj.join_keys  # noqa: B018 - raises now if an entity is still only a name
        wanted = list(view_obj.feature_names) if names is None else [view_obj.feature(n).name for n in names]
        if view_obj.name not in chosen:
            order.append(view_obj.name)
            chosen[view_obj.name] = (view_obj, [])
        elif chosen[view_obj.name][0] is not view_obj and chosen[view_obj.name][0].spec_hash != view_obj.spec_hash:
            raise InvalidInputError(
                f"features: two different feature views are called {view_obj.name!r}", field="features"
            )
        bucket = chosen[view_obj.name][1]
        bucket.extend(n for n in wanted if n not in bucket)
    return [Selection(chosen[name][0], tuple(chosen[name][1])) for name in order]
