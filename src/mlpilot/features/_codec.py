"""How entity keys and feature rows are encoded in online stores.

Shared by materialize, push and lookup so that every writer and reader agrees byte for byte.

    >>> encode_key([42]), encode_key(["a", 7])
    ('[42]', '["a",7]')
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features.definitions import FeatureView

__all__ = ["decode_value", "encode_key", "encode_payload", "online_columns", "store_of", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _key_part(value: Any, field: str) -> int | str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if item is not None:
        return _key_part(item(), field)
    raise InvalidInputError(f"{field}: join key values must be integers or strings, got {value!r}", field=field)


def encode_key(values: Sequence[Any], names: Sequence[str] = ()) -> str:
    """The store key of one entity: its join-key values as a compact JSON list."""
    parts = [_key_part(v, names[i] if i < len(names) else "entity key") for i, v in enumerate(values)]
    return _dumps(parts)


def encode_payload(values: dict[str, Any]) -> bytes:
    """One entity's features (name -> online representation) as JSON bytes."""
    return _dumps(values).encode("utf-8")


def decode_value(value: Any, dtype: str) -> Any:
    """The Python value of a stored feature: timestamps come back as aware UTC datetimes, dates as dates."""
    if value is None:
        return None
    if dtype == "timestamp":
        return _EPOCH + timedelta(microseconds=value)
    if dtype == "date":
        return date.fromordinal(_EPOCH_DAY + value)
    return value


def online_columns(table: Any, view: FeatureView, names: Sequence[str]) -> Iterator[list[Any]]:
    """Each feature column of ``table`` as a Python list in the online representation (timestamps as epoch
    microseconds, dates as epoch days)."""
    import pyarrow as pa

    for name in names:
        column = table.column(name)
        dtype = view.feature(name).dtype
        if dtype == "timestamp":
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        elif dtype == "date":
            column = column.cast(pa.date32()).cast(pa.int32())
        yield column.to_pylist()


def to_us(value: datetime, field: str) -> int:
    """Microseconds since the epoch; naive datetimes are read as UTC."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{field}: expected a datetime, got {value!r}", field=field)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def store_of(store: Any) -> tuple[Any, bool]:
    """``(store, opened_here)`` for an ``OnlineStore``, a URL or ``None`` (the default store)."""
    if store is None or isinstance(store, str):
        from mlpilot.features.online import open_online_store

        return open_online_store(store), True
    return store, False
