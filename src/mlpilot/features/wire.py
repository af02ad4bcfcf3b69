"""Online feature values on the wire: JSON both ways, losing nothing.

Timestamps travel as ISO 8601 strings (UTC), dates as ``YYYY-MM-DD``, and the floats JSON cannot hold as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; the declared dtype of each column travels alongside, so
:func:`columns_from_json` restores exactly what :func:`~mlpilot.features.get_online_features` returned.

    >>> from datetime import UTC, datetime
    >>> doc = columns_to_json({"t": [datetime(2024, 1, 1, tzinfo=UTC)], "x": [float("nan")]},
    ...                       {"t": "timestamp", "x": "float64"})
    >>> doc
    {'t': ['2024-01-01T00:00:00+00:00'], 'x': ['NaN']}
    >>> columns_from_json(doc, {"t": "timestamp", "x": "float64"})["t"]
    [datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from mlpilot.errors import InvalidInputError

__all__ = ["columns_from_json", "columns_to_json"]

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float_out(value: Any) -> Any:
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def columns_to_json(columns: Mapping[str, Sequence[Any]], dtypes: Mapping[str, str]) -> dict[str, list[Any]]:
    """JSON-safe copies of ``columns``; ``dtypes`` names the dtype of each feature column (keys pass as is)."""
    out: dict[str, list[Any]] = {}
    for name, values in columns.items():
        dtype = dtypes.get(name)
        if dtype in ("timestamp", "date"):
            out[name] = [None if v is None else v.isoformat() for v in values]
        elif dtype in ("float32", "float64"):
            out[name] = [_float_out(v) for v in values]
        else:
            out[name] = list(values)
    return out


def columns_from_json(columns: Mapping[str, Sequence[Any]], dtypes: Mapping[str, str]) -> dict[str, list[Any]]:
    """The Python values of columns written by :func:`columns_to_json`."""
    out: dict[str, list[Any]] = {}
    for name, values in columns.items():
        dtype = dtypes.get(name)
        try:
            if dtype == "timestamp":
                out[name] = [None if v is None else datetime.fromisoformat(v) for v in values]
            elif dtype == "date":
                out[name] = [None if v is None else date.fromisoformat(v) for v in values]
            elif dtype in ("float32", "float64"):
                out[name] = [_SPECIAL[v] if isinstance(v, str) else v for v in values]
            else:
                out[name] = list(values)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"columns.{name}: not a {dtype} column: {exc}", field=f"columns.{name}") from exc
    return out
