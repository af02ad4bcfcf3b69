"""Push: write fresh feature rows online now, and append them to the view's offline Parquet log.

    >>> push(txn_stats, [{"customer_id": 42, "event_time": now, "amount_7d": 12.5}],   # doctest: +SKIP
    ...      store=store, offline_log="data/pushed")

The log gets one Parquet file per push under ``<offline_log>/<view>/``, written to a temporary name and
renamed, so readers never see half a file and file names sort in push order. Point the view's source at it
(``ParquetSource(["history/*.parquet", "data/pushed/txn_stats/*.parquet"])``) and training sets see pushed
rows exactly as the online store did. The log is written first: if the online write then fails, retrying the
push only duplicates identical rows, which the join resolves to the same value.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError, StoreError
from mlpilot.features._codec import PayloadCodec, encode_key, online_columns, store_of
from mlpilot.features._frames import to_arrow
from mlpilot.features.catalog import Definitions
from mlpilot.features.definitions import FeatureView
from mlpilot.features.online.base import OnlineStore, StoredRow

__all__ = ["PushResult", "push"]

_ARROW_TYPES = {
    "bool": "bool_",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "float32": "float32",
    "float64": "float64",
    "string": "string",
    "date": "date32",
}


@dataclass(frozen=True)
class PushResult:
    """Rows received, entities written online, and the offline log file (if any)."""

    rows: int
    online_rows: int
    log_file: Path | None


def push(
    view: FeatureView | str,
    data: Any,
    *,
    store: OnlineStore | str | None = None,
    offline_log: str | Path | None = None,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> PushResult:
    """Validate ``data`` against ``view``, append it to the offline log, upsert the latest row per entity.

    ``data`` holds the join keys, the timestamp field and every feature of the view (an Arrow table, a pandas
    or polars DataFrame, or row dicts). A view with an availability column gets ``now`` where the column is
    missing.
    """
    if isinstance(view, str):
        if definitions is None:
            raise InvalidInputError(f"view: {view!r} is a name; pass definitions=... to resolve it", field="view")
        view = definitions.view(view)
    elif definitions is not None:
        view = definitions.resolve_view(view)
    now_dt = now or datetime.now(UTC)
    table = _conform(view, to_arrow(data, field="data"), now_dt)
    log_file = None if offline_log is None else _append_log(Path(offline_log), view.name, table, now_dt)
    latest = _latest_rows(view, table)
    online, opened = store_of(store)
    try:
        online.write_batch(view.name, latest)
    finally:
        if opened:
            online.close()
    return PushResult(table.num_rows, len(latest), log_file)


def _conform(view: FeatureView, table: Any, now: datetime) -> Any:
    """``table`` with exactly the view's columns, cast to their declared types (timestamps: UTC, µs)."""
    import pyarrow as pa

    ts_type = pa.timestamp("us", tz="UTC")
    columns: dict[str, Any] = {}

    def take(name: str, target: Any, role: str) -> None:
        if name not in table.column_names:
            raise InvalidInputError(f"push to {view.name!r}: missing column {name!r} ({role})", field=f"data.{name}")
        column = table.column(name)
        if (
            target is not None
            and pa.types.is_timestamp(target)
            and pa.types.is_timestamp(column.type)
            and column.type.tz is None
        ):
            column = column.cast(pa.timestamp("us"))  # naive times are UTC
        try:
            columns[name] = column if target is None else column.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InvalidInputError(
                f"push to {view.name!r}: column {name!r} ({role}) cannot be read as {target}: {exc}",
                field=f"data.{name}",
            ) from exc
        if role in ("join key", "timestamp_field") and columns[name].null_count:
            raise InvalidInputError(f"push to {view.name!r}: {role} {name!r} has nulls", field=f"data.{name}")
        kind = columns[name].type
        if role == "join key" and not (
            pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        ):
            raise InvalidInputError(
                f"push to {view.name!r}: join key {name!r} has type {kind}; expected integers or strings",
                field=f"data.{name}",
            )

    for key in view.join_keys:
        take(key, None, "join key")
    take(view.timestamp_field, ts_type, "timestamp_field")
    if view.available_at_field is not None:
        if view.available_at_field in table.column_names:
            take(view.available_at_field, ts_type, "available_at_field")
        else:
            columns[view.available_at_field] = pa.array([now] * table.num_rows, ts_type)
    for feature in view.features:
        target = ts_type if feature.dtype == "timestamp" else getattr(pa, _ARROW_TYPES[feature.dtype])()
        take(feature.name, target, f"feature {feature.dtype}")
    return pa.table(columns)


def _append_log(root: Path, view: str, table: Any, now: datetime) -> Path:
    import pyarrow.parquet as pq

    folder = root / view
    name = f"{now.astimezone(UTC):%Y%m%dT%H%M%S%f}-{time.monotonic_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    target = folder / name
    tmp = folder / f".{name}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"push to {view!r}: cannot write the offline log {target}: {exc}") from exc
    return target


def _latest_rows(view: FeatureView, table: Any) -> list[StoredRow]:
    """Per entity, the pushed row with the greatest (event_time, available_at); later rows win ties."""
    import pyarrow as pa

    keys = view.join_keys
    key_columns = [table.column(k).to_pylist() for k in keys]
    event_times = table.column(view.timestamp_field).cast(pa.int64()).to_pylist()
    available = (
        event_times
        if view.available_at_field is None
        else table.column(view.available_at_field).cast(pa.int64()).to_pylist()
    )
    best: dict[str, int] = {}
    rank: dict[str, tuple[int, int]] = {}
    for i in range(table.num_rows):
        if event_times[i] is None or available[i] is None:
            continue
        key = encode_key([col[i] for col in key_columns], keys)
        candidate = (event_times[i], available[i])
        if key not in rank or candidate >= rank[key]:
            rank[key] = candidate
            best[key] = i
    names = view.feature_names
    codec = PayloadCodec(view)
    values = list(online_columns(table, view, names))
    rows: Sequence[StoredRow] = [
        StoredRow(
            key,
            event_times[i],
            available[i],
            codec.encode([column[i] for column in values]),
        )
        for key, i in best.items()
    ]
    return list(rows)
