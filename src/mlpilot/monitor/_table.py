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
import pyarrow.compute as pc

from mlpilot.errors import InvalidInputError

__all__ = ["CategoricalColumn", "Column", "NumericColumn", "Table", "to_table"]

IntArray = npt.NDArray[np.int64]
_PARALLEL_CELLS = 2_000_000
_WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class NumericColumn:
    """Float64 values with NaN for missing, either held or converted from Arrow on each access.

    Converting lazily keeps a multi-chunk Arrow column from being copied into NumPy for the whole check: the
    worker profiling it converts, reads, and lets the copy go. ``materialized()`` converts once and keeps it.
    """

    source: npt.NDArray[np.float64] | pa.ChunkedArray

    kind = "numeric"

    @property
    def values(self) -> npt.NDArray[np.float64]:
        if isinstance(self.source, np.ndarray):
            return self.source
        return _float_values(self.source)

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
        f"table: expected a pandas or polars DataFrame, a pyarrow Table or a dict of arrays, got {type(data).__name__}",
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


def _float_values(col: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    as_float = col if col.type == pa.float64() else pc.cast(col, pa.float64())
    if as_float.null_count:
        as_float = pc.fill_null(as_float, np.nan)
    # Zero-copy for a single chunk without nulls: the values are only read, never written.
    values = np.asarray(as_float.to_numpy(), dtype=np.float64)
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


def _categorical(name: str, col: pa.ChunkedArray) -> CategoricalColumn:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.type == pa.null():
        return CategoricalColumn(np.full(len(arr), -1, dtype=np.int64), [])
    try:
        if not pa.types.is_dictionary(arr.type):
            if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                arr = pc.cast(arr, pa.string())
            arr = pc.dictionary_encode(arr)
        dictionary = pc.cast(arr.dictionary, pa.string())
    except pa.ArrowException as exc:
        raise InvalidInputError(f"column {name!r}: cannot read {arr.type} values as categories", field=name) from exc
    codes = np.asarray(pc.fill_null(arr.indices, -1).to_numpy(), dtype=np.int64)
    categories = [str(v) if v is not None else "" for v in dictionary.to_pylist()]
    if len(set(categories)) != len(categories):
        # A dictionary may repeat a value after casting (e.g. 1 and 1.0 both as "1"): remap to distinct codes.
        distinct = sorted(set(categories))
        remap = np.array([distinct.index(c) for c in categories], dtype=np.int64)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        categories = distinct
    return CategoricalColumn(codes, categories)


def to_table(
    data: Any,
    *,
    kinds: Mapping[str, str] | None = None,
    categorical: Collection[str] = (),
) -> Table:
    """Convert ``data`` to typed columns.

    ``kinds`` forces a column's kind (``"numeric"`` or ``"categorical"``), e.g. to read a window the way its
    reference was read; ``categorical`` names numeric columns to treat as categories. Other columns are typed
    by
    their Arrow type; temporal, nested and binary columns are skipped with a note.
    """
    arrow = _to_arrow(data)
    columns: dict[str, Column] = {}
    skipped: dict[str, str] = {}
    forced = dict(kinds or {})
    for name in categorical:
        forced[name] = "categorical"
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
