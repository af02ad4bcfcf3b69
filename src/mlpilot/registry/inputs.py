"""Model inputs: recognising NumPy, pandas, Arrow, dicts of arrays and lists, and converting between them.

Three canonical forms reach a flavor: a pandas ``DataFrame`` (``kind="dataframe"``), one NumPy array
(``kind="ndarray"``) or a ``dict`` of NumPy arrays (``kind="dict"``). :func:`canonical` turns an example into
one of them; :func:`conform` turns whatever a caller passes at prediction time into the form a signature
expects, casting dtypes only where no information is lost.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlpilot.errors import InvalidInputError, MissingDependencyError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlpilot.registry.signature import Signature, TensorSpec

__all__ = [
    "InputKind",
    "canonical",
    "conform",
    "is_arrow",
    "is_dataframe",
    "num_rows",
    "source_type",
    "take_rows",
    "to_arrow_table",
]

InputKind = Literal["dataframe", "ndarray", "dict"]
_NUMERIC_KINDS = "biuf"


def require_pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError("pandas", "pandas") from exc
    return pd


def _loaded_type(module: str, name: str) -> type | None:
    # An instance can only exist if its library is imported already: no import cost for NumPy users. getattr,
    # because another thread may be half-way through importing the library.
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def is_dataframe(data: object) -> bool:
    cls = _loaded_type("pandas", "DataFrame")
    return cls is not None and isinstance(data, cls)


def _is_series(data: object) -> bool:
    cls = _loaded_type("pandas", "Series")
    return cls is not None and isinstance(data, cls)


def is_arrow(data: object) -> bool:
    return any(
        cls is not None and isinstance(data, cls)
        for cls in (_loaded_type("pyarrow", "Table"), _loaded_type("pyarrow", "RecordBatch"))
    )


def source_type(data: object) -> str:
    """A short label for the type of ``data``: ``pandas``, ``arrow``, ``numpy``, ``dict`` or ``list``."""
    if is_dataframe(data) or _is_series(data):
        return "pandas"
    if is_arrow(data):
        return "arrow"
    if isinstance(data, Mapping):
        return "dict"
    if isinstance(data, list | tuple):
        return "list"
    return "numpy"


def _as_array(value: Any, field: str) -> np.ndarray[Any, Any]:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{field}: cannot be read as an array: {exc}", field=field) from exc
    if arr.ndim == 0:
        raise InvalidInputError(f"{field}: expected a batch (at least one dimension), got a scalar", field=field)
    return arr


def _records_frame(data: Sequence[Any]) -> Any:
    pd = require_pandas()
    return pd.DataFrame.from_records(list(data))


def canonical(data: Any, *, field: str = "input_example") -> tuple[InputKind, Any]:
    """The canonical form of an example and its kind.

    >>> kind, value = canonical([[1.0, 2.0], [3.0, 4.0]])
    >>> kind, value.shape
    ('ndarray', (2, 2))
    """
    if data is None:
        raise InvalidInputError(f"{field}: expected data, got None", field=field)
    if is_dataframe(data):
        if len(data.columns) == 0:
            raise InvalidInputError(f"{field}: the DataFrame has no columns", field=field)
        return "dataframe", data
    if _is_series(data):
        return "ndarray", _as_array(data.to_numpy(), field)
    if is_arrow(data):
        require_pandas()
        return "dataframe", data.to_pandas()
    if isinstance(data, Mapping):
        if not data or not all(isinstance(k, str) and k for k in data):
            raise InvalidInputError(f"{field}: expected a non-empty dict of arrays keyed by name", field=field)
        arrays = {k: _as_array(v, f"{field}.{k}") for k, v in data.items()}
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise InvalidInputError(f"{field}: the arrays have different batch sizes {sorted(lengths)}", field=field)
        return "dict", arrays
    if isinstance(data, list | tuple):
        if not data:
            raise InvalidInputError(f"{field}: expected at least one row, got an empty list", field=field)
        if isinstance(data[0], Mapping):
            return "dataframe", _records_frame(data)
    return "ndarray", _as_array(data, field)


def num_rows(data: Any) -> int:
    """Rows (the batch dimension) of any supported input."""
    if is_dataframe(data) or is_arrow(data) or _is_series(data):
        return len(data)
    if isinstance(data, Mapping):
        return len(np.asarray(next(iter(data.values())))) if data else 0
    return len(data) if isinstance(data, list | tuple) else int(np.asarray(data).shape[0])


def take_rows(data: Any, rows: np.ndarray[Any, Any]) -> Any:
    """The given rows of any supported input, in the same type where possible."""
    if is_dataframe(data) or _is_series(data):
        return data.iloc[rows]
    if is_arrow(data):
        return data.take(rows)
    if isinstance(data, Mapping):
        return {k: np.asarray(v)[rows] for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [data[int(i)] for i in rows]
    return np.asarray(data)[rows]


def cast_array(values: np.ndarray[Any, Any], dtype: str, field: str) -> np.ndarray[Any, Any]:
    """``values`` as ``dtype`` when that loses nothing (int to float, integral floats to int)."""
    try:
        target = np.dtype(dtype)
    except TypeError:
        return values  # pandas-only dtypes ("string", "category", "Int64") are not ours to coerce
    source = values.dtype
    if source == target or target.kind not in _NUMERIC_KINDS:
        return values
    lossless = np.can_cast(source, target, "same_kind") or source.kind == "b"
    if not lossless and source.kind == "f" and target.kind in "iu":
        finite = np.isfinite(values)
        lossless = bool(finite.all()) and bool((np.mod(values, 1) == 0).all())
    if not lossless and source.kind != "O":
        raise InvalidInputError(f"{field}: expected {dtype}, got {source} values", field=field)
    try:
        return values.astype(target)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{field}: expected {dtype}: {exc}", field=field) from exc


def _check_shape(arr: np.ndarray[Any, Any], spec: TensorSpec) -> np.ndarray[Any, Any]:
    want = spec.shape
    if want == [-1, 1] and arr.ndim == 1:
        arr = arr.reshape(-1, 1)  # a plain column for a [N, 1] tensor (ONNX graphs of one-column inputs)
    elif arr.ndim == len(want) - 1 and all(d in (-1, n) for d, n in zip(want[1:], arr.shape, strict=True)):
        arr = arr[np.newaxis, ...]  # one row without its batch axis
    if arr.ndim != len(want) or any(d not in (-1, n) for d, n in zip(want[1:], arr.shape[1:], strict=True)):
        raise InvalidInputError(
            f"{spec.name}: expected shape {want} (-1 is any size), got {list(arr.shape)}", field=spec.name
        )
    return cast_array(arr, spec.dtype, spec.name)


def _frame_from(data: Any, names: list[str]) -> Any:
    pd = require_pandas()
    if is_dataframe(data):
        return data
    if is_arrow(data):
        return data.to_pandas()
    if isinstance(data, Mapping):
        return pd.DataFrame({k: np.asarray(v) for k, v in data.items()})
    if isinstance(data, list | tuple) and data and isinstance(data[0], Mapping):
        return _records_frame(data)
    if isinstance(data, list | tuple) and data:
        # Rows of mixed values: NumPy would turn them all into strings; pandas infers each column's type.
        rows = list(data) if isinstance(data[0], list | tuple | np.ndarray) else [list(data)]
        if any(len(row) != len(names) for row in rows):
            raise InvalidInputError(f"input: expected rows of {len(names)} values ({', '.join(names)})", field="input")
        return pd.DataFrame(rows, columns=names)
    arr = _as_array(data, "input")
    if arr.ndim == 1 and len(arr) == len(names):
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise InvalidInputError(
            f"input: expected rows of {len(names)} columns ({', '.join(names)}), got shape {list(arr.shape)}",
            field="input",
        )
    return pd.DataFrame({name: arr[:, j] for j, name in enumerate(names)})


def _conform_frame(data: Any, signature: Signature) -> Any:
    names = [spec.name for spec in signature.inputs]
    frame = _frame_from(data, names)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{missing[0]}: the input has no column {missing[0]!r} (expected columns: {', '.join(names)})",
            field=missing[0],
        )
    if list(frame.columns) != names:
        frame = frame[names]
    for spec in signature.inputs:
        column = frame[spec.name]
        if not isinstance(column.dtype, np.dtype):
            continue
        values = column.to_numpy()
        cast = cast_array(values, spec.dtype, spec.name)
        if cast is not values:
            frame = frame.assign(**{spec.name: cast})
    return frame


def _conform_ndarray(data: Any, spec: TensorSpec) -> np.ndarray[Any, Any]:
    if is_dataframe(data):
        arr = data.to_numpy()
    elif is_arrow(data):
        arr = np.column_stack([col.to_numpy(zero_copy_only=False) for col in data.columns])
    elif isinstance(data, Mapping):
        if spec.name not in data:
            raise InvalidInputError(f"{spec.name}: the input has no key {spec.name!r}", field=spec.name)
        arr = _as_array(data[spec.name], spec.name)
    else:
        arr = _as_array(data, spec.name)
    return _check_shape(arr, spec)


def _conform_dict(data: Any, signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    if is_arrow(data):
        data = {name: data.column(name).to_numpy() for name in data.column_names}
    elif is_dataframe(data):
        data = {str(k): data[k].to_numpy() for k in data.columns}
    elif not isinstance(data, Mapping):
        if len(signature.inputs) == 1:
            return {signature.inputs[0].name: _check_shape(_as_array(data, "input"), signature.inputs[0])}
        raise InvalidInputError(
            f"input: this model takes named inputs ({', '.join(signature.input_names)}): pass a dict",
            field="input",
        )
    out: dict[str, np.ndarray[Any, Any]] = {}
    for spec in signature.inputs:
        if spec.name not in data:
            raise InvalidInputError(f"{spec.name}: the input has no key {spec.name!r}", field=spec.name)
        out[spec.name] = _check_shape(_as_array(data[spec.name], spec.name), spec)
    return out


def conform(data: Any, signature: Signature | None) -> Any:
    """Convert ``data`` to the canonical form ``signature`` describes, checking names, shapes and dtypes.

    Without a signature the data passes through, except that Arrow becomes pandas (or NumPy without pandas).
    """
    if data is None:
        raise InvalidInputError("input: expected data, got None", field="input")
    if signature is None:
        if is_arrow(data):
            try:
                return data.to_pandas()
            except ImportError:
                return np.column_stack([c.to_numpy(zero_copy_only=False) for c in data.columns])
        return data
    if signature.kind == "dataframe":
        return _conform_frame(data, signature)
    if signature.kind == "ndarray":
        return _conform_ndarray(data, signature.inputs[0])
    return _conform_dict(data, signature)


def _array_columns(name: str, arr: np.ndarray[Any, Any]) -> dict[str, pa.Array]:
    import pyarrow as pa

    if arr.ndim == 1:
        return {name: pa.array(arr)}
    if arr.ndim == 2:
        return {f"{name}_{j}": pa.array(arr[:, j]) for j in range(arr.shape[1])}
    width = int(np.prod(arr.shape[1:]))
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    return {name: pa.FixedSizeListArray.from_arrays(flat, width)}


def to_arrow_table(kind: InputKind, value: Any, *, name: str = "input") -> pa.Table:
    """An Arrow table of canonical input: DataFrame columns as they are; a 2-D array ``x`` as columns
    ``x_0 … x_k``; a higher-dimensional array as one fixed-size list column of flattened rows.
    """
    import pyarrow as pa

    if kind == "dataframe":
        return pa.Table.from_pandas(value, preserve_index=False)
    arrays = {name: value} if kind == "ndarray" else value
    columns: dict[str, pa.Array] = {}
    for key, arr in arrays.items():
        columns.update(_array_columns(key, np.asarray(arr)))
    return pa.table(columns)
