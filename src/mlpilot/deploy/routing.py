"""Traffic routing by deterministic hashing: which variant answers a request, and whether it is mirrored.

Pure and stateless, so every replica of the data plane (and the control plane attributing a label to a
variant after the fact) makes the same choice for the same key without talking to anyone::

    >>> table = RouteTable.build("churn", [Variant(version=3, role="primary", weight=90),
    ...                                    Variant(version=4, role="canary", weight=10)])
    >>> table.choose("user-42") in (3, 4)
    True
    >>> table.choose("user-42") == table.choose("user-42")
    True

A key is hashed (BLAKE2b, salted per endpoint) into one of 10,000 buckets. The canary owns the low buckets
``[0, weight)`` and the primary the rest, so raising the canary's weight from 5% to 25% only moves keys from
the primary to the canary: a user who saw the canary keeps seeing it. Shadow mirroring hashes the key with a
different salt, so the mirrored share is independent of the split.

The key is the caller's: a header (``x-mlpilot-key``), else a field of the JSON body (:func:`key_from_body`),
else the request id. A key is a string; a number ``42`` (or ``42.0``) is the key ``"42"``, so an outcome
posted later with ``key="42"`` is attributed to the same variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mlpilot.deploy.entities import RoutingConfig, Variant

__all__ = ["BUCKETS", "MAX_KEY", "RouteTable", "bucket", "key_from_body"]

#: Weights are resolved to basis points: 0.01% granularity.
BUCKETS = 10_000
#: Longest assignment key, in characters: a longer header is ignored, a longer body field cut to this.
MAX_KEY = 256


def bucket(salt: str, key: str) -> int:
    """The bucket in ``[0, 10000)`` of ``key`` under ``salt``; the same on every machine and Python version."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=salt.encode()[:64])
    return int.from_bytes(digest.digest(), "big") % BUCKETS


def _as_key(value: Any) -> str | None:
    """A scalar JSON value as an assignment key; a list (one value per row) by its first element."""
    for _ in range(3):  # [[...]]: the rows of an OIP tensor
        if not isinstance(value, list):
            break
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int | str):
        key = str(value)[:MAX_KEY]
        return key or None
    return None


def _first_row_value(doc: dict[str, Any], field: str) -> Any:
    """The ``field`` column of the body's first row, for each way the model server takes rows."""
    for rows_key in ("instances", "dataframe_records", "inputs"):
        rows = doc.get(rows_key)
        if isinstance(rows, dict):  # columns: {"customer_id": [...], ...}
            return rows.get(field)
        if not (isinstance(rows, list) and rows and isinstance(rows[0], dict)):
            continue
        if rows_key == "inputs" and "name" in rows[0] and "datatype" in rows[0]:  # OIP v2 tensors
            return next((t.get("data") for t in rows if isinstance(t, dict) and t.get("name") == field), None)
        return rows[0].get(field)
    split = doc.get("dataframe_split")
    if isinstance(split, dict):
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and field in columns and isinstance(data, list) and data:
            row, index = data[0], columns.index(field)
            return row[index] if isinstance(row, list) and index < len(row) else None
    return None


def key_from_body(body: bytes, field: str) -> str | None:
    """The assignment key ``field`` holds in a JSON inference request body, or None.

    It is looked up where each protocol lets a caller put it, the first found wins: a top-level field
    (``entity_id`` on ``/v1``), the request parameters (``parameters`` in OIP v2, ``params`` in
    ``/invocations``), then the column ``field`` of the first row (``instances`` or ``dataframe_records`` as
    objects, ``inputs`` as columns or as OIP v2 tensors, ``dataframe_split``). A request is assigned as a
    whole: with one value per row, its first row's decides.

    >>> key_from_body(b'{"instances": [[1, 2]], "entity_id": "c-42"}', "entity_id")
    'c-42'
    >>> key_from_body(b'{"dataframe_records": [{"customer_id": 42, "tenure": 3}]}', "customer_id")
    '42'
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    candidates = [doc.get(field)]
    for params_key in ("parameters", "params"):
        params = doc.get(params_key)
        if isinstance(params, dict):
            candidates.append(params.get(field))
    for value in candidates:
        key = _as_key(value)
        if key is not None:
            return key
    return _as_key(_first_row_value(doc, field))


def _basis_points(weight: float) -> int:
    return round(weight * BUCKETS / 100)


@dataclass(frozen=True)
class RouteTable:
    """The routing of one endpoint at one revision: live variants with bucket ranges, and shadows.

    ``live`` holds ``(upper_bucket_exclusive, version)`` in bucket order; ``shadows`` holds
    ``(mirror_buckets, version)``.
    """

    endpoint: str
    revision: int
    rollout: int
    live: tuple[tuple[int, int], ...]
    shadows: tuple[tuple[int, int], ...]
    routing: RoutingConfig
    salt: str
    primary: int

    @classmethod
    def build(
        cls,
        endpoint: str,
        variants: Sequence[Variant],
        *,
        routing: RoutingConfig | None = None,
        revision: int = 0,
        rollout: int = 0,
    ) -> RouteTable:
        """The table for ``variants``; canaries take the low buckets, in version order."""
        routing = routing or RoutingConfig()
        primary = next(v for v in variants if v.role == "primary")
        canaries = sorted((v for v in variants if v.role == "canary"), key=lambda v: v.version)
        ranges: list[tuple[int, int]] = []
        upper = 0
        for v in canaries:
            width = _basis_points(v.weight)
            if width:
                upper += width
                ranges.append((upper, v.version))
        # The primary takes whatever rounding left over, so the ranges always cover every bucket.
        ranges.append((BUCKETS, primary.version))
        shadows = tuple((_basis_points(v.weight), v.version) for v in variants if v.role == "shadow" and v.weight > 0)
        return cls(
            endpoint=endpoint,
            revision=revision,
            rollout=rollout,
            live=tuple(ranges),
            shadows=shadows,
            routing=routing,
            salt=routing.salt or endpoint,
            primary=primary.version,
        )

    def choose(self, key: str) -> int:
        """The version that answers a request with assignment ``key``."""
        b = bucket(self.salt, key)
        for upper, version in self.live:
            if b < upper:
                return version
        return self.primary

    def mirrors(self, key: str) -> list[int]:
        """The shadow versions a request with ``key`` is mirrored to (usually none or one)."""
        if not self.shadows:
            return []
        b = bucket(self.salt + "#shadow", key)
        return [version for width, version in self.shadows if b < width]

    @property
    def versions(self) -> list[int]:
        """Every version this table may send a request to."""
        return sorted({v for _, v in self.live} | {v for _, v in self.shadows})
