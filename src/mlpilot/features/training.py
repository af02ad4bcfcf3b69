"""Point-in-time-correct training sets: for each entity row, each view's latest row known at that time.

    >>> ts = get_training_set(entity_df, [txn_stats, "profile:age"], definitions=defs)  # doctest: +SKIP
    >>> ts.data            # a pyarrow.Table (output="pandas" / "polars" on request)  # doctest: +SKIP
    >>> ts.report.excluded_by_availability  # doctest: +SKIP

Semantics, for an entity row with time ``t`` and as-of time ``T = t - embargo``, and each view:

1. candidates are the view's rows with the same join keys, ``event_time <= T`` and, when the view has an
   ``available_at_field``, ``available_at <= T`` (both ``<`` with ``strict=True``); rows with a null
   availability time never qualify;
2. the winner is the candidate with the greatest ``(event_time, available_at)``, then the later row in the
source;
3. if the view has a TTL and the winner's ``event_time < T - ttl``, the features are null.

The bitemporal case is not a plain ASOF join: the row with the latest event time may not be available yet
while an older one is. Each view's rows are therefore reduced to their *records*: ordered by ``e =
max(event_time, available_at)`` (the first time a row may be used), a row is kept only if it beats every row
usable before it. The latest record with ``e <= T`` is then exactly the winner, found with one DuckDB ASOF
join on ``e``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._duckdb import DuckSession, quote
from mlpilot.features._frames import Output, from_arrow, to_arrow
from mlpilot.features._viewsql import AV, ET, NEVER, SF, SR, E, PreparedView, prepare_view
from mlpilot.features.catalog import Definitions, FeaturesArg, Selection, resolve_features
from mlpilot.features.dtypes import is_timestamp_type, kind_of, timestamp_us_sql
from mlpilot.features.leakage import REPORT_METADATA_KEY, LeakageReport, ViewLeakage
from mlpilot.features.sources import ParquetSource

__all__ = ["TrainingSet", "get_training_set"]

_ROW = "__mlpilot_row"
_T = "__mlpilot_t"


@dataclass(frozen=True)
class TrainingSet:
    """The joined rows (Arrow, pandas or polars) and the :class:`LeakageReport` of the join.

    The report is also stored in the Arrow schema metadata (``LeakageReport.from_arrow``) and, for pandas, in
    ``data.attrs["mlpilot.leakage_report"]``.
    """

    data: Any
    report: LeakageReport


def get_training_set(
    entity_df: Any,
    features: FeaturesArg,
    *,
    definitions: Definitions | None = None,
    timestamp_field: str = "event_timestamp",
    strict: bool = False,
    embargo: timedelta | None = None,
    full_names: bool = False,
    output: Output = "arrow",
    memory_limit: str | None = None,
    temp_directory: str | Path | None = None,
    threads: int | None = None,
) -> TrainingSet:
    """Join each row of ``entity_df`` with the features it could have known at its ``timestamp_field``.

    ``entity_df`` is an Arrow table, a pandas or polars DataFrame, or a path/glob of Parquet files (read out
    of core). It must hold every requested view's join keys and ``timestamp_field``; its columns come first in
    the result, in the original row order, followed by the features (``view__feature`` with
    ``full_names=True``).

    ``strict=True`` uses ``<`` instead of ``<=``; ``embargo`` moves every as-of time back by that gap. DuckDB
    runs within ``memory_limit`` (default 2GB), spilling to ``temp_directory``.
    """
    selections = resolve_features(features, definitions)
    if embargo is not None and embargo < timedelta(0):
        raise InvalidInputError("embargo: expected a non-negative timedelta", field="embargo")
    embargo_us = 0 if embargo is None else embargo // timedelta(microseconds=1)
    with DuckSession(memory_limit=memory_limit, temp_directory=temp_directory, threads=threads) as session:
        entity_from, entity_rows = _entity_from(entity_df, session)
        entity_schema = session.describe(entity_from)
        prepared = [prepare_view(s.view, session) for s in selections]
        _check_entity(entity_schema, timestamp_field, prepared)
        outputs = _output_names(selections, entity_schema, full_names)
        args = (entity_from, entity_schema, timestamp_field, prepared, selections, outputs, strict, embargo_us)
        table = session.fetch_arrow(_join_sql(*args, dedupe=False))
        if table.num_rows != entity_rows:
            table = session.fetch_arrow(_join_sql(*args, dedupe=True))
    report = _report(table, selections, strict, embargo_us)
    keep = [name for name in table.column_names if not name.startswith("__mlpilot_")]
    table = table.select(keep)
    metadata = dict(table.schema.metadata or {})
    metadata[REPORT_METADATA_KEY] = report.to_json().encode()
    table = table.replace_schema_metadata(metadata)
    data = from_arrow(table, output)
    if output == "pandas":
        data.attrs["mlpilot.leakage_report"] = report.to_dict()
    return TrainingSet(data, report)


def _entity_from(entity_df: Any, session: DuckSession) -> tuple[str, int]:
    """A FROM clause of the entity rows with a ``__mlpilot_row`` order column, and the number of rows."""
    if isinstance(entity_df, str | Path):
        source = ParquetSource(entity_df)
        plain = source.from_sql(session)
        columns = list(session.describe(plain))
        positional = source.positional_sql(session, columns)
        if positional is None:
            raise InvalidInputError(
                "entity_df: Parquet files with a column named file_index or file_row_number cannot be read "
                "out of core; load them into a table first",
                field="entity_df",
            )
        rows = int(session.fetchall(f"SELECT count(*) FROM {plain}")[0][0])
        return (
            f"(SELECT * EXCLUDE ({SF}, {SR}), row_number() OVER (ORDER BY {SF}, {SR}) AS {_ROW} FROM {positional})",
            rows,
        )
    import pyarrow as pa

    table = to_arrow(entity_df, field="entity_df")
    reserved = [name for name in table.column_names if name.startswith("__mlpilot_")]
    if reserved:
        raise InvalidInputError(
            f"entity_df: column {reserved[0]!r} uses the reserved prefix __mlpilot_", field=f"entity_df.{reserved[0]}"
        )
    table = table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    return session.register_table(table), table.num_rows


def _check_entity(schema: dict[str, str], timestamp_field: str, prepared: Sequence[PreparedView]) -> None:
    if timestamp_field not in schema:
        raise InvalidInputError(
            f"entity_df: no column {timestamp_field!r} (pass timestamp_field=...; columns: {', '.join(schema)})",
            field="timestamp_field",
        )
    if not is_timestamp_type(schema[timestamp_field]):
        raise InvalidInputError(
            f"entity_df: column {timestamp_field!r} has type {schema[timestamp_field]}; expected a timestamp or date",
            field="timestamp_field",
        )
    for p in prepared:
        for key in p.keys:
            if key not in schema:
                raise InvalidInputError(
                    f"entity_df: no column {key!r}, a join key of feature view {p.view.name!r}",
                    field=f"entity_df.{key}",
                )
            if kind_of(schema[key]) != kind_of(p.schema[key]):
                raise InvalidInputError(
                    f"entity_df: join key {key!r} has type {schema[key]} but feature view "
                    f"{p.view.name!r} has {p.schema[key]}",
                    field=f"entity_df.{key}",
                )


def _output_names(selections: Sequence[Selection], schema: dict[str, str], full_names: bool) -> list[list[str]]:
    taken: dict[str, str] = {name: "entity_df" for name in schema if name != _ROW}
    result: list[list[str]] = []
    for s in selections:
        names = []
        for feature in s.features:
            name = f"{s.view.name}__{feature}" if full_names else feature
            if name in taken:
                hint = "" if full_names else "; pass full_names=True to name columns view__feature"
                raise InvalidInputError(
                    f"features: output column {name!r} of feature view {s.view.name!r} clashes with "
                    f"{taken[name]}{hint}",
                    field="features",
                )
            taken[name] = f"feature view {s.view.name!r}"
            names.append(name)
        result.append(names)
    return result


def _join_sql(
    entity_from: str,
    entity_schema: dict[str, str],
    timestamp_field: str,
    prepared: Sequence[PreparedView],
    selections: Sequence[Selection],
    outputs: Sequence[Sequence[str]],
    strict: bool,
    embargo_us: int,
    dedupe: bool,
) -> str:
    """The whole join as one query. Per view, an ASOF join on narrow index rows finds each entity row's winner,
    then a hash join fetches the winner's features.

    Plain views fetch features by (keys, event time); if two source rows share both, that join returns more
    rows than there are entity rows and the caller re-runs with ``dedupe``, which resolves such ties by source
    position first (a rare case that costs one aggregation).
    """
    t_expr = timestamp_us_sql(quote(timestamp_field), entity_schema[timestamp_field])
    ctes = [f"e AS (SELECT *, {t_expr} - {embargo_us} AS {_T} FROM {entity_from})"]
    joins: list[str] = []
    selects = [f"e.* EXCLUDE ({_T}, {_ROW})"]
    op = ">" if strict else ">="
    for i, (p, s, names) in enumerate(zip(prepared, selections, outputs, strict=True)):
        k, f = f"k{i}", f"f{i}"
        columns = [(feature, f"__mlpilot_f{i}_{j}") for j, feature in enumerate(s.features)]
        keys = ", ".join(quote(key) for key in p.keys)
        on_k = " AND ".join(f"e.{quote(key)} = {k}.{quote(key)}" for key in p.keys)
        if p.bitemporal:
            ctes.extend(_record_ctes(p, i))
            ctes.append(f"{f} AS ({p.features_sql(columns, by_position=True)})")
            joins.append(f"ASOF LEFT JOIN {k} ON {on_k} AND e.{_T} {op} {k}.{E}")
            on_p = " AND ".join(f"e.{quote(key)} = p{i}.{quote(key)}" for key in p.keys)
            joins.append(f"ASOF LEFT JOIN p{i} ON {on_p} AND e.{_T} {op} p{i}.{ET}")
            joins.append(f"LEFT JOIN {f} ON {f}.{SF} = {k}.{SF} AND {f}.{SR} = {k}.{SR}")
            newer = f"(p{i}.{ET}, p{i}.{AV}) > ({k}.{ET}, {k}.{AV})"
            excluded = f"(p{i}.{ET} IS NOT NULL AND ({k}.{ET} IS NULL OR {newer}))"
            equal = f"({k}.{ET} = e.{_T} OR {k}.{AV} = e.{_T})"
        elif dedupe:
            ctes.append(
                f"{k} AS (SELECT {keys}, {ET}, max(struct_pack(f := {SF}, r := {SR})) AS __mlpilot_w "
                f"FROM ({p.index_sql(positional=True, times=False)}) GROUP BY ALL)"
            )
            ctes.append(f"{f} AS ({p.features_sql(columns, by_position=True)})")
            joins.append(f"ASOF LEFT JOIN {k} ON {on_k} AND e.{_T} {op} {k}.{ET}")
            joins.append(f"LEFT JOIN {f} ON {f}.{SF} = {k}.__mlpilot_w.f AND {f}.{SR} = {k}.__mlpilot_w.r")
            excluded, equal = "false", f"({k}.{ET} = e.{_T})"
        else:
            ctes.append(f"{k} AS ({p.index_sql(positional=False, times=False)})")
            ctes.append(f"{f} AS ({p.features_sql(columns, by_position=False)})")
            joins.append(f"ASOF LEFT JOIN {k} ON {on_k} AND e.{_T} {op} {k}.{ET}")
            on_f = " AND ".join(f"{f}.{quote(key)} = {k}.{quote(key)}" for key in p.keys)
            joins.append(f"LEFT JOIN {f} ON {on_f} AND {f}.{ET} = {k}.{ET}")
            excluded, equal = "false", f"({k}.{ET} = e.{_T})"
        ttl = p.view.ttl_us
        fresh = f"{k}.{ET} >= e.{_T} - {ttl}"
        for (_, alias), name in zip(columns, names, strict=True):
            value = f"{f}.{quote(alias)}"
            selects.append(f"{value if ttl is None else f'CASE WHEN {fresh} THEN {value} END'} AS {quote(name)}")
        selects.append(f"{k}.{ET} IS NOT NULL AS __mlpilot_m{i}")
        selects.append(f"{equal} AS __mlpilot_q{i}")
        selects.append(f"{excluded} AS __mlpilot_a{i}")
        selects.append(f"{'false' if ttl is None else f'{k}.{ET} < e.{_T} - {ttl}'} AS __mlpilot_x{i}")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM e {' '.join(joins)} ORDER BY e.{_ROW}"


def _record_ctes(p: PreparedView, i: int) -> list[str]:
    """CTEs ``k{i}`` (the view's records, see the module docstring) and ``p{i}`` (per keys and event time, the
    latest availability time, reached or not: for the availability part of the report)."""
    keys = ", ".join(quote(k) for k in p.keys)
    rank = f"struct_pack(a := {ET}, b := {AV}, c := {SF}, d := {SR})"
    return [
        f"a{i} AS ({p.index_sql(positional=True)})",
        # One row per (keys, e): the best of the rows that become usable at the same instant.
        f"g{i} AS (SELECT * FROM a{i} WHERE {AV} < {NEVER} QUALIFY row_number() OVER "
        f"(PARTITION BY {keys}, {E} ORDER BY {ET} DESC, {AV} DESC, {SF} DESC, {SR} DESC) = 1)",
        f"k{i} AS (SELECT * EXCLUDE (__mlpilot_prev) FROM (SELECT *, max({rank}) OVER (PARTITION BY {keys} "
        f"ORDER BY {E} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS __mlpilot_prev FROM g{i}) "
        f"WHERE __mlpilot_prev IS NULL OR {rank} > __mlpilot_prev)",
        f"p{i} AS (SELECT {keys}, {ET}, max({AV}) AS {AV} FROM a{i} GROUP BY ALL)",
    ]


def _report(table: Any, selections: Sequence[Selection], strict: bool, embargo_us: int) -> LeakageReport:
    import pyarrow.compute as pc

    def count(column: str) -> int:
        return int(pc.sum(table.column(column)).as_py() or 0)

    views: dict[str, ViewLeakage] = {}
    for i, s in enumerate(selections):
        matched = count(f"__mlpilot_m{i}")
        views[s.view.name] = ViewLeakage(
            matched=matched,
            no_match=table.num_rows - matched,
            equal_timestamp=count(f"__mlpilot_q{i}"),
            excluded_by_availability=count(f"__mlpilot_a{i}"),
            ttl_expired=count(f"__mlpilot_x{i}"),
        )
    return LeakageReport(table.num_rows, views, strict=strict, embargo_seconds=embargo_us / 1e6)
