"""The point-in-time match in NumPy: for each entity row, the source position of each view's winner.

Same semantics as the DuckDB engine (see :mod:`mlpilot.features.training`), computed on integer arrays:

1. join keys become dense integer codes shared by the view and the entity rows (:func:`encode_keys`);
2. ``(code, time)`` pairs become single ``int64`` *composites* ``code * span + (time - min)`` (or, when that
   could overflow, ``code * span + rank(time)``), so "same keys and latest time at or before T" is one
   ``searchsorted`` over the view's sorted composites;
3. a plain view is sorted by ``(code, event_time)`` keeping source order on ties, so the last row at or
   before ``T`` is the winner; a bitemporal view is first reduced to its *records* (rows that beat every row
   usable before them, in order of ``e = max(event_time, available_at)``), and the last record with
   ``e <= T`` is the winner.

Sorting is skipped when the rows already come in order (a sortedness check is a few milliseconds for a million
rows), which is how feature tables are usually written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpilot.features._memsource import Unsupported

__all__ = ["NEVER", "Matches", "encode_keys", "match_view"]

NEVER = int(np.iinfo(np.int64).max)  # an availability time no as-of time reaches
_LIMIT = 1 << 62

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def _codes_of(column: Any, kind: str) -> Any:
    """A column as a type both sides of the join share: int64 for integers, large strings for strings."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    try:
        return column.cast(pa.int64() if kind == "int" else pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # e.g. UBIGINT keys beyond int64
        raise Unsupported(f"join key values do not fit the in-memory engine: {exc}") from exc


def encode_keys(
    view_columns: Sequence[Any], entity_columns: Sequence[Any], kinds: Sequence[str]
) -> tuple[Int64Array, Int64Array, int]:
    """Dense codes of the key tuples of the view rows and the entity rows (``-1`` where a key is null), and the
    number of distinct codes. Equal tuples get equal codes on both sides."""
    import pyarrow as pa

    n_view = len(view_columns[0])
    combined: Int64Array | None = None
    count = 1
    for view_col, entity_col, kind in zip(view_columns, entity_columns, kinds, strict=True):
        both = pa.concat_arrays([_codes_of(view_col, kind), _codes_of(entity_col, kind)])
        codes, size = _dense(both, kind)
        if combined is None:
            combined, count = codes, size
            continue
        null = (combined < 0) | (codes < 0)
        if count * size >= _LIMIT:
            combined, count = _redense(combined, null)
        combined = np.where(null, -1, combined * size + codes)
        count *= size
        if count >= _LIMIT // 4:
            combined, count = _redense(combined, combined < 0)
    assert combined is not None
    return combined[:n_view], combined[n_view:], count


def _dense(column: Any, kind: str) -> tuple[Int64Array, int]:
    import pyarrow.compute as pc

    if kind == "int" and column.null_count == 0 and len(column):
        values = column.to_numpy()
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 4 * len(values) + 1024:
            return values - lo, hi - lo + 1  # already nearly dense: no hashing
    encoded = pc.dictionary_encode(column)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, max(len(encoded.dictionary), 1)


def _redense(codes: Int64Array, null: BoolArray) -> tuple[Int64Array, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(pa.array(codes, pa.int64(), mask=null))
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64), max(
        len(encoded.dictionary), 1
    )


class _Scale:
    """Maps ``(code, time)`` to one order-preserving int64 for every time in ``times``."""

    def __init__(self, count: int, times: Sequence[Int64Array]) -> None:
        present = [t for t in times if len(t)]
        self.ranks: Int64Array | None = None
        if not present:
            self.lo, self.span = 0, 1
            return
        lo = min(int(t.min()) for t in present)
        hi = max(int(t.max()) for t in present)
        self.lo = lo
        self.span = hi - lo + 1
        if count * self.span >= _LIMIT:
            self.ranks = np.unique(np.concatenate(present))
            self.span = len(self.ranks)

    def of(self, codes: Int64Array, times: Int64Array) -> Int64Array:
        result: Int64Array = codes * self.span
        if self.ranks is None:
            result += times
            result -= self.lo
        else:
            result += np.searchsorted(self.ranks, times)
        return result

    def code_floor(self, codes: Int64Array) -> Int64Array:
        result: Int64Array = codes * self.span
        return result


@dataclass
class Matches:
    """Per entity row: whether a winner was found, its source position and times, and the report flags."""

    found: BoolArray
    position: Int64Array
    event_time: Int64Array
    equal: BoolArray
    excluded: BoolArray
    expired: BoolArray

    @property
    def used(self) -> BoolArray:
        """Rows whose features are filled in (found and not expired)."""
        result: BoolArray = self.found & ~self.expired
        return result


def _sorted(comp: Int64Array) -> Int64Array | None:
    """The stable order that sorts ``comp``, or ``None`` when it is sorted already."""
    if len(comp) < 2 or bool(np.all(comp[1:] >= comp[:-1])):
        return None
    order: Int64Array = np.argsort(comp, kind="stable")
    return order


def _asof(
    sorted_comp: Int64Array, queries: Int64Array, floors: Int64Array, ok: BoolArray, strict: bool
) -> tuple[Int64Array, BoolArray]:
    """Index of the last ``sorted_comp`` at (or, ``strict``, before) each query within the query's code."""
    side = "left" if strict else "right"
    where = np.empty(len(queries), np.int64)
    # Sorted queries walk the sorted array in one direction: far fewer cache misses than random probes.
    order = np.argsort(queries)
    where[order] = np.searchsorted(sorted_comp, queries[order], side=side) - 1  # type: ignore[call-overload]
    safe = np.maximum(where, 0)
    found = ok & (where >= 0) & (sorted_comp[safe] >= floors) if len(sorted_comp) else np.zeros(len(queries), bool)
    return safe, found


def match_view(
    view_codes: Int64Array,
    event_time: Int64Array,
    event_valid: BoolArray | None,
    available_at: Int64Array | None,
    entity_codes: Int64Array,
    as_of: Int64Array,
    as_of_valid: BoolArray | None,
    *,
    count: int,
    strict: bool,
    ttl_us: int | None,
) -> Matches:
    """Winners of one view for every entity row. ``available_at`` (bitemporal views) holds :data:`NEVER` for
    rows that never became available; ``None`` for a plain view."""
    ok_rows = view_codes >= 0
    if event_valid is not None:
        ok_rows &= event_valid
    # Usually every row is usable: then the arrays are used as they are, without copies.
    rows: Int64Array | None = None if ok_rows.all() else np.flatnonzero(ok_rows)
    ok_entity = entity_codes >= 0
    if as_of_valid is not None:
        ok_entity &= as_of_valid
    none = np.zeros(len(as_of), bool)
    if (rows is not None and not len(rows)) or not len(view_codes):
        zeros = np.zeros(len(as_of), np.int64)
        return Matches(none, zeros, zeros, none, none, none)
    codes, et = (view_codes, event_time) if rows is None else (view_codes[rows], event_time[rows])
    if available_at is None:
        scale = _Scale(count, [et, as_of[ok_entity]])
        queries = scale.of(entity_codes, as_of)
        floors = scale.code_floor(entity_codes)
        comp = scale.of(codes, et)
        order = _sorted(comp)
        if order is not None:
            comp = comp[order]
            rows = order if rows is None else rows[order]
        at, found = _asof(comp, queries, floors, ok_entity, strict)
        position = at if rows is None else rows[at]
        winner_et = event_time[position]
        equal = found & (winner_et == as_of)
        excluded = none
    else:
        if rows is None:
            rows = np.arange(len(view_codes), dtype=np.int64)
        position, found, equal, excluded = _match_bitemporal(
            rows, codes, et, available_at[rows], entity_codes, as_of, ok_entity, count, strict
        )
        winner_et = event_time[position]
    expired = found & (winner_et < as_of - ttl_us) if ttl_us is not None else none
    return Matches(found, position, winner_et, equal, excluded, expired)


def _match_bitemporal(
    rows: Int64Array,
    codes: Int64Array,
    et: Int64Array,
    av: Int64Array,
    entity_codes: Int64Array,
    as_of: Int64Array,
    ok_entity: BoolArray,
    count: int,
    strict: bool,
) -> tuple[Int64Array, BoolArray, BoolArray, BoolArray]:
    usable = av != NEVER
    e = np.maximum(et, av)
    scale = _Scale(count, [et, e[usable], as_of[ok_entity]])
    queries = scale.of(entity_codes, as_of)
    floors = scale.code_floor(entity_codes)

    # Records. Rank every usable row by (code, event_time, available_at, position): lexsort is stable and rows
    # come in source order, so position breaks the last ties. Codes lead, so one running maximum over rows in
    # (code, e, rank) order restarts at each code by itself.
    cand = np.flatnonzero(usable)
    c_codes, c_et, c_av, c_e = codes[cand], et[cand], av[cand], e[cand]
    rank = np.empty(len(cand), np.int64)
    rank[np.lexsort((c_av, c_et, c_codes))] = np.arange(len(cand), dtype=np.int64)
    by_e = np.lexsort((rank, c_e, c_codes))
    ranks = rank[by_e]
    records = by_e[ranks == np.maximum.accumulate(ranks)] if len(ranks) else by_e
    rec_comp = scale.of(c_codes[records], c_e[records])
    at, found = _asof(rec_comp, queries, floors, ok_entity, strict)
    chosen = cand[records[at]] if len(records) else np.zeros(len(as_of), np.int64)
    position, w_et, w_av = rows[chosen], et[chosen], av[chosen]
    equal = found & ((w_et == as_of) | (w_av == as_of))

    # For the report: the latest event time at or before T regardless of availability, with the latest
    # availability any row at that event time has (never-available rows included).
    p_comp = scale.of(codes, et)
    order = np.lexsort((av, p_comp))
    p_comp, p_av = p_comp[order], av[order]
    p_at, p_found = _asof(p_comp, queries, floors, ok_entity, strict)
    starts = np.flatnonzero(np.concatenate(([True], p_comp[1:] != p_comp[:-1])))
    group_end = np.append(starts[1:], len(p_comp)) - 1
    # av sorts ascending within a group, so its last row holds the group's maximum availability.
    last = group_end[np.searchsorted(starts, p_at, side="right") - 1]
    p_et, p_av_max = et[order][p_at], p_av[last]
    newer = (p_et > w_et) | ((p_et == w_et) & (p_av_max > w_av))
    excluded = p_found & (~found | newer)
    return position, found, equal, excluded
