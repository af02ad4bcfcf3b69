"""Windows of served traffic: rows of the prediction log, by time or row count, joined with their labels.

A window is one endpoint (the served model name) and one model version, over a time range and/or the most
recent N rows. Its table has one row per predicted row, with the log's inputs and outputs flattened into
columns (named as in the training sample, so it compares with the reference directly), the declared segment
fields (from the request's ``segments``, else from an input of that name), the label when one arrived, and the
metadata columns ``request_id``, ``row``, ``time``, ``version``, ``latency_ms``, ``entity_id``::

    >>> window = read_window(LogLocation("/srv/predictions"), "churn", WindowSpec(last_rows=5000),
    ...                      segments=["region"])  # doctest: +SKIP
    >>> window.rows, window.version, window.labeled_rows  # doctest: +SKIP
    (5000, 3, 1200)

DuckDB reads the segments: partition pruning on version and date, projection of the needed columns only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.monitor._logfs import LogLocation, arrow_result, check_endpoint, quote, sql_string

__all__ = ["MAX_TIME_MS", "META_COLUMNS", "Window", "WindowSpec", "latest_version", "read_window"]

#: The last millisecond of year 9999: later times are typos, and DuckDB cannot represent them anyway.
MAX_TIME_MS = 253_402_300_799_999
#: Columns every window has besides inputs, outputs, segments and the label.
META_COLUMNS = ("request_id", "row", "time", "version", "latency_ms", "entity_id")


@dataclass(frozen=True)
class WindowSpec:
    """Which rows: ``[since_ms, until_ms)`` in epoch milliseconds and/or the newest ``last_rows``; a version.

    With neither a time range nor a row count, the window is the whole log of the version.
    """

    last_rows: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        for name in ("since_ms", "until_ms"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_TIME_MS:
                raise InvalidInputError(
                    f"{name.removesuffix('_ms')}: expected epoch milliseconds between 0 and {MAX_TIME_MS}, got {value}",
                    field=name.removesuffix("_ms"),
                )
        if self.version is not None and self.version > 2**31 - 1:
            raise InvalidInputError(f"version: expected a version number, got {self.version}", field="version")
        if self.last_rows is not None and self.last_rows < 1:
            raise InvalidInputError(
                f"last_rows: expected a positive row count, got {self.last_rows}", field="last_rows"
            )
        if self.since_ms is not None and self.until_ms is not None and self.until_ms <= self.since_ms:
            raise InvalidInputError("until: expected a time after 'since'", field="until")
        if self.version is not None and self.version < 1:
            raise InvalidInputError(f"version: expected a version number >= 1, got {self.version}", field="version")

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_rows": self.last_rows,
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "version": self.version,
        }


@dataclass
class Window:
    """The rows of one window as an Arrow table, and what they cover."""

    endpoint: str
    version: int | None
    table: Any  # pyarrow.Table
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    label: str | None = None
    labeled_rows: int = 0
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    def features_table(self, keep: Sequence[str]) -> Any:
        """The table restricted to ``keep`` (inputs, the prediction, the label, segment fields), in order."""
        names = [c for c in dict.fromkeys(keep) if c in self.table.column_names]
        return self.table.select(names)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _ts(ms: int) -> str:
    return f"make_timestamptz({int(ms) * 1000}::BIGINT)"


def _source(location: LogLocation, endpoint: str, spec: WindowSpec) -> str:
    glob = location.endpoint_glob(endpoint, spec.version)
    return f"read_parquet({sql_string(glob)}, hive_partitioning = true, union_by_name = true)"


def _filters(spec: WindowSpec) -> str:
    where = ["TRUE"]
    if spec.since_ms is not None:
        # The date partition prunes whole folders; the time filter then uses row-group statistics.
        where.append(f"date >= DATE {sql_string(_day(spec.since_ms))}")
        where.append(f"time >= {_ts(spec.since_ms)}")
    if spec.until_ms is not None:
        where.append(f"date <= DATE {sql_string(_day(spec.until_ms))}")
        where.append(f"time < {_ts(spec.until_ms)}")
    return " AND ".join(where)


def latest_version(location: LogLocation, endpoint: str) -> int | None:
    """The model version of the newest row in the endpoint's log, or None when it has no log."""
    check_endpoint(endpoint)
    if not location.has_segments(location.endpoint_dir(endpoint)):
        return None
    with location.query() as con:
        source = _source(location, endpoint, WindowSpec())
        row = con.execute(f"SELECT version FROM {source} ORDER BY time DESC, version DESC LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def _struct_fields(con: Any, source: str, column: str) -> list[str]:
    described = con.execute(f"DESCRIBE SELECT {quote(column)} FROM {source}").fetchall()
    if not described:
        return []
    duckdb_type = str(described[0][1])
    if not duckdb_type.startswith("STRUCT("):
        return []
    rel = con.execute(f"SELECT {quote(column)}.* FROM {source} LIMIT 0")
    return [str(d[0]) for d in rel.description]


def _empty(endpoint: str, version: int | None) -> Window:
    import pyarrow as pa

    return Window(endpoint, version, pa.table({c: pa.array([], pa.string()) for c in ("request_id",)}))


def read_window(
    location: LogLocation,
    endpoint: str,
    spec: WindowSpec,
    *,
    segments: Sequence[str] = (),
    label: str | None = "label",
) -> Window:
    """Read one window of ``endpoint``'s log (see the module docstring).

    ``spec.version`` None means the version of the newest row. ``label`` names the label column (None: do not
    join labels). The newest label of each (request id, row) wins.
    """
    check_endpoint(endpoint)
    version = spec.version if spec.version is not None else latest_version(location, endpoint)
    if version is None or not location.has_segments(f"{location.endpoint_dir(endpoint)}/version={version}"):
        return _empty(endpoint, version)
    spec = WindowSpec(spec.last_rows, spec.since_ms, spec.until_ms, version)
    source = _source(location, endpoint, spec)
    with location.query() as con:
        inputs = _struct_fields(con, source, "inputs")
        outputs = _struct_fields(con, source, "outputs")
        taken = set(META_COLUMNS) | set(inputs)
        select = [quote(c) for c in META_COLUMNS]
        select += [f"inputs.{quote(c)} AS {quote(c)}" for c in inputs]
        out_names: list[str] = []
        for name in outputs:
            alias = name if name not in taken else f"outputs.{name}"
            taken.add(alias)
            out_names.append(alias)
            select.append(f"outputs.{quote(name)} AS {quote(alias)}")
        for seg in dict.fromkeys(segments):
            from_map = f"element_at(segments, {sql_string(seg)})[1]"
            if seg in inputs:
                # A segment field that is also an input: the request's value wins, the input fills the gaps.
                select[select.index(f"inputs.{quote(seg)} AS {quote(seg)}")] = (
                    f"coalesce({from_map}, CAST(inputs.{quote(seg)} AS VARCHAR)) AS {quote(seg)}"
                )
            elif seg in taken:
                raise InvalidInputError(f"segments: {seg!r} is already a column of the log", field="segments")
            else:
                select.append(f"{from_map} AS {quote(seg)}")
                taken.add(seg)
        limit = f"LIMIT {int(spec.last_rows)}" if spec.last_rows is not None else ""
        window_sql = (
            f"SELECT {', '.join(select)} FROM {source} WHERE {_filters(spec)} "
            f"ORDER BY time DESC, request_id, {quote('row')} {limit}"
        )
        label_name: str | None = None
        if label is not None and location.has_segments(location.labels_dir(endpoint)):
            if label in taken:
                raise InvalidInputError(
                    f"label: {label!r} is already a column of the log; configure another label column name",
                    field="label",
                )
            labels_src = f"read_parquet({sql_string(location.labels_glob(endpoint))}, union_by_name = true)"
            sql = (
                f"WITH w AS ({window_sql}), "
                f"l AS (SELECT request_id, {quote('row')}, arg_max(label, labeled_at) AS label, "
                f"arg_max(label_value, labeled_at) AS label_value FROM {labels_src} "
                f"WHERE request_id IN (SELECT request_id FROM w) GROUP BY ALL) "
                f"SELECT w.*, l.label AS __label, l.label_value AS __label_value "
                f"FROM w LEFT JOIN l USING (request_id, {quote('row')}) ORDER BY w.time, w.request_id, w.{quote('row')}"
            )
            table = arrow_result(con, sql)
            table, labeled = _label_column(table, label)
            label_name = label
        else:
            table = arrow_result(con, f"SELECT * FROM ({window_sql}) ORDER BY time, request_id, {quote('row')}")
            labeled = 0
    start, end = _time_range(table)
    return Window(
        endpoint,
        version,
        table,
        inputs=list(inputs),
        outputs=out_names,
        segments=list(dict.fromkeys(segments)),
        label=label_name,
        labeled_rows=labeled,
        start_ms=start,
        end_ms=end,
    )


def _label_column(table: Any, name: str) -> tuple[Any, int]:
    """Labels as numbers when every label present is a number (so regression works), else as strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = table.column("__label")
    value = table.column("__label_value")
    labeled = len(text) - text.null_count
    numeric = labeled > 0 and value.null_count == text.null_count
    if numeric:
        column = pc.cast(value, pa.float64())
    elif labeled == 0:
        column = pa.nulls(len(text), pa.float64())
    else:
        column = pc.cast(text, pa.string())
    table = table.drop_columns(["__label", "__label_value"])
    return table.append_column(name, column), int(labeled)


def _time_range(table: Any) -> tuple[int | None, int | None]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0 or "time" not in table.column_names:
        return None, None
    bounds = pc.min_max(pc.cast(table.column("time"), pa.timestamp("ms", tz="UTC")).cast(pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return None, None
    return int(low), int(high)
