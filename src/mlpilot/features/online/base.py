"""The online-store contract: a key-value map from (view, entity key) to the latest feature row.

Stores are deliberately dumb: they keep bytes and two timestamps per entity and never overwrite a newer row
with an older one. Encoding, feature selection and TTL live above them (``mlpilot.features.lookup``), so every
store answers identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["OnlineStore", "PayloadReader", "StoredRow"]


class StoredRow(NamedTuple):
    """One entity's latest row of one view. Times are microseconds since the epoch (UTC)."""

    entity_key: str
    event_time: int
    available_at: int
    payload: bytes


@runtime_checkable
class OnlineStore(Protocol):
    """Latest feature rows per (view, entity key).

    Contract:

    - ``write_batch(view, rows, watermark=None)`` upserts each row unless the stored row for that key is
      newer: a row replaces the stored one iff ``(event_time, available_at) >= (stored.event_time,
      stored.available_at)``, so late or replayed rows never roll a value back and equal rows are idempotent.
      If ``watermark`` is given, the view's watermark becomes ``max(old, watermark)`` only once all rows are
      written (never ahead of the data).
    - ``read(view, entity_keys)`` returns, in order, the stored row of each key or ``None``.
    - ``read_watermark(view)`` returns the view's watermark or ``None`` if it was never materialized.
    - ``close()`` releases connections; the store is a context manager.
    """

    def write_batch(self, view: str, rows: Sequence[StoredRow], *, watermark: int | None = None) -> None: ...

    def read(self, view: str, entity_keys: Sequence[str]) -> list[StoredRow | None]: ...

    def read_watermark(self, view: str) -> int | None: ...

    def close(self) -> None: ...


@runtime_checkable
class PayloadReader(Protocol):
    """An optional fast path an :class:`OnlineStore` may offer for lookups (both built-in stores do).

    Contract: ``read_payloads(view, entity_keys, min_event_time=None)`` returns, in order, the stored payload
    of each key, or ``None`` if the key has no row or (when ``min_event_time`` is given) its row's
    ``event_time < min_event_time``: exactly what ``read`` followed by that filter gives, in one round trip
    and without building a :class:`StoredRow` per entity. Lookups use it when the store has it.
    """

    def read_payloads(
        self, view: str, entity_keys: Sequence[str], *, min_event_time: int | None = None
    ) -> list[bytes | None]: ...
