"""Materialization: write each entity's latest feature row into the online store, incrementally and resumably.

    >>> with open_online_store("sqlite:///online.db") as store:                 # doctest: +SKIP
    ...     materialize([txn_stats], store=store)                                # first run: all history
    ...     materialize([txn_stats], store=store)                                # later: only what is new

A row is usable from ``e = max(event_time, available_at)``. A run covers the rows with ``lo < e <= end`` where
``end`` defaults to now (and never exceeds it) and, incrementally, ``lo`` is the stored watermark minus the
allowed lateness. For each entity it writes the row with the greatest ``(event_time, available_at)`` (later in
the source on ties): the same winner the training-set join picks at ``T = end``. Stores never replace a newer
row with an older one, so re-running a window is harmless.

Late rows: a view with an availability column records when each row arrived, so a late row has a late ``e``
and the next run sees it. Without one, ``e`` is the event time and a late row sits behind the watermark; runs
therefore re-read ``allowed_lateness`` before the watermark, by default the view's TTL (older rows are expired
online anyway) or, without a TTL, all history.

Memory stays bounded: DuckDB computes the latest rows out of core and they are written ``batch_size`` at a
time. With ``slice_span`` the window is processed in time slices, each committing its watermark, so an
interrupted run resumes after the last finished slice.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._codec import PayloadCodec, encode_key, online_columns, store_of, to_us
from mlpilot.features._duckdb import DuckSession, quote, resolve_memory_limit
from mlpilot.features._memengine import memory_budget
from mlpilot.features._memmaterialize import memory_materialize
from mlpilot.features._memsource import Unsupported
from mlpilot.features._viewsql import AV, ET, NEVER, SF, SR, E, PreparedView, prepare_view
from mlpilot.features.catalog import Definitions
from mlpilot.features.definitions import FeatureView
from mlpilot.features.online.base import OnlineStore, StoredRow
from mlpilot.features.training import Engine

__all__ = ["MaterializeResult", "materialize"]

_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class MaterializeResult:
    """What one view's run did: the window ``(start_us, end_us]`` on usable time, rows written, watermark."""

    view: str
    start_us: int | None
    end_us: int
    rows_written: int
    watermark: int


def materialize(
    views: FeatureView | str | Sequence[FeatureView | str],
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    store: OnlineStore | str | None = None,
    definitions: Definitions | None = None,
    incremental: bool = True,
    allowed_lateness: timedelta | None = None,
    slice_span: timedelta | None = None,
    batch_size: int = 10_000,
    memory_limit: str | None = None,
    temp_directory: str | Path | None = None,
    now: datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
    engine: Engine = "auto",
) -> list[MaterializeResult]:
    """Write the latest rows of ``views`` to ``store`` (an ``OnlineStore``, a URL, or the default store).

    ``start`` bounds the first (or a non-incremental) run; ``incremental=False`` ignores the watermark.
    ``progress(view, rows)`` is called when a view starts (``rows=0``) and after each batch it writes.
    ``engine`` chooses, as for training sets, between NumPy over in-memory rows (``"auto"`` when a view's
    index fits in half of ``memory_limit``) and DuckDB out of core; both write the same rows. ``memory_limit``
    and ``temp_directory`` default to the settings ``MLPILOT_FEATURES_MEMORY_LIMIT`` and
    ``MLPILOT_FEATURES_TEMP_DIRECTORY``. Rows reach the store ``batch_size`` at a time, read from DuckDB as
    Arrow record batches, never as one table.
    """
    if engine not in ("auto", "memory", "duckdb"):
        raise InvalidInputError(f"engine: expected 'auto', 'memory' or 'duckdb', got {engine!r}", field="engine")
    if batch_size < 1:
        raise InvalidInputError("batch_size: expected a positive integer", field="batch_size")
    if slice_span is not None and slice_span <= timedelta(0):
        raise InvalidInputError("slice_span: expected a positive timedelta", field="slice_span")
    if allowed_lateness is not None and allowed_lateness < timedelta(0):
        raise InvalidInputError("allowed_lateness: expected a non-negative timedelta", field="allowed_lateness")
    items = [views] if isinstance(views, FeatureView | str) else list(views)
    resolved = [_resolve(v, definitions) for v in items]
    now_us = to_us(now, "now") if now is not None else time.time_ns() // 1000
    end_us = min(to_us(end, "end"), now_us) if end is not None else now_us
    start_us = None if start is None else to_us(start, "start")
    memory_limit = resolve_memory_limit(memory_limit)
    budget = memory_budget(memory_limit)
    online, opened = store_of(store)
    results: list[MaterializeResult] = []
    session: DuckSession | None = None
    try:
        for view in resolved:
            lo = _window_start(view, online, incremental, start_us, allowed_lateness)
            if progress is not None:
                progress(view.name, 0)
            written: int | None = None
            if engine != "duckdb":
                try:
                    if budget is None:
                        raise Unsupported(f"memory_limit {memory_limit!r} is not a size such as 2GB")
                    written = memory_materialize(
                        view,
                        online,
                        lo,
                        end_us,
                        functools.partial(_slice_bounds, lo, end_us=end_us, span=slice_span),
                        batch_size,
                        budget,
                        _write,
                        ET,
                        AV,
                        progress,
                    )
                except Unsupported as exc:
                    if engine == "memory":
                        raise InvalidInputError(
                            f"engine='memory' cannot materialize {view.name!r}: {exc}", field="engine"
                        ) from exc
            if written is None:
                if session is None:
                    session = DuckSession(memory_limit=memory_limit, temp_directory=temp_directory)
                written = _run_view(prepare_view(view, session), online, lo, end_us, slice_span, batch_size, progress)
            watermark = online.read_watermark(view.name)
            results.append(
                MaterializeResult(view.name, lo, end_us, written, end_us if watermark is None else watermark)
            )
    finally:
        if session is not None:
            session.close()
        if opened:
            online.close()
    return results


def _resolve(view: FeatureView | str, definitions: Definitions | None) -> FeatureView:
    if isinstance(view, str):
        if definitions is None:
            raise InvalidInputError(f"views: {view!r} is a name; pass definitions=... to resolve it", field="views")
        return definitions.view(view)
    return view if definitions is None else definitions.resolve_view(view)


def _window_start(
    view: FeatureView,
    online: OnlineStore,
    incremental: bool,
    start_us: int | None,
    allowed_lateness: timedelta | None,
) -> int | None:
    watermark = online.read_watermark(view.name) if incremental else None
    if watermark is None:
        return start_us
    if allowed_lateness is not None:
        lateness_us: int | None = allowed_lateness // _US
    elif view.available_at_field is not None:
        lateness_us = 0
    else:
        lateness_us = view.ttl_us
    if lateness_us is None:
        return start_us
    lo = watermark - lateness_us
    return lo if start_us is None else max(lo, start_us)


def _run_view(
    prepared: PreparedView,
    online: OnlineStore,
    lo: int | None,
    end_us: int,
    slice_span: timedelta | None,
    batch_size: int,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    view = prepared.view
    session = prepared.session
    keys = ", ".join(quote(k) for k in prepared.keys)
    conditions = [f"{AV} < {NEVER}", *(f"{quote(k)} IS NOT NULL" for k in prepared.keys)]
    if view.ttl_us is not None:
        conditions.append(f"{ET} >= {end_us - view.ttl_us}")  # rows already expired at `end` are never served
    index = f"SELECT * FROM ({prepared.index_sql(positional=True)}) WHERE {' AND '.join(conditions)}"
    features = prepared.features_sql([(name, name) for name in view.feature_names], by_position=True)
    feature_list = ", ".join(f"f.{quote(name)}" for name in view.feature_names)
    written = 0
    for slice_lo, slice_hi in _slices(session, index, lo, end_us, slice_span):
        window = f"{E} <= {slice_hi}" + ("" if slice_lo is None else f" AND {E} > {slice_lo}")
        # The winner per entity on narrow rows (a hash aggregate, no sort), then its features by position.
        latest = (
            f"WITH w AS (SELECT {keys}, max(struct_pack(a := {ET}, b := {AV}, c := {SF}, d := {SR})) AS w "
            f"FROM ({index}) WHERE {window} GROUP BY ALL), "
            f"f AS ({features}) "
            f"SELECT {', '.join(f'w.{quote(k)}' for k in prepared.keys)}, w.w.a AS {ET}, w.w.b AS {AV}, "
            f"{feature_list} FROM w JOIN f ON f.{SF} = w.w.c AND f.{SR} = w.w.d"
        )
        for batch in session.stream_arrow(latest, batch_size):
            rows = _write(view, prepared.keys, batch, online)
            written += rows
            if progress is not None:
                progress(view.name, rows)
        online.write_batch(view.name, [], watermark=slice_hi)
    return written


def _slices(
    session: DuckSession, rows: str, lo: int | None, end_us: int, span: timedelta | None
) -> list[tuple[int | None, int]]:
    first = None
    if span is not None and lo is None:
        found = session.fetchall(f"SELECT min({E}) FROM ({rows}) WHERE {E} <= {end_us}")[0][0]
        first = None if found is None else int(found)
    return _slice_bounds(lo, first, end_us, span)


def _slice_bounds(
    lo: int | None, first: int | None, end_us: int, span: timedelta | None
) -> list[tuple[int | None, int]]:
    """Time slices ``(lo, hi]`` covering ``(lo, end_us]``; without ``lo`` they start just before ``first``, the
    earliest usable time of a row to write (one open slice when there is none)."""
    if span is None:
        return [(lo, end_us)] if lo is None or lo < end_us else []
    if lo is None:
        if first is None:
            return [(None, end_us)]
        lo = first - 1
    span_us = span // _US
    bounds: list[tuple[int | None, int]] = []
    while lo < end_us:
        hi = min(lo + span_us, end_us)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _write(view: FeatureView, keys: Sequence[str], batch: Any, online: OnlineStore) -> int:
    key_columns = [batch.column(k).to_pylist() for k in keys]
    names = view.feature_names
    codec = PayloadCodec(view)
    values = list(online_columns(batch, view, names))
    event_times = batch.column(ET).to_pylist()
    available = batch.column(AV).to_pylist()
    rows = [
        StoredRow(
            encode_key([col[i] for col in key_columns], keys),
            event_times[i],
            available[i],
            codec.encode([column[i] for column in values]),
        )
        for i in range(batch.num_rows)
    ]
    online.write_batch(view.name, rows)
    return len(rows)
