"""The DuckDB training-set engine: one SQL query per training set, out of core within ``memory_limit``.

Per view, an ASOF join on narrow *index* rows (keys, times, position) finds each entity row's winner, then a
hash join fetches the winner's features; see :mod:`mlpilot.features.training` for the semantics and the
*records* reduction that makes bitemporal views a plain ASOF join.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._arrowtypes import output_type
from mlpilot.features._duckdb import DuckSession, quote
from mlpilot.features._frames import to_arrow
from mlpilot.features._joinplan import check_entity, check_reserved, output_names
from mlpilot.features._viewsql import AV, ET, NEVER, SF, SR, E, PreparedView, prepare_view
from mlpilot.features.catalog import Selection
from mlpilot.features.dtypes import timestamp_us_sql
from mlpilot.features.leakage import ViewLeakage
from mlpilot.features.sources import ParquetSource

__all__ = ["duckdb_join"]

_ROW = "__mlpilot_row"
_T = "__mlpilot_t"


def duckdb_join(
    entity_df: Any,
    selections: Sequence[Selection],
    *,
    timestamp_field: str,
    strict: bool,
    embargo_us: int,
    full_names: bool,
    memory_limit: str | None,
    temp_directory: str | Path | None,
    threads: int | None,
) -> tuple[Any, dict[str, ViewLeakage]]:
    """The joined table and the report counts per view. In-memory entity rows come back exactly as given;
    entity rows from Parquet files come back as DuckDB reads them."""
    with DuckSession(memory_limit=memory_limit, temp_directory=temp_directory, threads=threads) as session:
        entity_table = None if isinstance(entity_df, str | Path) else to_arrow(entity_df, field="entity_df")
        entity_from, entity_rows = _entity_from(entity_df, entity_table, session)
        entity_schema = session.describe(entity_from)
        prepared = [prepare_view(s.view, session) for s in selections]
        check_entity(entity_schema, timestamp_field, [(p.view, p.schema) for p in prepared])
        outputs = output_names(selections, entity_schema, full_names)
        args = (entity_from, entity_schema, timestamp_field, prepared, selections, outputs, strict, embargo_us)
        keep_entity = entity_table is None
        table = session.fetch_arrow(_join_sql(*args, dedupe=False, entity_columns=keep_entity))
        if table.num_rows != entity_rows:
            table = session.fetch_arrow(_join_sql(*args, dedupe=True, entity_columns=keep_entity))
    counts = _counts(table, selections)
    base = table.select([n for n in table.column_names if n in entity_schema]) if keep_entity else entity_table
    assert base is not None
    for s, names in zip(selections, outputs, strict=True):
        for feature, name in zip(s.features, names, strict=True):
            column = table.column(name)
            target = output_type(s.view.feature(feature).dtype)
            base = base.append_column(name, column if column.type == target else column.cast(target))
    return base, counts


def _entity_from(entity_df: Any, table: Any, session: DuckSession) -> tuple[str, int]:
    """A FROM clause of the entity rows with a ``__mlpilot_row`` order column, and the number of rows."""
    if table is None:
        source = ParquetSource(entity_df)
        plain = source.from_sql(session)
        columns = list(session.describe(plain))
        check_reserved(columns)
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

    check_reserved(table.column_names)
    table = table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    return session.register_table(table), table.num_rows


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
    entity_columns: bool,
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
    selects = [f"e.* EXCLUDE ({_T}, {_ROW})"] if entity_columns else []
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


def _counts(table: Any, selections: Sequence[Selection]) -> dict[str, ViewLeakage]:
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
    return views
