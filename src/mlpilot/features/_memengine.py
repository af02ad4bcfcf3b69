"""The in-memory training-set engine: Arrow in, NumPy point-in-time match, Arrow out, no DuckDB.

Used when the inputs fit comfortably in memory (see :func:`fits`): Arrow tables, pandas or polars frames, and
local Parquet files. Each view's narrow index columns (join keys and times) are read once; the matching runs
on integer arrays (:mod:`mlpilot.features._memjoin`); then only the winners' features are fetched, from only
the Parquet row groups that hold a winner. The entity columns come back exactly as given.

Anything else (SQL sources, remote or Hive-partitioned files, inputs above the memory budget) raises
:class:`~mlpilot.features._memsource.Unsupported` and is left to the DuckDB engine, which runs out of core.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.config import memory_size_bytes
from mlpilot.features._arrowtypes import cast_feature, duckdb_type_name, epoch_us
from mlpilot.features._frames import to_arrow
from mlpilot.features._joinplan import check_entity, check_reserved, output_names
from mlpilot.features._memjoin import NEVER, Matches, encode_keys, match_view
from mlpilot.features._memsource import MemorySource, Unsupported
from mlpilot.features.catalog import Selection
from mlpilot.features.dtypes import kind_of
from mlpilot.features.leakage import ViewLeakage
from mlpilot.features.sources import ParquetSource
from mlpilot.features.validate import raise_problems, source_problems

__all__ = ["memory_budget", "memory_join"]

# Decoded feature columns a join may read ahead in the background (see MemorySource.prefetch).
_PREFETCH_BYTES = 256 * 1024 * 1024


def memory_budget(memory_limit: str) -> int | None:
    """Bytes the in-memory engine may use for its index arrays: half of ``memory_limit`` (``None`` when the
    limit is not a size such as ``"2GB"`` or a share of memory such as ``"25%"``: every join goes to DuckDB)."""
    try:
        return memory_size_bytes(memory_limit) // 2
    except ValueError:
        return None


def _entity_table(entity_df: Any, budget: int) -> Any:
    if not isinstance(entity_df, str | Path):
        return to_arrow(entity_df, field="entity_df")
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = ParquetSource(entity_df)
    if source.remote:
        raise Unsupported("remote entity files are read by DuckDB")
    files = source.files()
    if any(any("=" in p for p in Path(name).parent.parts) for name in files):
        raise Unsupported("remote or Hive-partitioned entity files are read by DuckDB")
    size = 0
    for name in files:
        meta = pq.ParquetFile(name).metadata
        size += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > budget:
        raise Unsupported(f"the entity files hold about {size:,} bytes, over the memory budget")
    tables = [pq.read_table(name, memory_map=True) for name in files]
    try:
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as exc:
        raise Unsupported("the entity files do not share one schema") from exc


def _schema_of(table: Any) -> dict[str, str]:
    names = {}
    for field in table.schema:
        name = duckdb_type_name(field.type)
        names[field.name] = name if name is not None else str(field.type).upper()
    return names


def memory_join(
    entity_df: Any,
    selections: Sequence[Selection],
    *,
    timestamp_field: str,
    strict: bool,
    embargo_us: int,
    full_names: bool,
    budget: int,
) -> tuple[Any, dict[str, ViewLeakage]]:
    """The joined table (entity columns as given, then features) and the report counts per view.

    Raises :class:`Unsupported` before any heavy work when the inputs are not for this engine.
    """
    entity = _entity_table(entity_df, budget)
    check_reserved(entity.column_names)
    sources: list[MemorySource] = []
    try:
        for s in selections:
            view = s.view
            times = [view.timestamp_field] + ([view.available_at_field] if view.available_at_field else [])
            sources.append(MemorySource.open(view, [*view.join_keys, *times, *s.features]))
        needed = sum(src.index_bytes(len(src.view.join_keys) + 3) for src in sources) + entity.num_rows * 64
        if needed > budget:
            raise Unsupported(f"the join needs about {needed:,} bytes of index, over the memory budget")
        for src, s in zip(sources, selections, strict=True):
            src.prefetch(s.features, min(_PREFETCH_BYTES, budget // 4))
        for src in sources:
            raise_problems(source_problems(src.view, src.schema))
        entity_schema = _schema_of(entity)
        check_entity(entity_schema, timestamp_field, [(src.view, src.schema) for src in sources])
        outputs = output_names(selections, entity.column_names, full_names)
        for column in {timestamp_field, *(k for src in sources for k in src.view.join_keys)}:
            if duckdb_type_name(entity.schema.field(column).type) is None:
                raise Unsupported(f"entity column {column!r} has type {entity.schema.field(column).type}")
        as_of, as_of_valid = epoch_us(entity.column(timestamp_field))
        as_of = as_of - embargo_us
        counts: dict[str, ViewLeakage] = {}
        for src, s, names in zip(sources, selections, outputs, strict=True):
            matches = _match(src, entity, entity_schema, as_of, as_of_valid, strict)
            counts[s.view.name] = _counts(matches, entity.num_rows)
            for name, column in zip(names, _features(src, s, matches), strict=True):
                entity = entity.append_column(name, column)
        return entity, counts
    finally:
        for src in sources:
            src.close()


def _match(
    src: MemorySource,
    entity: Any,
    entity_schema: dict[str, str],
    as_of: np.ndarray[Any, np.dtype[np.int64]],
    as_of_valid: np.ndarray[Any, np.dtype[np.bool_]] | None,
    strict: bool,
) -> Matches:
    view = src.view
    columns = [*view.join_keys, view.timestamp_field]
    if view.available_at_field is not None:
        columns.append(view.available_at_field)
    index = src.read_index(columns)
    kinds = [kind_of(entity_schema[k]) for k in view.join_keys]
    view_codes, entity_codes, count = encode_keys(
        [index.column(k) for k in view.join_keys], [entity.column(k) for k in view.join_keys], kinds
    )
    event_time, event_valid = epoch_us(index.column(view.timestamp_field))
    available = None
    if view.available_at_field is not None:
        available, av_valid = epoch_us(index.column(view.available_at_field))
        if av_valid is not None:
            available = np.where(av_valid, available, NEVER)
    return match_view(
        view_codes,
        event_time,
        event_valid,
        available,
        entity_codes,
        as_of,
        as_of_valid,
        count=count,
        strict=strict,
        ttl_us=view.ttl_us,
    )


def _features(src: MemorySource, selection: Selection, matches: Matches) -> list[Any]:
    import pyarrow as pa

    used = matches.used
    if src.prefetched == selection.features:
        taken = src.take_rows(matches.position, used)
        return [cast_feature(taken[f], src.view.feature(f).dtype) for f in selection.features]
    wanted, inverse = np.unique(matches.position[used], return_inverse=True)
    values = src.gather(wanted.astype(np.int64), list(selection.features))
    take = np.zeros(len(used), np.int64)
    take[used] = inverse
    indices = pa.array(take, pa.int64(), mask=~used)
    columns = []
    for feature in selection.features:
        column = values[feature]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        dtype = src.view.feature(feature).dtype
        columns.append(cast_feature(column.take(indices), dtype))
    return columns


def _counts(matches: Matches, rows: int) -> ViewLeakage:
    matched = int(matches.found.sum())
    return ViewLeakage(
        matched=matched,
        no_match=rows - matched,
        equal_timestamp=int(matches.equal.sum()),
        excluded_by_availability=int(matches.excluded.sum()),
        ttl_expired=int(matches.expired.sum()),
    )
