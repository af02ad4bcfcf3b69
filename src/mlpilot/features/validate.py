"""Plan-time checks of a set of definitions against each other and against their sources' schemas.

Every problem is collected, then one :class:`~mlpilot.errors.InvalidInputError` is raised whose message lists
them all (each naming the view and field) and whose ``field`` is the first one's::

    >>> from mlpilot.features import Definitions, Feature, FeatureView, TableSource
    >>> import pyarrow as pa
    >>> rows = pa.table({"id": [1], "ts": pa.array([0], pa.timestamp("us")), "x": ["a"]})
    >>> view = FeatureView("v", ["nobody"], TableSource(rows), "ts", features=[Feature("x", "float64")])
    >>> validate_definitions(Definitions([view]))
    Traceback (most recent call last):
    ...
    mlpilot.errors.InvalidInputError: 2 problems in the feature definitions:
      - feature view 'v': unknown entity 'nobody' (none defined)
      - feature view 'v': feature 'x' is declared float64 but its source column is VARCHAR
"""

from __future__ import annotations

from dataclasses import dataclass

from mlpilot.errors import InvalidInputError, MlpilotError
from mlpilot.features._duckdb import DuckSession
from mlpilot.features.catalog import Definitions
from mlpilot.features.definitions import Entity, FeatureView
from mlpilot.features.dtypes import compatible, is_timestamp_type, kind_of

__all__ = ["Problem", "raise_problems", "source_problems", "unreadable_source", "validate_definitions"]


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def validate_definitions(definitions: Definitions, *, check_sources: bool = True) -> None:
    """Raise :class:`InvalidInputError` listing every problem, or return quietly.

    With ``check_sources`` each view's source is opened (metadata only for Parquet) to check that the join
    keys, timestamp columns and features exist with compatible types.
    """
    problems: list[Problem] = []
    key_kinds: dict[tuple[str, str], tuple[str, str]] = {}  # (entity, key) -> (kind, view that set it)
    session: DuckSession | None = None
    try:
        for view in definitions.views.values():
            problems.extend(_check_names(view, definitions))
            if not check_sources:
                continue
            if session is None:
                session = DuckSession()
            problems.extend(_check_source(view, definitions, session, key_kinds))
    finally:
        if session is not None:
            session.close()
    for service in definitions.services.values():
        for ref in service.refs:
            field = f"feature_services.{service.name}.features"
            target = definitions.views.get(ref.view_name)
            if target is None:
                problems.append(
                    Problem(field, f"feature service {service.name!r}: unknown feature view {ref.view_name!r}")
                )
                continue
            for name in ref.features or ():
                if name not in target.feature_names:
                    problems.append(
                        Problem(
                            field,
                            f"feature service {service.name!r}: feature view {target.name!r} has no feature {name!r}",
                        )
                    )
    raise_problems(problems)


def raise_problems(problems: list[Problem]) -> None:
    """Raise one :class:`InvalidInputError` listing ``problems`` (nothing if empty)."""
    if not problems:
        return
    if len(problems) == 1:
        message = problems[0].message
    else:
        message = f"{len(problems)} problems in the feature definitions:\n" + "\n".join(
            f"  - {p.message}" for p in problems
        )
    raise InvalidInputError(
        message,
        field=problems[0].field,
        problems=[{"field": p.field, "message": p.message} for p in problems],
    )


def _check_names(view: FeatureView, definitions: Definitions) -> list[Problem]:
    problems: list[Problem] = []
    prefix = f"feature view {view.name!r}"
    field = f"feature_views.{view.name}"
    for entity in view.entities:
        name = entity if isinstance(entity, str) else entity.name
        if name not in definitions.entities:
            known = ", ".join(sorted(definitions.entities)) or "none defined"
            problems.append(Problem(f"{field}.entities", f"{prefix}: unknown entity {name!r} ({known})"))
    seen: set[str] = set()
    for feature in view.features:
        if feature.name in seen:
            problems.append(
                Problem(f"{field}.features.{feature.name}", f"{prefix}: duplicate feature {feature.name!r}")
            )
        seen.add(feature.name)
    reserved = {view.timestamp_field: "timestamp_field", view.available_at_field: "available_at_field"}
    for entity in view.entities:
        if isinstance(entity, Entity):
            reserved.update(dict.fromkeys(entity.join_keys, "join key"))
    for feature in view.features:
        role = reserved.get(feature.name)
        if role is not None:
            problems.append(
                Problem(
                    f"{field}.features.{feature.name}",
                    f"{prefix}: feature {feature.name!r} is also the view's {role}",
                )
            )
    return problems


def _check_source(
    view: FeatureView,
    definitions: Definitions,
    session: DuckSession,
    key_kinds: dict[tuple[str, str], tuple[str, str]],
) -> list[Problem]:
    try:
        schema = view.source.schema(session)
    except MlpilotError as exc:
        return [unreadable_source(view, exc)]
    return source_problems(view, schema, definitions, key_kinds)


def unreadable_source(view: FeatureView, exc: MlpilotError) -> Problem:
    """The problem of a view whose source cannot be read (no file matches its glob, a query fails, …)."""
    spec = view.source.to_spec()
    what = ", ".join(spec["paths"]) if spec["type"] == "parquet" else f"({spec['type']} source)"
    return Problem(
        f"feature_views.{view.name}.source", f"feature view {view.name!r}: cannot read its source {what}: {exc.message}"
    )


def source_problems(
    view: FeatureView,
    schema: dict[str, str],
    definitions: Definitions | None = None,
    key_kinds: dict[tuple[str, str], tuple[str, str]] | None = None,
) -> list[Problem]:
    """What is wrong between ``view`` and its source's ``schema`` (column -> DuckDB type)."""
    prefix = f"feature view {view.name!r}"
    field = f"feature_views.{view.name}"
    key_kinds = {} if key_kinds is None else key_kinds
    columns = ", ".join(schema)
    problems: list[Problem] = []

    def missing(role: str, column: str, role_field: str) -> None:
        problems.append(
            Problem(
                f"{field}.{role_field}",
                f"{prefix}: {role} {column!r} is not a column of its source ({columns})",
            )
        )

    for entity in view.entities:
        if isinstance(entity, Entity):
            resolved: Entity | None = entity
        else:
            resolved = None if definitions is None else definitions.entities.get(entity)
        if resolved is None:
            continue
        for key in resolved.join_keys:
            if key not in schema:
                missing(f"join key of entity {resolved.name!r}", key, "entities")
                continue
            kind = kind_of(schema[key])
            if kind not in ("int", "string"):
                problems.append(
                    Problem(
                        f"{field}.entities",
                        f"{prefix}: join key {key!r} has type {schema[key]}; join keys must be integers or strings",
                    )
                )
            other = key_kinds.setdefault((resolved.name, key), (kind, view.name))
            if other[0] != kind:
                problems.append(
                    Problem(
                        f"{field}.entities",
                        f"{prefix}: join key {key!r} of entity {resolved.name!r} is {kind} here "
                        f"but {other[0]} in feature view {other[1]!r}",
                    )
                )
    for role, column in (
        ("timestamp_field", view.timestamp_field),
        ("available_at_field", view.available_at_field),
    ):
        if column is None:
            continue
        if column not in schema:
            missing(role, column, role)
        elif not is_timestamp_type(schema[column]):
            problems.append(
                Problem(
                    f"{field}.{role}",
                    f"{prefix}: {role} {column!r} has type {schema[column]}; expected a timestamp or date",
                )
            )
    for feature in view.features:
        if feature.name not in schema:
            missing("feature", feature.name, f"features.{feature.name}")
        elif not compatible(schema[feature.name], feature.dtype):
            problems.append(
                Problem(
                    f"{field}.features.{feature.name}",
                    f"{prefix}: feature {feature.name!r} is declared {feature.dtype} "
                    f"but its source column is {schema[feature.name]}",
                )
            )
    return problems
