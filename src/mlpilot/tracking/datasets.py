"""Dataset fingerprints: a content hash over a canonical Arrow IPC stream, the schema and the row count.

The same rows and columns hash alike whichever library holds them: pandas, polars, pyarrow and NumPy inputs
become one Arrow table whose string, binary and list types are normalised (polars' ``large_string`` and
``string_view`` become ``string``, dictionary columns are decoded), schema metadata is dropped, rows are
re-chunked into fixed-size record batches, so neither the library nor the in-memory chunking changes the
digest. The IPC stream is hashed as it is written: the serialized bytes are never held in memory.

A leakage report the data carries (Arrow schema metadata, pandas ``attrs``, a ``TrainingSet``: see
:mod:`mlpilot.tracking.leakage`) is kept alongside, outside the digest.

>>> import pyarrow as pa
>>> info = describe_dataset(pa.table({"x": [1, 2, 3]}), name="toy")
>>> info.num_rows, info.schema_["columns"]
(3, [{'name': 'x', 'type': 'int64', 'nullable': True}])
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from mlpilot.errors import InvalidInputError
from mlpilot.tracking.leakage import check_leakage_report, embedded_leakage_report
from mlpilot.tracking.models import DatasetInfo

__all__ = ["describe_dataset", "to_arrow"]

_BATCH_ROWS = 64 * 1024


def _numpy_table(array: Any) -> tuple[pa.Table, list[int]]:
    import numpy as np

    arr = np.asarray(array)
    shape = [int(d) for d in arr.shape]
    if arr.dtype.names:  # structured array: one column per field
        return pa.table({name: arr[name] for name in arr.dtype.names}), shape
    if arr.ndim == 0:
        raise InvalidInputError("a dataset needs at least one dimension, got a scalar array", field="dataset")
    if arr.ndim == 1:
        return pa.table({"0": arr}), shape
    flat = arr.reshape(arr.shape[0], -1)
    return pa.table({str(i): flat[:, i] for i in range(flat.shape[1])}), shape


def to_arrow(data: Any) -> tuple[pa.Table, dict[str, Any]]:
    """Convert a supported dataset to an Arrow table, plus schema extras (e.g. a NumPy array's shape)."""
    extras: dict[str, Any] = {}
    module = type(data).__module__.split(".")[0]
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif module == "pandas" and hasattr(data, "columns"):
        table = pa.Table.from_pandas(data, preserve_index=None)
    elif module == "pandas":  # a Series
        table = pa.Table.from_pandas(data.to_frame(), preserve_index=None)
    elif module == "polars" and hasattr(data, "to_arrow"):
        frame = data.to_frame() if not hasattr(data, "columns") else data
        table = frame.to_arrow()
    elif module == "numpy":
        table, shape = _numpy_table(data)
        extras["shape"] = shape
    elif isinstance(data, Mapping):
        try:
            table = pa.table(dict(data))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidInputError(f"dataset: cannot read the column mapping: {exc}", field="dataset") from exc
    else:
        raise InvalidInputError(
            "dataset must be a pandas or polars DataFrame/Series, a pyarrow Table/RecordBatch, a NumPy array "
            f"or a mapping of columns, got {type(data).__module__}.{type(data).__name__}",
            field="dataset",
        )
    return table, extras


def _canonical_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _canonical_type(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(_canonical_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_canonical_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_canonical_type(f.type)) for f in t])
    return t


def _canonical(table: pa.Table) -> pa.Table:
    fields = [pa.field(f.name, _canonical_type(f.type), nullable=True) for f in table.schema]
    target = pa.schema(fields)
    try:
        table = table.cast(target) if target != table.schema.remove_metadata() else table
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"dataset: cannot normalise column types: {exc}", field="dataset") from exc
    return table.replace_schema_metadata(None)


class _HashSink:
    """A write-only file object that hashes what Arrow writes to it."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        return view.nbytes

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def _digest(table: pa.Table) -> str:
    sink = _HashSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        # Fixed-size batches: the same rows hash alike however the source table happened to be chunked.
        for batch in table.combine_chunks().to_batches(max_chunksize=_BATCH_ROWS):
            writer.write_batch(batch)
    return sink.hash.hexdigest()


def describe_dataset(data: Any, *, name: str, source: str | None = None, leakage_report: Any = None) -> DatasetInfo:
    """Fingerprint ``data``: content digest, schema (column names, Arrow types, nullability) and row count.

    ``data`` may also be a ``TrainingSet`` (its rows and report). ``leakage_report`` (a mapping, JSON text or an
    object with ``to_dict()``) overrides the report ``data`` carries; a malformed report is an
    InvalidInputError naming ``leakage_report``, raised before anything is stored.
    """
    data, embedded = embedded_leakage_report(data)
    raw_report = leakage_report if leakage_report is not None else embedded
    report = None if raw_report is None else check_leakage_report(raw_report)
    table, extras = to_arrow(data)
    table = _canonical(table)
    schema: dict[str, Any] = {
        "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in table.schema],
        **extras,
    }
    return DatasetInfo(
        name=name,
        digest=_digest(table),
        num_rows=table.num_rows,
        schema_=schema,
        source=source,
        leakage_report=report,
    )
