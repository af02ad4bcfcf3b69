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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from mlpilot.deploy.entities import RoutingConfig, Variant

__all__ = ["BUCKETS", "RouteTable", "bucket"]

#: Weights are resolved to basis points: 0.01% granularity.
BUCKETS = 10_000


def bucket(salt: str, key: str) -> int:
    """The bucket in ``[0, 10000)`` of ``key`` under ``salt``; the same on every machine and Python version."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=salt.encode()[:64])
    return int.from_bytes(digest.digest(), "big") % BUCKETS


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
