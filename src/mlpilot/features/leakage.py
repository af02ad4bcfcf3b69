"""The leakage report attached to every training set: how the point-in-time join treated the entity rows.

    >>> report = LeakageReport(entity_rows=3, views={"txn": ViewLeakage(matched=3, equal_timestamp=1)})
    >>> report.equal_timestamp, report.to_dict()["views"]["txn"]["no_match"]
    (1, 0)

Per view:

- ``matched``: entity rows that found a feature row (before TTL);
- ``no_match``: entity rows with no feature row at or before their time (or a null join key);
- ``equal_timestamp``: matches whose event time (or availability time) equals the entity row's as-of time: the
  borderline case where a feature computed from the label's own event could leak; ``strict=True`` or an
  ``embargo`` excludes them;
- ``excluded_by_availability``: entity rows for which a newer (or corrected) feature row existed by event time
  but was not yet available, so an older value (or none) was used: the leak bitemporality prevents;
- ``ttl_expired``: entity rows whose latest feature row was older than the view's TTL, so the features are
  null.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mlpilot.tracking.leakage import LEAKAGE_REPORT_KEY

__all__ = ["REPORT_METADATA_KEY", "LeakageReport", "ViewLeakage"]

#: The Arrow schema metadata key; tracking reads the same key (and pandas ``attrs[LEAKAGE_REPORT_KEY]``), so
#: ``run.log_dataset`` stores the report with the run's dataset input.
REPORT_METADATA_KEY = LEAKAGE_REPORT_KEY.encode()


@dataclass(frozen=True)
class ViewLeakage:
    """Counts for one feature view (see the module docstring)."""

    matched: int = 0
    no_match: int = 0
    equal_timestamp: int = 0
    excluded_by_availability: int = 0
    ttl_expired: int = 0


@dataclass(frozen=True)
class LeakageReport:
    """Counts per feature view for one training set, plus totals over views."""

    entity_rows: int
    views: dict[str, ViewLeakage] = field(default_factory=dict)
    strict: bool = False
    embargo_seconds: float = 0.0

    @property
    def equal_timestamp(self) -> int:
        return sum(v.equal_timestamp for v in self.views.values())

    @property
    def excluded_by_availability(self) -> int:
        return sum(v.excluded_by_availability for v in self.views.values())

    @property
    def ttl_expired(self) -> int:
        return sum(v.ttl_expired for v in self.views.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_rows": self.entity_rows,
            "strict": self.strict,
            "embargo_seconds": self.embargo_seconds,
            "totals": {
                "equal_timestamp": self.equal_timestamp,
                "excluded_by_availability": self.excluded_by_availability,
                "ttl_expired": self.ttl_expired,
            },
            "views": {name: asdict(view) for name, view in self.views.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeakageReport:
        return cls(
            entity_rows=int(data["entity_rows"]),
            views={name: ViewLeakage(**counts) for name, counts in data["views"].items()},
            strict=bool(data.get("strict", False)),
            embargo_seconds=float(data.get("embargo_seconds", 0.0)),
        )

    @classmethod
    def from_arrow(cls, table: Any) -> LeakageReport | None:
        """The report stored in an Arrow table's schema metadata (it survives a Parquet round trip)."""
        metadata = table.schema.metadata or {}
        raw = metadata.get(REPORT_METADATA_KEY)
        return None if raw is None else cls.from_dict(json.loads(raw))
