"""The prediction log: every prediction (or a sample), buffered in memory and written as Parquet segments by a
background thread, never on the request path; flushed at shutdown.

Layout, one file per model version and flush (Hive-style folders, so DuckDB and pyarrow read the partitions)::

    <url>/model=<name>/version=<n>/date=<YYYY-MM-DD>/part-<epoch ms>-<random>.parquet

One row per predicted row, with the columns

==============  ====================  =====================================================================
``request_id``  string                also in the response's ``x-request-id`` header: join labels on it
``row``         int32                 index of the row within its request
``time``        timestamp[ms, UTC]    when the request arrived
``protocol``    string                ``v2``, ``v1`` or ``invocations``
``model``       string                served model name
``version``     int64                 model version
``latency_ms``  float64               request latency as seen by the server
``entity_id``   string (nullable)     the caller's ``entity_id`` (one for the request, or one per row)
``segments``    map<string, string>   the caller's ``segments``
``inputs``      struct                one field per input column, named as in the training sample
``outputs``     struct                one field per output column (``output``, ``probabilities_0`` …)
==============  ====================  =====================================================================

A 2-D input ``x`` becomes fields ``x_0 … x_k`` (as the registry stores the training sample), so a window of
the log compares to the reference directly: ``pq.read_table(path).column("inputs").flatten()``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlpilot.serving.metrics import ServingMetrics
from mlpilot.serving.schema import Columns

__all__ = ["LogRecord", "PredictionLog"]

logger = logging.getLogger("mlpilot.serving.predlog")

_DAY_MS = 86_400_000
_SLICE = 2048


@dataclass(slots=True)
class LogRecord:
    request_id: str
    time_ms: int
    protocol: str
    model: str
    version: int
    rows: int
    columns: Columns
    outputs: dict[str, np.ndarray[Any, Any]]
    latency_s: float
    entity_id: str | list[str] | None = None
    segments: dict[str, str] = field(default_factory=dict)


def _fields(name: str, arr: np.ndarray[Any, Any]) -> list[tuple[str, Any]]:
    import pyarrow as pa

    if arr.ndim == 1:
        return [(name, pa.array(arr))]
    if arr.ndim == 2:
        return [(f"{name}_{j}", pa.array(arr[:, j])) for j in range(arr.shape[1])]
    width = int(np.prod(arr.shape[1:]))
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    return [(name, pa.FixedSizeListArray.from_arrays(flat, width))]


def _struct(parts: list[dict[str, np.ndarray[Any, Any]]], names: list[str]) -> Any:
    import pyarrow as pa

    arrays: list[Any] = []
    fields: list[str] = []
    for name in names:
        merged = np.concatenate([p[name] for p in parts]) if len(parts) > 1 else parts[0][name]
        for field_name, array in _fields(name, merged):
            fields.append(field_name)
            arrays.append(array)
    return pa.StructArray.from_arrays(arrays, names=fields)


def _entity_column(records: list[LogRecord], counts: np.ndarray[Any, Any]) -> Any:
    import pyarrow as pa

    if all(r.entity_id is None for r in records):
        return pa.nulls(int(counts.sum()), pa.string())
    if not any(isinstance(r.entity_id, list) for r in records):
        return pa.array(np.repeat(np.array([r.entity_id for r in records], dtype=object), counts), pa.string())
    values: list[str | None] = []
    for r in records:
        values.extend(r.entity_id if isinstance(r.entity_id, list) else [r.entity_id] * r.rows)
    return pa.array(values, pa.string())


def _segments_column(records: list[LogRecord], counts: np.ndarray[Any, Any]) -> Any:
    import pyarrow as pa

    sizes = np.fromiter((len(r.segments) for r in records), dtype=np.int32, count=len(records))
    offsets = np.zeros(int(counts.sum()) + 1, dtype=np.int32)
    np.cumsum(np.repeat(sizes, counts), out=offsets[1:])
    keys: list[str] = []
    items: list[str] = []
    for r in records:
        if r.segments:
            keys.extend(list(r.segments) * r.rows)
            items.extend(list(r.segments.values()) * r.rows)
    return pa.MapArray.from_arrays(pa.array(offsets), pa.array(keys, pa.string()), pa.array(items, pa.string()))


def build_table(records: list[LogRecord]) -> Any:
    """One Arrow table of records that share model, version and output names."""
    import pyarrow as pa

    counts = np.fromiter((r.rows for r in records), dtype=np.int64, count=len(records))
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    first = records[0]
    return pa.table(
        {
            "request_id": pa.array(np.repeat(np.array([r.request_id for r in records], dtype=object), counts)),
            "row": pa.array((np.arange(total) - starts).astype(np.int32)),
            "time": pa.array(np.repeat([r.time_ms for r in records], counts), pa.timestamp("ms", tz="UTC")),
            "protocol": pa.array(np.repeat(np.array([r.protocol for r in records], dtype=object), counts)),
            "model": pa.array([first.model] * total, pa.string()),
            "version": pa.array(np.full(total, first.version, dtype=np.int64)),
            "latency_ms": pa.array(np.repeat([r.latency_s * 1000.0 for r in records], counts)),
            "entity_id": _entity_column(records, counts),
            "segments": _segments_column(records, counts),
            "inputs": _struct([r.columns for r in records], list(first.columns)),
            "outputs": _struct([r.outputs for r in records], sorted(first.outputs)),
        }
    )


class PredictionLog:
    """Buffers prediction records and writes them as Parquet segments under ``url`` (a folder, ``file://``,
    ``s3://``).

    >>> log = PredictionLog("/tmp/mlp/predictions", sample_rate=0.1).start()  # doctest: +SKIP
    >>> log.record(record); log.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        sample_rate: float = 1.0,
        flush_interval: float = 5.0,
        flush_rows: int = 20_000,
        max_buffer_rows: int = 200_000,
        metrics: ServingMetrics | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        from mlpilot.errors import ConfigError

        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(f"log_sample_rate: expected 0..1, got {sample_rate}", key="log_sample_rate")
        if flush_interval <= 0:
            raise ConfigError(f"log_flush_interval: expected > 0 s, got {flush_interval}", key="log_flush_interval")
        import fsspec

        self.url = url.rstrip("/")
        self.sample_rate = sample_rate
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.max_buffer_rows = max_buffer_rows
        self.metrics = metrics
        self._fs, self._root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._buffer: list[LogRecord] = []
        self._rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written_paths: list[str] = []

    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlpilot-predlog", daemon=True)
            self._thread.start()
        return self

    def sampled(self) -> bool:
        """Whether the next request should be logged (decided before building its record)."""
        return self.sample_rate >= 1.0 or random.random() < self.sample_rate

    def record(self, rec: LogRecord) -> None:
        """Queue one request's predictions; drops it (counted) when the buffer is full."""
        with self._lock:
            if self._rows + rec.rows > self.max_buffer_rows:
                if self.metrics is not None:
                    self.metrics.log_dropped.inc(rec.rows)
                return
            self._buffer.append(rec)
            self._rows += rec.rows
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> list[str]:
        """Write what is buffered now; returns the paths written."""
        with self._lock:
            records, self._buffer = self._buffer, []
            self._rows = 0
        if not records:
            return []
        groups: dict[tuple[str, int, int, tuple[str, ...], tuple[str, ...]], list[LogRecord]] = defaultdict(list)
        for r in records:
            groups[(r.model, r.version, r.time_ms // _DAY_MS, tuple(r.columns), tuple(r.outputs))].append(r)
        paths: list[str] = []
        with self._write_lock:
            for (model, version, day_number, _, _), group in groups.items():
                rows = sum(r.rows for r in group)
                day = datetime.fromtimestamp(day_number * _DAY_MS / 1000, tz=UTC).strftime("%Y-%m-%d")
                try:
                    paths.append(self._write(model, version, day, group))
                except Exception:
                    logger.exception("prediction log: could not write %d rows of %s v%s", rows, model, version)
                    if self.metrics is not None:
                        self.metrics.log_dropped.inc(rows)
                    continue
                if self.metrics is not None:
                    self.metrics.log_rows.inc(rows)
                    self.metrics.log_segments.inc()
            self.written_paths.extend(paths)
        return paths

    def _write(self, model: str, version: int, day: str, group: list[LogRecord]) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # In slices, yielding between them: the event loop needs the GIL more urgently than this thread does.
        tables = []
        for start in range(0, len(group), _SLICE):
            tables.append(build_table(group[start : start + _SLICE]))
            time.sleep(0)
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        folder = f"{self._root}/model={model}/version={version}/date={day}"
        name = f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}.parquet"
        self._fs.makedirs(folder, exist_ok=True)
        # Readers glob *.parquet: the dot-prefixed temporary name keeps half-written files out of their sight.
        tmp = f"{folder}/.{name}.tmp"
        with self._fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        self._fs.mv(tmp, f"{folder}/{name}")
        return f"{folder}/{name}"

    def close(self) -> None:
        """Stop the background writer and flush everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
