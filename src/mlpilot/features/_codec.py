"""How entity keys and feature rows are encoded in online stores.

Shared by materialize, push and lookup so that every writer and reader agrees byte for byte.

    >>> encode_key([42]), encode_key(["a", 7])
    ('[42]', '["a",7]')

A payload is binary: a format byte, a 4-byte fingerprint of the view's feature layout (names and dtypes, in
order), a null bitmap, the fixed-width values packed with :mod:`struct`, then each string as a length-prefixed
UTF-8 run. Decoding one entity's row is a single ``struct.unpack_from`` (about 50x faster than JSON). A payload
written under another layout (the view's features changed since it was materialized) decodes as missing until
the view is materialized again.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features.definitions import FeatureView

__all__ = ["PayloadCodec", "decode_value", "encode_key", "online_columns", "store_of", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_FORMAT = 1
_STRUCT_CODES = {
    "bool": "?",
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "float32": "f",
    "float64": "d",
    "timestamp": "q",  # microseconds since the epoch
    "date": "i",  # days since the epoch
}
_LEN = struct.Struct("<I")


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
    if len(values) == 1 and type(values[0]) is int:  # the common case, without the JSON encoder
        return f"[{values[0]}]"
    parts = [_key_part(v, names[i] if i < len(names) else "entity key") for i, v in enumerate(values)]
    return _dumps(parts)


class PayloadCodec:
    """Encodes and decodes one view's feature rows (all features, in declaration order)."""

    def __init__(self, view: FeatureView) -> None:
        layout = [(f.name, f.dtype) for f in view.features]
        digest = hashlib.sha256(repr(layout).encode()).digest()[:4]
        self.names = tuple(name for name, _ in layout)
        self.dtypes = tuple(dtype for _, dtype in layout)
        self._fixed = [i for i, d in enumerate(self.dtypes) if d != "string"]
        self._strings = [i for i, d in enumerate(self.dtypes) if d == "string"]
        bitmap = (len(layout) + 7) // 8
        self._header = bytes([_FORMAT]) + digest
        self._bitmap_len = bitmap
        self._struct = struct.Struct("<" + "".join(_STRUCT_CODES[self.dtypes[i]] for i in self._fixed))
        self._values_at = len(self._header) + bitmap
        self._simple = not self._strings  # fixed-width only: one unpack
        # A whole fixed-width payload (header, bitmap, values) as one record, so a batch of them decodes with a
        # single ``iter_unpack`` over their concatenation; a zeroed record (format byte 0) stands for a missing one.
        self._record = struct.Struct(f"<{len(self._header)}s{bitmap}s{self._struct.format[1:]}")
        self._blank = bytes(self._record.size)
        self._no_nulls = bytes(bitmap)

    def encode(self, values: Sequence[Any]) -> bytes:
        """``values`` in the online representation (see :func:`online_columns`), one per feature."""
        nulls = 0
        for i, value in enumerate(values):
            if value is None:
                nulls |= 1 << i
        fixed = [0 if values[i] is None else values[i] for i in self._fixed]
        out = [self._header, nulls.to_bytes(self._bitmap_len, "little"), self._struct.pack(*fixed)]
        for i in self._strings:
            raw = b"" if values[i] is None else str(values[i]).encode("utf-8")
            out.append(_LEN.pack(len(raw)))
            out.append(raw)
        return b"".join(out)

    def decode(self, payload: bytes) -> list[Any] | None:
        """All feature values of a payload (``None`` entries for nulls), or ``None`` for another layout."""
        if payload[:5] != self._header:
            return None
        fixed = self._struct.unpack_from(payload, self._values_at)
        nulls = int.from_bytes(payload[5 : self._values_at], "little")
        if self._simple and not nulls:
            return list(fixed)
        values: list[Any] = [None] * len(self.dtypes)
        for i, value in zip(self._fixed, fixed, strict=True):
            values[i] = value
        offset = self._values_at + self._struct.size
        for i in self._strings:
            (length,) = _LEN.unpack_from(payload, offset)
            offset += _LEN.size
            values[i] = payload[offset : offset + length].decode("utf-8")
            offset += length
        if nulls:
            for i in range(len(values)):
                if nulls >> i & 1:
                    values[i] = None
        return values

    def decode_columns(self, payloads: Sequence[bytes | None], positions: Sequence[int]) -> list[list[Any]]:
        """The features at ``positions`` of each payload, as one list per feature (``None`` for a missing payload,
        a payload of another layout, or a null value).

        A batch of fixed-width payloads is decoded at once: the payloads are concatenated, unpacked with one
        ``iter_unpack`` and transposed with ``zip``, so the cost per entity is a few C-level steps, not Python
        calls; only rows with nulls or another layout are then decoded one by one.
        """
        count = len(payloads)
        if not count:
            return [[] for _ in positions]
        if self._simple:
            blank = self._blank
            filled = [blank if p is None else p for p in payloads]
            if len(set(map(len, filled))) == 1 and len(filled[0]) == len(blank):
                records = list(zip(*self._record.iter_unpack(b"".join(filled)), strict=True))
                headers, bitmaps = records[0], records[1]
                outs = [list(records[2 + at]) for at in positions]
                if headers.count(self._header) != count or bitmaps.count(self._no_nulls) != count:
                    for i in range(count):
                        if headers[i] != self._header or bitmaps[i] != self._no_nulls:
                            payload = payloads[i]
                            values = None if payload is None else self.decode(payload)
                            for out, at in zip(outs, positions, strict=True):
                                out[i] = None if values is None else values[at]
                return outs
        rows = [None if p is None else self.decode(p) for p in payloads]
        return [[None if values is None else values[at] for values in rows] for at in positions]


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
