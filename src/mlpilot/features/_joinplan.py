"""Checks and naming shared by both training-set engines, so a bad call fails the same way whichever runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mlpilot.errors import InvalidInputError
from mlpilot.features.catalog import Selection
from mlpilot.features.definitions import FeatureView
from mlpilot.features.dtypes import is_timestamp_type, kind_of

__all__ = ["RESERVED_PREFIX", "check_entity", "check_reserved", "output_names"]

RESERVED_PREFIX = "__mlpilot_"


def check_reserved(columns: Iterable[str]) -> None:
    reserved = [name for name in columns if name.startswith(RESERVED_PREFIX)]
    if reserved:
        raise InvalidInputError(
            f"entity_df: column {reserved[0]!r} uses the reserved prefix {RESERVED_PREFIX}",
            field=f"entity_df.{reserved[0]}",
        )


def check_entity(
    schema: dict[str, str], timestamp_field: str, views: Sequence[tuple[FeatureView, dict[str, str]]]
) -> None:
    """The entity rows (``schema``: column -> DuckDB type) hold the time column and every view's join keys,
    typed compatibly with each view's source (``views``: the view and its source schema)."""
    if timestamp_field not in schema:
        raise InvalidInputError(
            f"entity_df: no column {timestamp_field!r} (pass timestamp_field=...; columns: {', '.join(schema)})",
            field="timestamp_field",
        )
    if not is_timestamp_type(schema[timestamp_field]):
        raise InvalidInputError(
            f"entity_df: column {timestamp_field!r} has type {schema[timestamp_field]}; expected a timestamp or date",
            field="timestamp_field",
        )
    for view, view_schema in views:
        for key in view.join_keys:
            if key not in schema:
                raise InvalidInputError(
                    f"entity_df: no column {key!r}, a join key of feature view {view.name!r}",
                    field=f"entity_df.{key}",
                )
            if kind_of(schema[key]) != kind_of(view_schema[key]):
                raise InvalidInputError(
                    f"entity_df: join key {key!r} has type {schema[key]} but feature view "
                    f"{view.name!r} has {view_schema[key]}",
                    field=f"entity_df.{key}",
                )


def output_names(selections: Sequence[Selection], entity_columns: Iterable[str], full_names: bool) -> list[list[str]]:
    """The output column of every selected feature, refusing clashes with the entity columns or each other."""
    taken: dict[str, str] = {name: "entity_df" for name in entity_columns if not name.startswith(RESERVED_PREFIX)}
    result: list[list[str]] = []
    for s in selections:
        names = []
        for feature in s.features:
            name = f"{s.view.name}__{feature}" if full_names else feature
            if name in taken:
                hint = "" if full_names else "; pass full_names=True to name columns view__feature"
                raise InvalidInputError(
                    f"features: output column {name!r} of feature view {s.view.name!r} clashes with "
                    f"{taken[name]}{hint}",
                    field="features",
                )
            taken[name] = f"feature view {s.view.name!r}"
            names.append(name)
        result.append(names)
    return result
