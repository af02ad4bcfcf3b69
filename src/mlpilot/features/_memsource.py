"""A feature view's rows for the in-memory join engine: narrow index columns read once, features fetched later
by position, straight from Arrow tables or Parquet files (no DuckDB).

Positions follow the DuckDB engine's source order (file by file in :meth:`ParquetSource.files` order, rows in
file order), so "the later row in the source wins" means the same thing in both engines.

Parquet features are fetched row group by row group, only from the row groups that hold a winner, and only the
selected columns: memory stays bounded by a batch of row groups however large the files are.

    >>> source = MemorySource.open(view)            # doctest: +SKIP
    >>> index = source.read_index(["customer_id", "event_time"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from mlpilot.errors import InvalidInputError
from mlpilot.features._arrowtypes import duckdb_type_name
from mlpilot.features.definitions import FeatureView
from mlpilot.features.sources import ParquetSource, TableSource
from mlpilot.features.validate import unreadable_source

__all__ = ["MemorySource", "Unsupported"]

# Decoded bytes of selected row groups read at once while fetching features.
_GATHER_BATCH_BYTES = 16 * 1024 * 1024


class Unsupported(Exception):  # an internal signal: never escapes get_training_set
    """This input is left to the DuckDB engine (the message says why)."""


@dataclass
class _ParquetPart:
    path: str
    file: Any  # pyarrow.parquet.ParquetFile (not thread-safe: used by the calling thread only)
    offset: int
    group_rows: np.ndarray[Any, np.dtype[np.int64]]  # rows per row group


class MemorySource:
    """One view's source opened for the in-memory engine. Use :meth:`open`; close with :meth:`close`."""

    def __init__(self, view: FeatureView, arrow_schema: Any, num_rows: int) -> None:
        self.view = view
        self.arrow_schema = arrow_schema
        self.num_rows = num_rows
        self._table: Any = None
        self._parts: list[_ParquetPart] = []
        self._prefetch: tuple[tuple[str, ...], Future[Any]] | None = None
        names = {}
        for field in arrow_schema:
            name = duckdb_type_name(field.type)
            names[field.name] = name if name is not None else str(field.type).upper()
        self.schema: dict[str, str] = names

    @classmethod
    def open(cls, view: FeatureView, columns: Sequence[str]) -> MemorySource:
        """Open ``view``'s source; raise :class:`Unsupported` unless every needed ``columns`` can be read here."""
        source = view.source
        if isinstance(source, TableSource):
            if source.table is None:
                raise Unsupported("the table source has no data")
            mem = cls(view, source.table.schema, source.table.num_rows)
            mem._table = source.table
        elif isinstance(source, ParquetSource):
            mem = cls._open_parquet(view, source)
        else:
            raise Unsupported(f"{type(source).__name__} is evaluated by DuckDB")
        for column in columns:
            if column in mem.arrow_schema.names and duckdb_type_name(mem.arrow_schema.field(column).type) is None:
                mem.close()
                raise Unsupported(f"column {column!r} has type {mem.arrow_schema.field(column).type}")
        return mem

    @classmethod
    def _open_parquet(cls, view: FeatureView, source: ParquetSource) -> MemorySource:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if source.remote:
            raise Unsupported("remote Parquet files are read by DuckDB")
        try:
            files = source.files()
        except InvalidInputError as exc:
            problem = unreadable_source(view, exc)
            raise InvalidInputError(problem.message, field=problem.field) from exc
        for name in files:
            if any("=" in part for part in PurePath(name).parent.parts):
                raise Unsupported("Hive-partitioned folders are read by DuckDB")
        parts: list[_ParquetPart] = []
        schema = None
        offset = 0
        try:
            for name in files:
                try:
                    file = pq.ParquetFile(name, memory_map=True)
                except (OSError, pa.ArrowException) as exc:
                    raise Unsupported(f"cannot open {name}: {exc}") from exc
                meta = file.metadata
                groups = np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)], np.int64)
                parts.append(_ParquetPart(name, file, offset, groups))
                offset += int(groups.sum())
                if schema is None:
                    schema = file.schema_arrow
                elif not file.schema_arrow.equals(schema):
                    raise Unsupported("the Parquet files do not share one schema")
        except Unsupported:
            for part in parts:
                part.file.close()
            raise
        assert schema is not None
        mem = cls(view, schema, offset)
        mem._parts = parts
        return mem

    def index_bytes(self, columns: int) -> int:
        """A generous estimate of the memory the join needs per source row for ``columns`` index columns."""
        return self.num_rows * (8 * columns + 48)

    def read_index(self, columns: Sequence[str]) -> Any:
        """The ``columns`` of every row, in source order, as one Arrow table."""
        import pyarrow as pa

        if self._table is not None:
            return self._table.select(list(columns))
        tables = [part.file.read(columns=list(columns), use_threads=True) for part in self._parts]
        if not tables:
            return pa.table({c: pa.array([], self.arrow_schema.field(c).type) for c in columns})
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def prefetch(self, columns: Sequence[str], max_bytes: int) -> bool:
        """Start decoding ``columns`` of every Parquet row group in a background thread, if they take at most
        ``max_bytes`` decoded; :meth:`take_rows` then uses them. Returns whether it started.

        The decode (multi-threaded C++) overlaps the matching (NumPy in the calling thread), which is what lets
        a join use both of a small machine's cores; it costs holding the columns whole, hence the cap.
        """
        if self._table is not None or not self._parts:
            return False
        wanted = [self.arrow_schema.get_field_index(c) for c in columns]
        size = 0
        for part in self._parts:
            meta = part.file.metadata
            for group in range(meta.num_row_groups):
                row_group = meta.row_group(group)
                size += sum(row_group.column(i).total_uncompressed_size for i in wanted if i >= 0)
        if size > max_bytes:
            return False
        paths = [part.path for part in self._parts]
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlpilot-features-prefetch")
        self._prefetch = (tuple(columns), pool.submit(_read_whole, paths, list(columns)))
        pool.shutdown(wait=False)
        return True

    @property
    def prefetched(self) -> tuple[str, ...]:
        """The columns :meth:`prefetch` is decoding (empty if none)."""
        return () if self._prefetch is None else self._prefetch[0]

    def take_rows(
        self, positions: np.ndarray[Any, np.dtype[np.int64]], valid: np.ndarray[Any, np.dtype[np.bool_]]
    ) -> dict[str, Any]:
        """The prefetched columns at ``positions`` (any order, repeats allowed), null where not ``valid``."""
        import pyarrow as pa

        assert self._prefetch is not None
        columns, future = self._prefetch
        table = future.result()
        indices = pa.array(positions, pa.int64(), mask=~valid)

        def take(name: str) -> Any:
            column = table.column(name)
            return (column.chunk(0) if column.num_chunks == 1 else column).take(indices)

        # Random reads across columns far larger than the caches wait on memory, not on the CPU: two threads
        # (the kernels release the GIL) wait in parallel.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlpilot-features-take") as pool:
            return dict(zip(columns, pool.map(take, columns), strict=True))

    def gather(self, positions: np.ndarray[Any, np.dtype[np.int64]], columns: Sequence[str]) -> dict[str, Any]:
        """The ``columns`` of the rows at ``positions`` (sorted, unique), as Arrow arrays in that order."""
        import pyarrow as pa

        if self._table is not None:
            taken = self._table.select(list(columns)).take(pa.array(positions, pa.int64()))
            return {c: taken.column(c) for c in columns}
        pieces: list[Any] = []
        for part in self._parts:
            starts = part.offset + np.concatenate(([0], np.cumsum(part.group_rows)))
            bounds = np.searchsorted(positions, starts)
            batch: list[int] = []
            batch_bytes = 0
            meta = part.file.metadata
            wanted = [self.arrow_schema.get_field_index(c) for c in columns]
            for group in range(len(part.group_rows)):
                if bounds[group] == bounds[group + 1]:
                    continue  # no winner in this row group: never decoded
                batch.append(group)
                row_group = meta.row_group(group)
                batch_bytes += sum(row_group.column(i).total_uncompressed_size for i in wanted if i >= 0)
                if batch_bytes >= _GATHER_BATCH_BYTES:
                    pieces.append(self._read_groups(part, batch, starts, bounds, positions, columns))
                    batch, batch_bytes = [], 0
            if batch:
                pieces.append(self._read_groups(part, batch, starts, bounds, positions, columns))
        if not pieces:
            return {c: pa.array([], self.arrow_schema.field(c).type) for c in columns}
        table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return {c: table.column(c) for c in columns}

    @staticmethod
    def _read_groups(
        part: _ParquetPart,
        groups: list[int],
        starts: np.ndarray[Any, np.dtype[np.int64]],
        bounds: np.ndarray[Any, np.dtype[np.int64]],
        positions: np.ndarray[Any, np.dtype[np.int64]],
        columns: Sequence[str],
    ) -> Any:
        import pyarrow as pa

        table = part.file.read_row_groups(groups, columns=list(columns), use_threads=True)
        local: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        base = 0
        for group in groups:
            local.append(positions[bounds[group] : bounds[group + 1]] - starts[group] + base)
            base += int(part.group_rows[group])
        return table.take(pa.array(np.concatenate(local), pa.int64()))

    def close(self) -> None:
        if self._prefetch is not None:
            # Let an unused decode finish (it cannot be interrupted) before the files close; its error, if
            # any, belongs to nobody: the join either used it through take_rows or failed for another reason.
            with contextlib.suppress(Exception):
                self._prefetch[1].result()
            self._prefetch = None
        for part in self._parts:
            part.file.close()
        self._parts = []


def _read_whole(paths: Sequence[str], columns: list[str]) -> Any:
    """``columns`` of every file, concatenated in order (own file handles: runs in the prefetch thread)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        with pq.ParquetFile(path, memory_map=True) as file:
            tables.append(file.read(columns=columns, use_threads=True))
    # One chunk per column: taking rows from contiguous arrays is several times faster than across chunks.
    return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]).combine_chunks()
