"""Arrow types seen through DuckDB's eyes, so the in-memory engine validates, compares and casts exactly like the
DuckDB engine.

- :func:`duckdb_type_name` spells an Arrow type the way DuckDB's ``DESCRIBE`` does (``BIGINT``,
  ``TIMESTAMP_NS``, ``VARCHAR``...), so plan-time checks and error messages do not depend on the engine;
- :func:`epoch_us` turns a timestamp or date column into microseconds since the epoch (UTC), rounding
  nanoseconds half away from zero as DuckDB's ``CAST(... AS TIMESTAMP)`` does;
- :func:`output_type` is the Arrow type of a feature of each declared dtype in every training set, and
  :func:`cast_feature` converts a source column to it.

    >>> import pyarrow as pa
    >>> duckdb_type_name(pa.timestamp("ns", tz="UTC")), duckdb_type_name(pa.large_string())
    ('TIMESTAMPTZ_NS', 'VARCHAR')
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["cast_feature", "duckdb_type_name", "epoch_us", "output_type"]

_SIMPLE = {
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "string_view": "VARCHAR",
    "date32[day]": "DATE",
}
_TIMESTAMP = {"s": "TIMESTAMP_S", "ms": "TIMESTAMP_MS", "us": "TIMESTAMP", "ns": "TIMESTAMP_NS"}
_TZ = "TIMESTAMP WITH TIME ZONE"
_TIMESTAMP_TZ = {"s": _TZ, "ms": _TZ, "us": _TZ, "ns": "TIMESTAMPTZ_NS"}
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
_DAY_US = 86_400_000_000


def duckdb_type_name(arrow_type: Any) -> str | None:
    """DuckDB's name for ``arrow_type``, or ``None`` for types the in-memory engine leaves to DuckDB."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return "VARCHAR" if duckdb_type_name(arrow_type.value_type) == "VARCHAR" else None
    if pa.types.is_timestamp(arrow_type):
        table = _TIMESTAMP if arrow_type.tz is None else _TIMESTAMP_TZ
        return table.get(arrow_type.unit)
    return _SIMPLE.get(str(arrow_type))


def epoch_us(column: Any) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.bool_]] | None]:
    """Microseconds since the epoch of a timestamp or date column, and its validity (``None``: no nulls).

    Null slots hold 0 in the values. Naive timestamps are read as UTC.
    """
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = column.type
    valid = None
    if column.null_count:
        valid = column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_date32(kind):
        raw = column.cast(pa.int32()).fill_null(0).to_numpy().astype(np.int64) * _DAY_US
        return raw, valid
    if not pa.types.is_timestamp(kind):
        raise TypeError(f"not a timestamp or date column: {kind}")
    raw = column.view(pa.int64()).fill_null(0).to_numpy()
    if kind.unit == "ns":
        # DuckDB rounds half away from zero when it drops nanoseconds.
        magnitude = (np.abs(raw) + 500) // 1000
        return np.where(raw < 0, -magnitude, magnitude).astype(np.int64), valid
    factor = _US_PER[kind.unit]
    return (raw * factor if factor != 1 else raw.astype(np.int64, copy=False)), valid


def output_type(dtype: str) -> Any:
    """The Arrow type of a feature declared as ``dtype`` in training sets (what DuckDB returns for its cast)."""
    import pyarrow as pa

    return {
        "bool": pa.bool_(),
        "int8": pa.int8(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
    }[dtype]


def cast_feature(column: Any, dtype: str) -> Any:
    """``column`` (an Arrow array whose type validated against ``dtype``) as :func:`output_type` ``(dtype)``."""
    import pyarrow as pa

    target = output_type(dtype)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type == target:
        return column
    if dtype == "timestamp":
        values, valid = epoch_us(column)
        mask = None if valid is None else ~valid
        return pa.array(values, pa.int64(), mask=mask).view(target)
    return column.cast(target)
