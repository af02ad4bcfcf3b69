"""Feature value types: the names users declare, and how they map onto DuckDB and Arrow types.

A declared dtype is one of :data:`DTYPES`. A source column is compatible with a declared dtype when every
value of the column converts to it without loss (``INTEGER`` into ``int64`` is fine, ``DOUBLE`` into ``int64``
or ``VARCHAR`` into ``float64`` is not)::

    >>> from mlpilot.features.dtypes import compatible
    >>> compatible("INTEGER", "int64"), compatible("VARCHAR", "float64")
    (True, False)
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DTYPES",
    "compatible",
    "duckdb_type",
    "is_timestamp_type",
    "kind_of",
    "timestamp_us_sql",
]

# dtype -> DuckDB type the value is cast to in every result.
_DUCKDB_TYPES: Final[dict[str, str]] = {
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
}

DTYPES: Final[tuple[str, ...]] = tuple(_DUCKDB_TYPES)

# Source column types (DuckDB spelling) each dtype accepts without loss.
_ACCEPTS: Final[dict[str, frozenset[str]]] = {
    "bool": frozenset({"BOOLEAN"}),
    "int8": frozenset({"TINYINT"}),
    "int16": frozenset({"TINYINT", "SMALLINT", "UTINYINT"}),
    "int32": frozenset({"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"}),
    "int64": frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}),
    "float32": frozenset({"FLOAT"}),
    "float64": frozenset({"FLOAT", "DOUBLE", "DECIMAL"}),
    "string": frozenset({"VARCHAR"}),
    "timestamp": frozenset(
        {
            "TIMESTAMP",
            "TIMESTAMP_S",
            "TIMESTAMP_MS",
            "TIMESTAMP_NS",
            "TIMESTAMP WITH TIME ZONE",
            "TIMESTAMPTZ",
            "TIMESTAMPTZ_NS",
            "TIMESTAMP_NS WITH TIME ZONE",
        }
    ),
    "date": frozenset({"DATE"}),
}

_TZ_TYPES: Final[frozenset[str]] = frozenset(
    {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMPTZ_NS", "TIMESTAMP_NS WITH TIME ZONE"}
)
_INT_TYPES: Final[frozenset[str]] = _ACCEPTS["int64"] | {"BIGINT", "UBIGINT", "HUGEINT", "UHUGEINT"}


def _base(source_type: str) -> str:
    # DECIMAL(18,3) -> DECIMAL
    return source_type.split("(", 1)[0].strip().upper()


def duckdb_type(dtype: str) -> str:
    """The DuckDB type a feature of ``dtype`` is cast to."""
    return _DUCKDB_TYPES[dtype]


def compatible(source_type: str, dtype: str) -> bool:
    """Whether a source column of DuckDB type ``source_type`` can be read as ``dtype`` without loss."""
    return _base(source_type) in _ACCEPTS.get(dtype, frozenset())


def kind_of(source_type: str) -> str:
    """A coarse kind: ``int``, ``float``, ``string``, ``bool``, ``timestamp``, ``date`` or ``other``.

    Used in messages and to check that two join-key columns can be compared.
    """
    base = _base(source_type)
    if base in _INT_TYPES:
        return "int"
    if base in ("FLOAT", "DOUBLE", "DECIMAL"):
        return "float"
    if base == "VARCHAR":
        return "string"
    if base == "BOOLEAN":
        return "bool"
    if base in _ACCEPTS["timestamp"]:
        return "timestamp"
    if base == "DATE":
        return "date"
    return "other"


def is_timestamp_type(source_type: str) -> bool:
    """Whether a column of this type can serve as an event or availability time (timestamps and dates)."""
    return kind_of(source_type) in ("timestamp", "date")


def timestamp_us_sql(column_sql: str, source_type: str) -> str:
    """SQL turning a timestamp or date column into microseconds since the epoch (UTC).

    Naive timestamps are read as UTC. Every time comparison in the join runs on these integers, so the DuckDB
    session's time zone can never shift a result.
    """
    target = "TIMESTAMPTZ" if _base(source_type) in _TZ_TYPES else "TIMESTAMP"
    return f"epoch_us(CAST({column_sql} AS {target}))"
