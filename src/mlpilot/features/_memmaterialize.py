"""Materialization without DuckDB for views whose rows fit in memory: the same winners as
:mod:`mlpilot.features.materialization`'s SQL, found on NumPy arrays.

Per time slice, the rows usable in ``(lo, hi]`` (and not already expired at ``end``) are sorted by
``(keys, event_time, available_at)`` keeping source order on ties, the last row of each key wins, and only the
winners' features are fetched (from the Parquet row groups that hold one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlpilot.features._arrowtypes import cast_feature, epoch_us
from mlpilot.features._memjoin import NEVER, _Scale, _sorted, encode_keys
from mlpilot.features._memsource import MemorySource, Unsupported
from mlpilot.features.definitions import FeatureView
from mlpilot.features.dtypes import kind_of
from mlpilot.features.online.base import OnlineStore
from mlpilot.features.validate import raise_problems, source_problems

__all__ = ["memory_materialize"]

Writer = Callable[[FeatureView, tuple[str, ...], Any, OnlineStore], int]


def memory_materialize(
    view: FeatureView,
    online: OnlineStore,
    lo: int | None,
    end_us: int,
    slice_bounds: Callable[[int | None], list[tuple[int | None, int]]],
    batch_size: int,
    budget: int,
    write: Writer,
    et_column: str,
    av_column: str,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Rows written; raises :class:`Unsupported` (before writing anything) if the view is not for this path.

    ``slice_bounds(first_usable_time)`` gives the time slices; ``write`` stores one Arrow batch whose columns
    are the join keys, ``et_column``/``av_column`` (µs) and the features.
    """
    keys = view.join_keys
    times = [view.timestamp_field] + ([view.available_at_field] if view.available_at_field else [])
    source = MemorySource.open(view, [*keys, *times, *view.feature_names])
    try:
        if source.index_bytes(len(keys) + 3) > budget:
            raise Unsupported("the view's index is over the memory budget")
        raise_problems(source_problems(view, source.schema))
        index = source.read_index([*keys, *times])
        kinds = [kind_of(source.schema[k]) for k in keys]
        empty = [index.column(k).slice(0, 0) for k in keys]
        codes, _, count = encode_keys([index.column(k) for k in keys], empty, kinds)
        bitemporal = view.available_at_field is not None
        et, et_valid = epoch_us(index.column(view.timestamp_field))
        if view.available_at_field is not None:
            av, av_valid = epoch_us(index.column(view.available_at_field))
            if av_valid is not None:
                av = np.where(av_valid, av, NEVER)
        else:
            av = et
        usable_from = np.maximum(et, av)
        ok = (codes >= 0) & (av != NEVER) & (usable_from <= end_us)
        if et_valid is not None:
            ok &= et_valid
        if view.ttl_us is not None:
            ok &= et >= end_us - view.ttl_us  # rows already expired at `end` are never served
        if lo is not None:
            ok &= usable_from > lo
        first = int(usable_from[ok].min()) if ok.any() else None
        written = 0
        for slice_lo, slice_hi in slice_bounds(first):
            in_slice = ok & (usable_from <= slice_hi)
            if slice_lo is not None:
                in_slice &= usable_from > slice_lo
            rows = np.flatnonzero(in_slice)
            order = _by_key_and_time(rows, codes[rows], et[rows], av[rows], count, bitemporal)
            sorted_codes = codes[order]
            last = np.flatnonzero(np.append(sorted_codes[1:] != sorted_codes[:-1], True)) if len(order) else order
            winners = np.sort(order[last])
            # One fetch per slice: each Parquet row group is decoded once however many batches follow.
            table = _winners(view, source, index, winners, et, av, et_column, av_column)
            for start in range(0, table.num_rows, batch_size):
                batch = table.slice(start, batch_size)
                written += write(view, keys, batch, online)
                if progress is not None:
                    progress(view.name, batch.num_rows)
            online.write_batch(view.name, [], watermark=slice_hi)
        return written
    finally:
        source.close()


def _by_key_and_time(
    rows: np.ndarray[Any, np.dtype[np.int64]],
    codes: np.ndarray[Any, np.dtype[np.int64]],
    et: np.ndarray[Any, np.dtype[np.int64]],
    av: np.ndarray[Any, np.dtype[np.int64]],
    count: int,
    bitemporal: bool,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``rows`` ordered by (keys, event time[, availability]), source order kept on ties (the later row wins)."""
    if bitemporal:
        result: np.ndarray[Any, np.dtype[np.int64]] = rows[np.lexsort((av, et, codes))]
        return result
    # One int64 per row instead of a two-key sort; usually the rows are in this order already.
    comp = _Scale(count, [et]).of(codes, et)
    order = _sorted(comp)
    return rows if order is None else rows[order]


def _winners(
    view: FeatureView,
    source: MemorySource,
    index: Any,
    positions: np.ndarray[Any, np.dtype[np.int64]],
    et: np.ndarray[Any, np.dtype[np.int64]],
    av: np.ndarray[Any, np.dtype[np.int64]],
    et_column: str,
    av_column: str,
) -> Any:
    import pyarrow as pa

    taken = pa.array(positions, pa.int64())
    columns: dict[str, Any] = {k: index.column(k).take(taken) for k in view.join_keys}
    columns[et_column] = pa.array(et[positions], pa.int64())
    columns[av_column] = pa.array(av[positions], pa.int64())
    values = source.gather(positions, list(view.feature_names))
    for feature in view.features:
        columns[feature.name] = cast_feature(values[feature.name], feature.dtype)
    return pa.table(columns)
