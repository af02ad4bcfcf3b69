"""The lookup log: every serving-time feature lookup (who, when, which values), as Parquet, for parity checks.

Written by :class:`~mlpilot.features.serving.FeatureLookup`, read by :func:`~mlpilot.features.parity`.
Records are buffered in memory and written by a background thread, never on the request path; ``close()``
flushes. Layout (a folder, ``file://`` or ``s3://``)::

    <url>/date=<YYYY-MM-DD>/part-<epoch ms>-<random>.parquet

One row per looked-up entity row, with the columns ``request_id`` (string), ``row`` (int32, the row within its
request), ``time`` (timestamp[us, UTC]: the instant the lookup read at), the join keys as the caller sent them,
then one column per feature typed by its declared dtype. The schema metadata key ``mlpilot.lookup`` holds, as
JSON, the join keys and, per feature column, its view, feature and dtype, so the log explains itself.

    >>> log = LookupLog("/tmp/lookups", join_keys=["customer_id"], sources={"amount": ("txn", "amount")},
    ...                 dtypes={"amount": "float64"})            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlpilot.errors import InvalidInputError

__all__ = ["LOOKUP_METADATA_KEY", "LookupLog"]

LOOKUP_METADATA_KEY = b"mlpilot.lookup"
_RESERVED = ("request_id", "row", "time")
_PIECE = 1_000

logger = logging.getLogger("mlpilot.features.lookup_log")


class LookupLog:
    """Buffers lookups and writes them as Parquet under ``url``; thread-safe. Use :meth:`start`/:meth:`close`."""

    def __init__(
        self,
        url: str,
        *,
        join_keys: Sequence[str],
        sources: Mapping[str, tuple[str, str]],
        dtypes: Mapping[str, str],
        flush_interval: float = 5.0,
        flush_rows: int = 20_000,
        max_buffer_rows: int = 200_000,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        import fsspec

        # Imported now, at startup: a first import inside the writer thread would hold the GIL for a while
        # and stall the requests being served (pyarrow loads its pandas shim on its first conversion).
        import pyarrow
        import pyarrow.parquet

        pyarrow.array([0.0], pyarrow.float64())

        clash = [name for name in (*join_keys, *dtypes) if name in _RESERVED]
        if clash:
            raise InvalidInputError(
                f"lookup log: column {clash[0]!r} is reserved (request_id, row, time); rename it with full_names",
                field="features",
            )
        if flush_interval <= 0 or flush_rows < 1 or max_buffer_rows < 1:
            raise InvalidInputError("lookup log: flush_interval, flush_rows and max_buffer_rows must be positive")
        self.url = str(url).rstrip("/")
        self.join_keys = tuple(join_keys)
        self.dtypes = dict(dtypes)
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.max_buffer_rows = max_buffer_rows
        self._metadata = json.dumps(
            {
                "join_keys": list(self.join_keys),
                "features": [
                    {"column": name, "view": sources[name][0], "feature": sources[name][1], "dtype": dtype}
                    for name, dtype in self.dtypes.items()
                ],
            }
        ).encode()
        self._fs, self._root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self._local = "file" in (self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,))
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._columns: dict[str, list[Any]] = self._empty()
        self._rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: rows dropped because the buffer was full or a write failed
        self.dropped = 0
        self.written_paths: list[str] = []

    def _empty(self) -> dict[str, list[Any]]:
        return {name: [] for name in (*_RESERVED, *self.join_keys, *self.dtypes)}

    def start(self) -> LookupLog:
        """Start the background writer (without it, records are written on :meth:`flush` and :meth:`close`)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mlpilot-lookup-log", daemon=True)
            self._thread.start()
        return self

    def record(self, request_id: str, now_us: int, columns: Mapping[str, Sequence[Any]], rows: int) -> None:
        """Queue one lookup: ``columns`` holds at least the join keys and every feature, ``rows`` long."""
        with self._lock:
            if self._rows + rows > self.max_buffer_rows:
                self.dropped += rows
                return
            buffer = self._columns
            buffer["request_id"].extend([request_id] * rows)
            buffer["row"].extend(range(rows))
            buffer["time"].extend([now_us] * rows)
            for name in (*self.join_keys, *self.dtypes):
                buffer[name].extend(columns[name])
            self._rows += rows
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
            columns, self._columns = self._columns, self._empty()
            rows, self._rows = self._rows, 0
        if not rows:
            return []
        with self._write_lock:
            try:
                path = self._write(columns)
            except Exception:
                logger.exception("lookup log: could not write %d rows to %s", rows, self.url)
                with self._lock:
                    self.dropped += rows
                return []
            self.written_paths.append(path)
        return [path]

    def _write(self, columns: dict[str, list[Any]]) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from mlpilot.features._arrowtypes import output_type

        def convert(values: list[Any], kind: Any = None) -> Any:
            # Small pieces: converting Python objects holds the GIL, and a request thread must not wait long.
            return pa.chunked_array(
                [pa.array(values[i : i + _PIECE], kind) for i in range(0, len(values), _PIECE)], kind
            )

        arrays: dict[str, Any] = {
            "request_id": convert(columns["request_id"], pa.string()),
            "row": convert(columns["row"], pa.int32()),
            "time": convert(columns["time"], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
        for key in self.join_keys:
            arrays[key] = convert(columns[key])
        for name, dtype in self.dtypes.items():
            arrays[name] = convert(columns[name], output_type(dtype))
        table = pa.table(arrays).replace_schema_metadata({LOOKUP_METADATA_KEY: self._metadata})
        day = datetime.fromtimestamp(columns["time"][0] / 1e6, tz=UTC).strftime("%Y-%m-%d")
        folder = f"{self._root}/date={day}"
        name = f"part-{time.time_ns() // 1_000_000}-{uuid.uuid4().hex[:12]}.parquet"
        self._fs.makedirs(folder, exist_ok=True)
        # Readers glob *.parquet: the dot-prefixed temporary name keeps half-written files out of their sight.
        tmp = f"{folder}/.{name}.tmp"
        if self._local:
            # pyarrow's own file writer runs without the GIL (a Python file object would take it per write).
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, f"{folder}/{name}")
        else:
            with self._fs.open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
            self._fs.mv(tmp, f"{folder}/{name}")
        return f"{folder}/{name}"

    def close(self) -> None:
        """Stop the background writer and write everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
