from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.tracking import describe_dataset

COLUMNS = {"age": [31, 45, 27], "plan": ["basic", "pro", "basic"], "churn": [0.0, 1.0, 0.0]}


def test_same_content_hashes_alike_across_libraries() -> None:
    digests = {
        describe_dataset(pd.DataFrame(COLUMNS), name="d").digest,
        describe_dataset(pl.DataFrame(COLUMNS), name="d").digest,
        describe_dataset(pa.table(COLUMNS), name="d").digest,
        describe_dataset(pa.table(COLUMNS).to_batches()[0], name="d").digest,
        describe_dataset(COLUMNS, name="d").digest,
    }
    assert len(digests) == 1


def test_chunking_and_categoricals_do_not_change_the_digest() -> None:
    table = pa.table(COLUMNS)
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2)])
    assert rechunked.column("age").num_chunks == 2
    categorical = pd.DataFrame(COLUMNS).astype({"plan": "category"})
    assert describe_dataset(rechunked, name="d").digest == describe_dataset(table, name="d").digest
    assert describe_dataset(categorical, name="d").digest == describe_dataset(table, name="d").digest


@pytest.mark.parametrize(
    "change",
    [
        lambda d: {**d, "age": [31, 45, 28]},
        lambda d: {**d, "plan": ["basic", "pro", "Basic"]},
        lambda d: {"age": d["age"], "churn": d["churn"], "plan": d["plan"]},  # column order
        lambda d: {**d, "age": [31.0, 45.0, 27.0]},  # dtype
        lambda d: {k: v[:2] for k, v in d.items()},
    ],
)
def test_any_change_changes_the_digest(change: object) -> None:
    changed = change(dict(COLUMNS))  # type: ignore[operator]
    assert describe_dataset(changed, name="d").digest != describe_dataset(COLUMNS, name="d").digest


def test_schema_and_row_count() -> None:
    info = describe_dataset(pd.DataFrame(COLUMNS), name="train", source="s3://bucket/train.parquet")
    assert info.num_rows == 3
    assert info.schema_["columns"] == [
        {"name": "age", "type": "int64", "nullable": True},
        {"name": "plan", "type": "string", "nullable": True},
        {"name": "churn", "type": "double", "nullable": True},
    ]
    assert (info.name, info.source) == ("train", "s3://bucket/train.parquet")


def test_numpy_arrays_keep_their_shape() -> None:
    cube = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    info = describe_dataset(cube, name="x")
    assert info.num_rows == 4
    assert info.schema_["shape"] == [4, 3, 2]
    assert len(info.schema_["columns"]) == 6
    assert describe_dataset(cube.copy(), name="x").digest == info.digest
    assert describe_dataset(np.arange(5), name="v").schema_["shape"] == [5]


def test_large_frames_hash_in_batches() -> None:
    frame = pd.DataFrame({"x": np.arange(200_000), "y": np.arange(200_000) % 7})
    first = describe_dataset(frame, name="big")
    shuffled = describe_dataset(frame.sample(frac=1.0, random_state=0).sort_values("x"), name="big")
    assert first.num_rows == 200_000
    assert first.digest != describe_dataset(frame.iloc[::-1].reset_index(drop=True), name="big").digest
    assert shuffled.digest != first.digest  # a non-default index is content: it is kept as a column


@pytest.mark.parametrize("bad", [42, "a,b\n1,2", np.float64(3.0), {"a": [1, 2], "b": [1]}])
def test_unsupported_inputs_name_the_field(bad: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        describe_dataset(bad, name="d")
    assert info.value.field == "dataset"
