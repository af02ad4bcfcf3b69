"""Conversions between the tables users hand us (Arrow, pandas, polars, rows) and Arrow, without importing
pandas or polars unless the caller already uses them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mlpilot.errors import InvalidInputError, MissingDependencyError

__all__ = ["Output", "from_arrow", "to_arrow"]

Output = Literal["arrow", "pandas", "polars"]


def to_arrow(data: Any, *, field: str) -> Any:
    """An Arrow table from a pyarrow Table/RecordBatch, a pandas or polars DataFrame, a list of row dicts or a
    dict of columns. ``field`` names the argument in error messages."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("pandas") and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if module.startswith("polars") and hasattr(data, "to_arrow"):
        return data.to_arrow()
    try:
        if isinstance(data, Mapping):
            return pa.table(dict(data))
        if isinstance(data, Sequence) and not isinstance(data, str | bytes):
            return pa.Table.from_pylist(list(data))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{field}: cannot read as a table: {exc}", field=field) from exc
    raise InvalidInputError(
        f"{field}: expected an Arrow table, a pandas or polars DataFrame, a list of row dicts or a dict of "
        f"columns, got {type(data).__name__}",
        field=field,
    )


def from_arrow(table: Any, output: Output) -> Any:
    """``table`` as the requested kind of frame."""
    if output == "arrow":
        return table
    if output == "pandas":
        try:
            import pandas  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("pandas", "pandas") from exc
        return table.to_pandas()
    if output == "polars":
        try:
            import polars as pl
        except ImportError as exc:
            raise MissingDependencyError("polars", "polars") from exc
        return pl.from_arrow(table)
    raise InvalidInputError(f"output: expected 'arrow', 'pandas' or 'polars', got {output!r}", field="output")
