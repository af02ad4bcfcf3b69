"""The training-input sample stored with each version (Parquet, up to 10,000 rows): the drift reference.

Column names follow :func:`mlpilot.registry.inputs.to_arrow_table`: DataFrame and Arrow columns keep their
names; a 2-D array input ``x`` becomes columns ``x_0 … x_k``.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpilot.artifacts import ArtifactStore
from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.inputs import canonical, num_rows, take_rows, to_arrow_table

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SAMPLE_ROWS", "read_sample", "sample_parquet", "sample_table", "write_sample"]

SAMPLE_ROWS = 10_000


def sample_table(data: Any, *, max_rows: int = SAMPLE_ROWS, seed: int = 0, field: str = "training_data") -> pa.Table:
    """Up to ``max_rows`` rows of ``data`` as an Arrow table: all of them, or a seeded uniform sample kept in
    the original order (the same data always gives the same sample).

    >>> sample_table(np.ones((20_000, 2)), max_rows=5).num_rows
    5
    """
    rows = num_rows(data)
    if rows > max_rows:
        picked = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
        data = take_rows(data, picked)
    kind, value = canonical(data, field=field)
    return to_arrow_table(kind, value)


def sample_parquet(data: Any, *, max_rows: int = SAMPLE_ROWS) -> bytes:
    """A sample of ``data`` (see :func:`sample_table`) as Parquet bytes."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    try:
        pq.write_table(sample_table(data, max_rows=max_rows), buffer, compression="zstd")
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError derive from these
        raise InvalidInputError(f"training_data: cannot be written as Parquet: {exc}", field="training_data") from exc
    return buffer.getvalue()


def write_sample(data: Any, artifacts: ArtifactStore, *, max_rows: int = SAMPLE_ROWS) -> str:
    """Store a sample of ``data`` as Parquet in ``artifacts``; return its SHA-256."""
    return artifacts.put_bytes(sample_parquet(data, max_rows=max_rows))


def read_sample(digest: str, artifacts: ArtifactStore) -> pa.Table:
    """The sample stored under ``digest`` (hash-verified by the artifact store)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(artifacts.get_bytes(digest)))
    except pa.ArrowException as exc:
        raise ArtifactError(f"sample {digest} is not a readable Parquet file: {exc}") from exc
