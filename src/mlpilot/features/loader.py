"""Load definitions from a user's ``features.py`` or a YAML file.

A Python file is executed as a module and every module-level :class:`Entity`, :class:`FeatureView` and
:class:`FeatureService` is collected. A YAML file has three optional lists::

    entities:
      - name: customer
        join_keys: [customer_id]
    feature_views:
      - name: txn_stats
        entities: [customer]
        source: {parquet: data/txn/*.parquet}     # or {sql: "SELECT ...", inputs: {txn: {parquet: ...}}}
        timestamp_field: event_time
        available_at_field: loaded_at             # optional
        ttl: 7d                                   # optional: 90s, 15m, 12h, 7d, 2w or seconds
        features:
          amount_7d: float64                      # or a list of {name, dtype, description}
    feature_services:
      - name: churn
        features: [txn_stats, "profile:age"]

Relative paths resolve against the folder of the file. Unknown keys are refused with their path
(``feature_views[0].tll: unknown key``).

    >>> defs = load_definitions("features.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError, MissingDependencyError
from mlpilot.features.catalog import Definition, Definitions
from mlpilot.features.definitions import Entity, Feature, FeatureRef, FeatureService, FeatureView
from mlpilot.features.sources import Source, SqlSource, source_from_spec

__all__ = ["load_definitions", "parse_duration"]

_counter = itertools.count()
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def load_definitions(path: str | Path) -> Definitions:
    """Definitions from a ``.py`` or ``.yaml``/``.yml`` file; relative source paths resolve next to it."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"definitions: no such file {file}", field="path")
    if file.suffix == ".py":
        objects = _load_python(file)
    elif file.suffix in (".yaml", ".yml"):
        objects = _load_yaml(file)
    else:
        raise InvalidInputError(f"definitions: expected a .py, .yaml or .yml file, got {file.name}", field="path")
    return Definitions(objects, base_dir=file.resolve().parent)


def _load_python(file: Path) -> list[Definition]:
    name = f"_mlpilot_features_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"definitions: cannot import {file}", field="path")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the user's file look their module up here
    try:
        spec.loader.exec_module(module)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{file}: {exc.message}", field=exc.field) from exc
    except Exception as exc:
        raise InvalidInputError(f"{file}: {type(exc).__name__}: {exc}", field="path") from exc
    finally:
        sys.modules.pop(name, None)
    found: list[Definition] = []
    for value in vars(module).values():
        if isinstance(value, Entity | FeatureView | FeatureService) and not any(value is f for f in found):
            found.append(value)
    return found


def parse_duration(value: Any, field: str) -> timedelta:
    """``90``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise InvalidInputError(
            f"{field}: expected a duration such as 90s, 15m, 12h, 7d, 2w or a number of seconds, got {value!r}",
            field=field,
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _load_yaml(file: Path) -> list[Definition]:
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError("pyyaml", "features") from exc
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{file}: not valid YAML: {exc}", field="path") from exc
    base = file.resolve().parent
    doc = _mapping(data, str(file), {"entities", "feature_views", "feature_services"})
    objects: list[Definition] = []
    for i, item in enumerate(_list(doc.get("entities"), "entities")):
        where = f"entities[{i}]"
        entity = _mapping(item, where, {"name", "join_keys", "description"})
        objects.append(
            Entity(
                _required(entity, "name", where),
                _required(entity, "join_keys", where),
                description=str(entity.get("description", "")),
            )
        )
    for i, item in enumerate(_list(doc.get("feature_views"), "feature_views")):
        objects.append(_view(item, f"feature_views[{i}]", base))
    for i, item in enumerate(_list(doc.get("feature_services"), "feature_services")):
        where = f"feature_services[{i}]"
        service = _mapping(item, where, {"name", "features", "description", "tags"})
        refs = [_ref(r, f"{where}.features") for r in _list(_required(service, "features", where), where)]
        objects.append(
            FeatureService(
                _required(service, "name", where),
                refs,
                description=str(service.get("description", "")),
                tags=service.get("tags") or {},
            )
        )
    return objects


def _view(item: Any, where: str, base: Path) -> FeatureView:
    keys = {
        "name",
        "entities",
        "source",
        "timestamp_field",
        "available_at_field",
        "ttl",
        "features",
        "description",
        "tags",
    }
    view = _mapping(item, where, keys)
    ttl = view.get("ttl")
    return FeatureView(
        _required(view, "name", where),
        entities=_list(_required(view, "entities", where), f"{where}.entities"),
        source=_source(_required(view, "source", where), f"{where}.source", base),
        timestamp_field=_required(view, "timestamp_field", where),
        available_at_field=view.get("available_at_field"),
        ttl=None if ttl is None else parse_duration(ttl, f"{where}.ttl"),
        features=_features(_required(view, "features", where), f"{where}.features"),
        description=str(view.get("description", "")),
        tags=view.get("tags") or {},
    )


def _source(item: Any, where: str, base: Path) -> Source:
    source = _mapping(item, where, {"parquet", "sql", "inputs", "type", "paths", "path", "query", "schema"})
    if "parquet" in source:
        return source_from_spec({"type": "parquet", "paths": source["parquet"]}, base_dir=base)
    if "sql" in source:
        inputs = _mapping(source.get("inputs") or {}, f"{where}.inputs", None)
        return SqlSource(
            str(source["sql"]), {str(k): _source(v, f"{where}.inputs.{k}", base) for k, v in inputs.items()}
        )
    return source_from_spec(source, base_dir=base)


def _features(item: Any, where: str) -> list[Feature]:
    if isinstance(item, Mapping):
        return [Feature(str(name), str(dtype)) for name, dtype in item.items()]
    features = []
    for i, entry in enumerate(_list(item, where)):
        feature = _mapping(entry, f"{where}[{i}]", {"name", "dtype", "description"})
        features.append(
            Feature(
                _required(feature, "name", f"{where}[{i}]"),
                _required(feature, "dtype", f"{where}[{i}]"),
                str(feature.get("description", "")),
            )
        )
    return features


def _ref(item: Any, where: str) -> FeatureRef:
    if isinstance(item, str):
        return FeatureRef.parse(item)
    ref = _mapping(item, where, {"view", "features"})
    features = ref.get("features")
    return FeatureRef(_required(ref, "view", where), None if features is None else tuple(_list(features, where)))


def _mapping(value: Any, where: str, allowed: set[str] | None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{where}: expected a mapping, got {type(value).__name__}", field=where)
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise InvalidInputError(
                    f"{where}.{key}: unknown key (expected one of {', '.join(sorted(allowed))})",
                    field=f"{where}.{key}",
                )
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInputError(f"{where}: expected a list, got {type(value).__name__}", field=where)
    return value


def _required(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise InvalidInputError(f"{where}.{key}: required", field=f"{where}.{key}")
    return mapping[key]
