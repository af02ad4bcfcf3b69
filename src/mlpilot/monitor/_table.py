"""Normalize pandas, polars, Arrow tables and dicts of arrays into typed NumPy columns.

Numbers become float64 with NaN for missing (non-finite values count as missing); strings, booleans and
dictionary-encoded values become integer codes (-1 for missing) into a list of string categories. pandas and
polars are never imported here: their frames are recognized by their conversion methods.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from mlpilot.errors import InvalidInputError

__all__ = [
    "CategoricalColumn",
    "Column",
    "NumericColumn",
    "ParquetColumn",
    "Table",
    "release_arrow_memory",
    "to_table",
]

IntArray = npt.NDArray[np.int64]
_PARALLEL_CELLS = 2_000_000
_WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class ParquetColumn:
    """One column of a Parquet file, read only when needed (and then by itself, single-threaded).

    ``metadata`` is the file's footer, parsed once and shared: each read opens the file again (readers are not
    shared between threads) but does not parse the footer again.
    """

    path: str
    name: str
    metadata: Any = None

    def read(self, *, as_dictionary: bool = False) -> pa.ChunkedArray:
        """The column; ``as_dictionary`` keeps Parquet's dictionary encoding (no strings materialized)."""
        import pyarrow.parquet as pq

        try:
            # ParquetFile, not read_table: read_table goes through pyarrow.dataset, whose libraries alone add
            # ~50 MB to the process. An OSFile, not the path: resolving a path to a filesystem costs more than
            # reading a column of 100,000 rows.
            with pa.OSFile(self.path) as source:
                reader = pq.ParquetFile(
                    source, metadata=self.metadata, read_dictionary=[self.name] if as_dictionary else None
                )
                return reader.read(columns=[self.name], use_threads=False).column(0)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidInputError(
                f"column {self.name!r}: cannot read it from {self.path}: {exc}", field=self.name
            ) from exc


@dataclass(frozen=True)
class NumericColumn:
    """Float64 values with NaN for missing, either held or converted (from Arrow, or read from a Parquet file)
    on each access.

    Converting lazily keeps a column from being copied into NumPy for the whole check: the worker profiling it
    converts (or reads), sorts, and lets the copy go. ``materialized()`` converts once and keeps it.
    """

    source: npt.NDArray[np.float64] | pa.ChunkedArray | ParquetColumn

    kind = "numeric"

    @property
    def values(self) -> npt.NDArray[np.float64]:
        if isinstance(self.source, np.ndarray):
            return self.source
        if isinstance(self.source, ParquetColumn):
            return _float_values(self.source.read())
        return _float_values(self.source)

    @property
    def reads_file(self) -> bool:
        return isinstance(self.source, ParquetColumn)

    def materialized(self) -> NumericColumn:
        return self if isinstance(self.source, np.ndarray) else NumericColumn(self.values)

    def take(self, rows: IntArray) -> NumericColumn:
        return NumericColumn(self.values[rows])


@dataclass(frozen=True)
class CategoricalColumn:
    codes: IntArray
    categories: list[str]

    kind = "categorical"

    def take(self, rows: IntArray) -> CategoricalColumn:
        return CategoricalColumn(self.codes[rows], self.categories)

    def labels(self) -> npt.NDArray[np.object_]:
        """Category strings per row (None for missing)."""
        lookup = np.array([*self.categories, None], dtype=object)
        return lookup[self.codes]  # type: ignore[no-any-return]


Column = NumericColumn | CategoricalColumn


@dataclass
class Table:
    """Columns of equal length plus notes about columns that were skipped."""

    columns: dict[str, Column]
    rows: int
    skipped: dict[str, str]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def take(self, rows: IntArray) -> Table:
        return Table({k: c.take(rows) for k, c in self.columns.items()}, int(rows.size), dict(self.skipped))

    def materialized(self) -> Table:
        """Convert lazy columns once, before many row subsets are taken."""
        columns = {k: c.materialized() if isinstance(c, NumericColumn) else c for k, c in self.columns.items()}
        return Table(columns, self.rows, dict(self.skipped))


def _to_arrow(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    try:
        if module == "pandas" and hasattr(data, "columns"):
            frame = data.copy(deep=False)
            frame.columns = [str(c) for c in frame.columns]
            return pa.Table.from_pandas(frame, preserve_index=False)
        if module == "polars" and hasattr(data, "to_arrow"):
            return data.to_arrow()
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidInputError(f"table: cannot convert the {module} frame to Arrow: {exc}", field="table") from exc
    if isinstance(data, Mapping):
        arrays: dict[str, pa.Array] = {}
        length: int | None = None
        for name, values in data.items():
            arrays[str(name)] = _array_from_values(str(name), values)
            if length is not None and len(arrays[str(name)]) != length:
                raise InvalidInputError(
                    f"column {name!r}: expected {length} values like the columns before it, "
                    f"got {len(arrays[str(name)])}",
                    field=str(name),
                )
            length = len(arrays[str(name)])
        return pa.table(arrays) if arrays else pa.table({})
    raise InvalidInputError(
        f"table: expected a pandas or polars DataFrame, a pyarrow Table, a dict of arrays or a Parquet file path, "
        f"got {type(data).__name__}",
        field="table",
    )


def _array_from_values(name: str, values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"column {name!r}: expected a 1-D array, got shape {arr.shape}", field=name)
    try:
        if arr.dtype.kind in "iuf":
            return pa.array(arr)
        if arr.dtype.kind == "b":
            return pa.array(arr, type=pa.bool_())
        return pa.array(arr.tolist() if arr.dtype.kind == "O" else arr.astype(str), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidInputError(f"column {name!r}: cannot convert values: {exc}", field=name) from exc


def _is_numeric_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _is_categorical_type(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_boolean(t)
        or pa.types.is_dictionary(t)
    )


def _primitive_view(arr: pa.Array) -> npt.NDArray[Any]:
    """The values buffer of an integer or float array as a NumPy view (nulls hold arbitrary values).

    Read from the buffers rather than with ``Array.to_numpy``: pyarrow's NumPy conversion adds ~35 MB to the
    process the first time it runs, which is most of what a check of 100,000 rows needs besides the data.
    """
    t = arr.type
    kind = "f" if pa.types.is_floating(t) else ("i" if pa.types.is_signed_integer(t) else "u")
    dtype = np.dtype(f"{kind}{t.bit_width // 8}")
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr) + arr.offset)[arr.offset :]


def _validity(arr: pa.Array) -> npt.NDArray[np.bool_]:
    bits = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[arr.offset : arr.offset + len(arr)].astype(bool)


def _chunk_floats(arr: pa.Array) -> npt.NDArray[np.float64]:
    view = _primitive_view(arr)
    if arr.null_count == 0:
        return view if view.dtype == np.float64 else view.astype(np.float64)
    values = view.astype(np.float64)  # a copy: the nulls can be overwritten
    values[~_validity(arr)] = np.nan
    return values


def _float_values(col: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        import pyarrow.compute as pc  # only here: its kernels add ~9 MB to a process that never needs them

        col = pc.cast(col, pa.float64())
    chunks = [_chunk_floats(c) for c in col.chunks]
    # Zero-copy for one chunk of float64 without nulls: the values are only read, never written.
    if not chunks:
        return np.empty(0)
    values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    infinite = np.isinf(values)
    if infinite.any():
        values = np.where(infinite, np.nan, values)
    return values


def _numeric(name: str, col: pa.ChunkedArray) -> NumericColumn:
    if col.type == pa.null():
        return NumericColumn(np.full(len(col), np.nan))
    if _is_numeric_type(col.type):
        return NumericColumn(col)  # casting numbers to float64 cannot fail: convert when read
    try:
        return NumericColumn(_float_values(col))
    except pa.ArrowException as exc:
        raise InvalidInputError(
            f"column {name!r}: expected numbers like the reference, got {col.type}", field=name
        ) from exc


def _cast(arr: Any, to: pa.DataType) -> Any:
    import pyarrow.compute as pc

    return pc.cast(arr, to)


def _categorical(name: str, col: pa.ChunkedArray) -> CategoricalColumn:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.type == pa.null():
        return CategoricalColumn(np.full(len(arr), -1, dtype=np.int64), [])
    try:
        if not pa.types.is_dictionary(arr.type):
            if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                arr = _cast(arr, pa.string())
            arr = arr.dictionary_encode()
        dictionary = arr.dictionary
        if not pa.types.is_string(dictionary.type):
            dictionary = _cast(dictionary, pa.string())
    except pa.ArrowException as exc:
        raise InvalidInputError(f"column {name!r}: cannot read {arr.type} values as categories", field=name) from exc
    codes = _primitive_view(arr.indices).astype(np.int64)
    if arr.indices.null_count:
        codes[~_validity(arr.indices)] = -1
    categories = [str(v) if v is not None else "" for v in dictionary.to_pylist()]
    if len(set(categories)) != len(categories):
        # A dictionary may repeat a value after casting (e.g. 1 and 1.0 both as "1"): remap to distinct codes.
        distinct = sorted(set(categories))
        remap = np.array([distinct.index(c) for c in categories], dtype=np.int64)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        categories = distinct
    return CategoricalColumn(codes, categories)


def release_arrow_memory() -> None:
    """Hand the Arrow allocator's freed pages back to the OS. Its default (mimalloc) keeps them per thread, so
    without this every worker that read a Parquet column would hold its high-water mark until it exits."""
    pa.default_memory_pool().release_unused()


def _is_parquet_path(data: Any) -> bool:
    return isinstance(data, str | os.PathLike) and str(data).lower().endswith((".parquet", ".pq"))


def _parquet_table(path: str, forced: Mapping[str, str]) -> Table:
    """Numeric columns stay in the file until a worker profiles them; categories are read (and coded) now."""
    import pyarrow.parquet as pq

    try:
        with pa.OSFile(path) as source:
            metadata = pq.ParquetFile(source).metadata
        schema, rows = metadata.schema.to_arrow_schema(), metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInputError(f"table: cannot read Parquet file {path}: {exc}", field="table") from exc
    columns: dict[str, Column] = {}
    skipped: dict[str, str] = {}
    for field in schema:
        kind = forced.get(field.name)
        if kind is None:
            if _is_categorical_type(field.type):
                kind = "categorical"
            elif _is_numeric_type(field.type) or field.type == pa.null():
                kind = "numeric"
            else:
                skipped[field.name] = f"unsupported type {field.type}"
                continue
        source = ParquetColumn(path, field.name, metadata)
        if kind == "numeric" and _is_numeric_type(field.type):
            columns[field.name] = NumericColumn(source)
        elif kind == "numeric":
            columns[field.name] = _numeric(field.name, source.read())
        else:
            dictionary = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
            columns[field.name] = _categorical(field.name, source.read(as_dictionary=dictionary))
    return Table(columns, rows, skipped)


def to_table(
    data: Any,
    *,
    kinds: Mapping[str, str] | None = None,
    categorical: Collection[str] = (),
) -> Table:
    """Convert ``data`` (a table, or the path of a Parquet file read column by column) to typed columns.

    ``kinds`` forces a column's kind (``"numeric"`` or ``"categorical"``), e.g. to read a window the way its
    reference was read; ``categorical`` names numeric columns to treat as categories. Other columns are typed
    by
    their Arrow type; temporal, nested and binary columns are skipped with a note.
    """
    forced = dict(kinds or {})
    for name in categorical:
        forced[name] = "categorical"
    if _is_parquet_path(data):
        return _parquet_table(os.fspath(data), forced)
    arrow = _to_arrow(data)
    columns: dict[str, Column] = {}
    skipped: dict[str, str] = {}
    todo: list[tuple[str, str, pa.ChunkedArray]] = []
    for name, col in zip(arrow.column_names, arrow.columns, strict=True):
        kind = forced.get(name)
        if kind is None:
            if _is_categorical_type(col.type):
                kind = "categorical"
            elif _is_numeric_type(col.type) or col.type == pa.null():
                kind = "numeric"
            else:
                skipped[name] = f"unsupported type {col.type}"
                continue
        todo.append((name, kind, col))

    def convert(item: tuple[str, str, pa.ChunkedArray]) -> Column:
        name, kind, col = item
        return _numeric(name, col) if kind == "numeric" else _categorical(name, col)

    if arrow.num_rows * len(todo) >= _PARALLEL_CELLS and _WORKERS > 1:
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            converted = list(pool.map(convert, todo))
    else:
        converted = [convert(item) for item in todo]
    columns = {name: col for (name, _, _), col in zip(todo, converted, strict=True)}
    return Table(columns, arrow.num_rows, skipped)
