"""Leakage reports a logged dataset may carry, read without knowing who wrote them.

A point-in-time training set (``mlpilot.features.get_training_set``) says how its join treated the entity rows:
matches at equal timestamps, rows excluded by availability time, features nulled by a TTL. Tracking stores
that report with the run's dataset input; it reads it *generically*, as a JSON object under one well-known key:

- in an Arrow table's (or record batch's) schema metadata, ``LEAKAGE_REPORT_KEY`` encoded as UTF-8, the value a
  UTF-8 JSON document (it survives a Parquet round trip);
- in a pandas DataFrame's ``attrs``, the same key, the value a dict;
- on any object with ``data`` and ``report`` attributes (a ``TrainingSet``: the only way for polars, whose
  frames carry no metadata), the report's ``to_dict()``.

The contract: a JSON object (at most ``MAX_REPORT_BYTES`` serialized, finite numbers only) with a non-negative
integer ``entity_rows`` and a ``totals`` object holding non-negative integers ``equal_timestamp``,
``excluded_by_availability`` and ``ttl_expired``; other keys (``views``, ``strict``, ``embargo_seconds``...)
travel as they are. Anything else is refused with an InvalidInputError naming ``leakage_report``.

>>> report = {"entity_rows": 3, "totals": {"equal_timestamp": 1, "excluded_by_availability": 0, "ttl_expired": 2}}
>>> leakage_summary(check_leakage_report(report))
'1 equal-timestamp match, 0 excluded by availability, 2 TTL nulls'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlpilot.errors import InvalidInputError

__all__ = [
    "LEAKAGE_REPORT_KEY",
    "MAX_REPORT_BYTES",
    "check_leakage_report",
    "embedded_leakage_report",
    "leakage_summary",
]

#: The metadata key (Arrow schema metadata, as UTF-8 bytes; pandas ``attrs``) holding a leakage report.
LEAKAGE_REPORT_KEY = "mlpilot.leakage_report"
#: A report is a few counts per feature view; anything larger is not one and would bloat every run read.
MAX_REPORT_BYTES = 64 * 1024
TOTALS = ("equal_timestamp", "excluded_by_availability", "ttl_expired")

_FIELD = "leakage_report"


def _refuse(message: str) -> InvalidInputError:
    return InvalidInputError(f"leakage_report: {message}", field=_FIELD)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _refuse(f"{where} must be a non-negative integer, got {value!r:.80}")
    return value


def check_leakage_report(value: Any) -> dict[str, Any]:
    """``value`` (a mapping, a JSON text or bytes, or an object with ``to_dict()``) as a checked plain dict.

    Raises InvalidInputError (field ``leakage_report``) when it breaks the contract in the module docstring.
    """
    if hasattr(value, "to_dict") and not isinstance(value, Mapping):
        value = value.to_dict()
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _refuse("metadata is not UTF-8 text") from exc
    if isinstance(value, str):
        if len(value) > MAX_REPORT_BYTES:
            raise _refuse(f"larger than {MAX_REPORT_BYTES} bytes")
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise _refuse(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise _refuse(f"expected a JSON object, got {type(value).__name__}")
    try:
        # A JSON round trip: tuples become lists, keys must be strings, and the stored copy is the caller's no more.
        text = json.dumps(dict(value), allow_nan=False, sort_keys=True)
    except TypeError as exc:
        raise _refuse(f"not JSON-serializable: {exc}") from exc
    except ValueError as exc:  # JSON has no NaN or infinity: not every client could read such a report back
        raise _refuse("numbers must be finite") from exc
    if len(text.encode()) > MAX_REPORT_BYTES:
        raise _refuse(f"larger than {MAX_REPORT_BYTES} bytes")
    report: dict[str, Any] = json.loads(text)
    _count(report.get("entity_rows"), "entity_rows")
    totals = report.get("totals")
    if not isinstance(totals, dict):
        raise _refuse(f"expected a 'totals' object, got {type(totals).__name__}")
    for key in TOTALS:
        _count(totals.get(key), f"totals.{key}")
    return report


def embedded_leakage_report(data: Any) -> tuple[Any, Any]:
    """``(data, raw report or None)``: unwraps a ``TrainingSet``-like object and finds the report ``data`` carries.

    The raw report is not checked here; pass it to :func:`check_leakage_report`.
    """
    if hasattr(data, "data") and hasattr(data, "report") and not hasattr(data, "columns"):
        return data.data, data.report
    schema = getattr(data, "schema", None)
    metadata = getattr(schema, "metadata", None)
    if isinstance(metadata, Mapping) and type(data).__module__.startswith("pyarrow"):
        return data, metadata.get(LEAKAGE_REPORT_KEY.encode())
    attrs = getattr(data, "attrs", None)
    if isinstance(attrs, Mapping) and type(data).__module__.startswith("pandas"):
        return data, attrs.get(LEAKAGE_REPORT_KEY)
    return data, None


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def leakage_summary(report: Mapping[str, Any], num_rows: int | None = None) -> str:
    """One human line: ``12 equal-timestamp matches, 3 excluded by availability, 40 TTL nulls``.

    With ``num_rows`` (the logged dataset's) differing from the report's ``entity_rows``, the line says so: the
    rows were filtered or extended after the join the report describes.
    """
    totals = report.get("totals", {})
    line = ", ".join(
        [
            _plural(int(totals.get("equal_timestamp", 0)), "equal-timestamp match", "equal-timestamp matches"),
            f"{int(totals.get('excluded_by_availability', 0))} excluded by availability",
            _plural(int(totals.get("ttl_expired", 0)), "TTL null", "TTL nulls"),
        ]
    )
    entity_rows = report.get("entity_rows")
    if num_rows is not None and isinstance(entity_rows, int) and entity_rows != num_rows:
        line += f" (report covers {entity_rows} rows, dataset has {num_rows})"
    return line
