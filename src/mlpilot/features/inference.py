"""Feature views from a DataFrame: declared dtypes inferred from the data, for notebooks, demos and tests.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"customer_id": [1], "signup_time": [pd.Timestamp("2025-01-01")],
    ...                       "tenure": [3.0], "plan": ["pro"]})
    >>> view = view_from_frame("profile", frame, ["customer_id"], "signup_time")
    >>> [(f.name, f.dtype) for f in view.features]
    [('tenure', 'float64'), ('plan', 'string')]

The view's source is the frame itself (a :class:`~mlpilot.features.TableSource`); registering it records
only its schema, so for production write the frame to Parquet and use a ``ParquetSource``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._frames import to_arrow
from mlpilot.features.definitions import Entity, Feature, FeatureView
from mlpilot.features.sources import TableSource

__all__ = ["infer_features", "view_from_frame"]


def _dtype_of(arrow_type: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    simple = {
        "bool": "bool",
        "int8": "int8",
        "int16": "int16",
        "int32": "int32",
        "int64": "int64",
        "uint8": "int16",
        "uint16": "int32",
        "uint32": "int64",
        "float": "float32",
        "double": "float64",
        "string": "string",
        "large_string": "string",
        "string_view": "string",
        "date32[day]": "date",
    }
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return simple.get(str(arrow_type))


def infer_features(data: Any, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> list[Feature]:
    """One :class:`Feature` per column of ``data`` (Arrow, pandas or polars), typed from the column, in column
    order; ``exclude`` skips columns (keys, times), ``only`` lists the wanted ones (in that order)."""
    table = to_arrow(data, field="data")
    names = list(only) if only is not None else [c for c in table.column_names if c not in set(exclude)]
    features = []
    for name in names:
        if name not in table.column_names:
            raise InvalidInputError(f"features: no column {name!r} in the data", field=f"features.{name}")
        dtype = _dtype_of(table.schema.field(name).type)
        if dtype is None:
            raise InvalidInputError(
                f"features: column {name!r} has type {table.schema.field(name).type}, which no feature dtype holds",
                field=f"features.{name}",
            )
        features.append(Feature(name, dtype))
    return features


def view_from_frame(
    name: str,
    data: Any,
    entities: Sequence[Entity | str],
    timestamp_field: str,
    *,
    features: Sequence[str] | None = None,
    available_at_field: str | None = None,
    ttl: timedelta | None = None,
    description: str = "",
) -> FeatureView:
    """A feature view over ``data``; ``entities`` are Entity objects or join-key column names (each becomes
    an entity named after its column without a trailing ``_id``). Features default to every other column."""
    table = to_arrow(data, field="data")
    resolved = [
        e if isinstance(e, Entity) else Entity(e[:-3] if e.endswith("_id") and len(e) > 3 else e, [e]) for e in entities
    ]
    keys = {k for e in resolved for k in e.join_keys}
    exclude = keys | {timestamp_field} | ({available_at_field} if available_at_field else set())
    return FeatureView(
        name,
        resolved,
        TableSource(table),
        timestamp_field,
        available_at_field=available_at_field,
        ttl=ttl,
        features=infer_features(table, exclude=sorted(exclude), only=features),
        description=description,
    )
