"""Late labels: validated against the prediction log, then stored as append-only Parquet segments.

A label names the prediction it belongs to either by request id (plus the row within the request when the
request had several rows), or by entity and time: the entity's latest prediction at or before that time. A
whole batch is resolved and checked first; a label for a request id or entity the log has never seen rejects
the batch with an error naming it, and nothing is written.

Stored next to the log under ``_labels/model=<endpoint>/`` with columns ``request_id``, ``row``, ``label`` (the
value as text, spelled as mlpilot spells class labels), ``label_value`` (the value as a number, or null),
``labeled_at`` (nanoseconds; the newest label of a prediction wins) and ``actor``.

>>> batch = LabelBatch.from_request_ids(["9f0c…", "77ab…"], [1, 0])  # doctest: +SKIP
>>> receipt = store_labels(location, batch, actor="etl")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlpilot.errors import InvalidInputError, NotFoundError
from mlpilot.monitor._logfs import LogLocation, check_endpoint, quote, sql_string
from mlpilot.monitor.windows import MAX_TIME_MS

__all__ = ["LabelBatch", "LabelItem", "LabelReceipt", "label_text", "store_labels"]

MAX_BATCH = 100_000
LabelValue = bool | int | float | str


def label_text(value: LabelValue) -> str:
    """A label as text, spelled like predictions are when compared: ``1.0`` and ``1`` are ``"1"``, booleans
    ``"true"``/``"false"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value


def _label_number(value: LabelValue) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


class LabelItem(BaseModel):
    """One label: ``request_id`` (and ``row``), or ``entity_id`` and ``time`` (epoch ms or ISO 8601)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: LabelValue
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    row: int | None = Field(default=None, ge=0, le=2**31 - 1)
    entity_id: str | None = Field(default=None, min_length=1, max_length=256)
    time: Annotated[int, Field(ge=0, le=MAX_TIME_MS)] | datetime | None = None

    @model_validator(mode="after")
    def _keyed_once(self) -> LabelItem:
        if isinstance(self.label, float) and not math.isfinite(self.label):
            raise ValueError("label: expected a finite number, a string or a boolean")
        if isinstance(self.label, str) and not (0 < len(self.label) <= 256):
            raise ValueError("label: expected 1-256 characters")
        by_request = self.request_id is not None
        by_entity = self.entity_id is not None or self.time is not None
        if by_request == by_entity:
            raise ValueError("expected either request_id (and optionally row) or entity_id and time")
        if by_entity and (self.entity_id is None or self.time is None):
            raise ValueError("a label keyed by entity needs both entity_id and time")
        if by_entity and self.row is not None:
            raise ValueError("row: only with request_id")
        return self

    @property
    def time_ms(self) -> int | None:
        if self.time is None:
            return None
        if isinstance(self.time, datetime):
            moment = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
        return int(self.time)


class LabelBatch(BaseModel):
    """Labels sent together; ``endpoint`` limits the lookup to one endpoint's log (faster, and unambiguous)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    labels: list[LabelItem] = Field(min_length=1, max_length=MAX_BATCH)
    endpoint: str | None = Field(default=None, max_length=128)

    @classmethod
    def from_request_ids(
        cls,
        request_ids: Sequence[str],
        labels: Sequence[LabelValue],
        *,
        rows: Sequence[int | None] | None = None,
        endpoint: str | None = None,
    ) -> LabelBatch:
        _same_length(("request_ids", request_ids), ("labels", labels), ("rows", rows))
        rows_ = list(rows) if rows is not None else [None] * len(labels)
        items = [
            _item(label=_plain(v), request_id=str(r), row=row)
            for r, v, row in zip(request_ids, labels, rows_, strict=True)
        ]
        return _batch(items, endpoint)

    @classmethod
    def from_entities(
        cls,
        entity_ids: Sequence[str],
        times: Sequence[int | datetime],
        labels: Sequence[LabelValue],
        *,
        endpoint: str | None = None,
    ) -> LabelBatch:
        _same_length(("entity_ids", entity_ids), ("times", times), ("labels", labels))
        items = [
            _item(label=_plain(v), entity_id=str(e), time=t) for e, t, v in zip(entity_ids, times, labels, strict=True)
        ]
        return _batch(items, endpoint)


def _plain(value: Any) -> Any:
    """NumPy scalars to Python ones (``np.int64(1)`` is not an ``int``)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str | bytes) else value


def _item(**values: Any) -> LabelItem:
    from pydantic import ValidationError

    try:
        return LabelItem(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "labels"
        raise InvalidInputError(f"{where}: {first['msg']}", field=where) from exc


def _batch(items: list[LabelItem], endpoint: str | None) -> LabelBatch:
    from pydantic import ValidationError

    try:
        return LabelBatch(labels=items, endpoint=endpoint)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "labels"
        raise InvalidInputError(f"{where}: {first['msg']}", field=where) from exc


def _same_length(*named: tuple[str, Sequence[Any] | None]) -> None:
    present = [(n, len(v)) for n, v in named if v is not None]
    first_name, first_len = present[0]
    for name, length in present[1:]:
        if length != first_len:
            raise InvalidInputError(
                f"{name}: expected {first_len} values, one per entry of {first_name}, got {length}", field=name
            )


class LabelReceipt(BaseModel):
    """What was stored: label counts per endpoint."""

    model_config = ConfigDict(frozen=True)

    stored: int
    endpoints: dict[str, int]


@dataclass(frozen=True)
class _Resolved:
    endpoint: str
    request_id: str
    row: int


def _show(values: list[str], limit: int = 5) -> str:
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(repr(v) for v in values[:limit]) + more


def _resolve_requests(con: Any, source: str, items: list[tuple[int, LabelItem]], out: dict[int, _Resolved]) -> None:
    import pyarrow as pa

    ids = sorted({item.request_id for _, item in items if item.request_id is not None})
    keys = pa.table({"request_id": pa.array(ids, pa.string())})
    con.register("request_keys", keys)
    found = con.execute(
        f"SELECT model, request_id, max({quote('row')}) + 1 AS n FROM {source} "
        f"WHERE request_id IN (SELECT request_id FROM request_keys) GROUP BY ALL"
    ).fetchall()
    where: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for model, request_id, n in found:
        where[str(request_id)].append((str(model), int(n)))
    unknown = [r for r in ids if r not in where]
    if unknown:
        raise NotFoundError(
            f"request_id: {len(unknown)} label(s) name request ids the prediction log has never seen "
            f"({_show(unknown)}); nothing was stored",
            field="request_id",
            unknown=unknown[:100],
        )
    for index, item in items:
        assert item.request_id is not None
        places = where[item.request_id]
        if len(places) > 1:
            raise InvalidInputError(
                f"request_id: {item.request_id!r} is in the logs of {sorted(p[0] for p in places)}; "
                "say which endpoint the labels are for",
                field="endpoint",
            )
        endpoint, rows = places[0]
        row = item.row
        if row is None:
            if rows > 1:
                raise InvalidInputError(
                    f"row: request {item.request_id!r} predicted {rows} rows; give the row of each label",
                    field="row",
                )
            row = 0
        elif row >= rows:
            raise InvalidInputError(
                f"row: request {item.request_id!r} predicted {rows} row(s), so row {row} does not exist",
                field="row",
            )
        out[index] = _Resolved(endpoint, item.request_id, row)


def _resolve_entities(con: Any, source: str, items: list[tuple[int, LabelItem]], out: dict[int, _Resolved]) -> None:
    import pyarrow as pa

    keys = pa.table(
        {
            "i": pa.array([i for i, _ in items], pa.int64()),
            "entity_id": pa.array([item.entity_id for _, item in items], pa.string()),
            "t": pa.array([item.time_ms for _, item in items], pa.timestamp("ms", tz="UTC")),
        }
    )
    con.register("entity_keys", keys)
    # The prediction a label belongs to: the entity's latest one at or before the label's time.
    found = con.execute(
        f"WITH p AS (SELECT model, request_id, {quote('row')}, entity_id, time FROM {source} "
        f"WHERE entity_id IN (SELECT entity_id FROM entity_keys)) "
        f"SELECT k.i, p.model, p.request_id, p.{quote('row')} FROM entity_keys k "
        f"ASOF JOIN p ON k.entity_id = p.entity_id AND k.t >= p.time"
    ).fetchall()
    for i, model, request_id, row in found:
        out[int(i)] = _Resolved(str(model), str(request_id), int(row))
    missing = [items_i for items_i, _ in items if items_i not in out]
    if missing:
        by_index = dict(items)
        names = [f"{by_index[i].entity_id}@{by_index[i].time_ms}" for i in missing]
        raise NotFoundError(
            f"entity_id: {len(missing)} label(s) match no prediction for that entity at or before their time "
            f"({_show(names)}); nothing was stored",
            field="entity_id",
            unknown=names[:100],
        )


def store_labels(location: LogLocation, batch: LabelBatch, *, actor: str = "local") -> LabelReceipt:
    """Resolve every label of ``batch`` to a logged prediction, then append them; all or nothing."""
    import pyarrow as pa

    if batch.endpoint is not None:
        check_endpoint(batch.endpoint)
        if not location.has_segments(location.endpoint_dir(batch.endpoint)):
            raise NotFoundError(f"endpoint: no prediction log for {batch.endpoint!r}", field="endpoint")
    elif not location.endpoints():
        raise NotFoundError("labels: the prediction log is empty: there is nothing to label", field="labels")
    glob = location.endpoint_glob(batch.endpoint)
    source = f"read_parquet({sql_string(glob)}, hive_partitioning = true, union_by_name = true)"
    by_request = [(i, item) for i, item in enumerate(batch.labels) if item.request_id is not None]
    by_entity = [(i, item) for i, item in enumerate(batch.labels) if item.request_id is None]
    resolved: dict[int, _Resolved] = {}
    with location.query() as con:
        if by_request:
            _resolve_requests(con, source, by_request, resolved)
        if by_entity:
            _resolve_entities(con, source, by_entity, resolved)
    keys = Counter((r.endpoint, r.request_id, r.row) for r in resolved.values())
    twice = [f"{rid}#{row}" for (_, rid, row), n in keys.items() if n > 1]
    if twice:
        raise InvalidInputError(
            f"labels: {len(twice)} prediction(s) are labeled more than once in this batch ({_show(twice)}); "
            "nothing was stored",
            field="labels",
        )
    groups: dict[str, list[int]] = defaultdict(list)
    for index in sorted(resolved):
        groups[resolved[index].endpoint].append(index)
    stamp = time.time_ns()
    tables: dict[str, Any] = {}
    for endpoint, indices in groups.items():
        values = [batch.labels[i].label for i in indices]
        tables[endpoint] = pa.table(
            {
                "request_id": pa.array([resolved[i].request_id for i in indices], pa.string()),
                "row": pa.array([resolved[i].row for i in indices], pa.int32()),
                "label": pa.array([label_text(v) for v in values], pa.string()),
                "label_value": pa.array([_label_number(v) for v in values], pa.float64()),
                "labeled_at": pa.array([stamp] * len(indices), pa.int64()),
                "actor": pa.array([actor] * len(indices), pa.string()),
            }
        )
    # Everything is resolved and checked: only now is anything written.
    for endpoint, table in tables.items():
        location.write_parquet(location.labels_dir(endpoint), table)
    return LabelReceipt(stored=len(resolved), endpoints={e: len(i) for e, i in groups.items()})
