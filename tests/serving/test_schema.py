"""The compiled input schema: what each protocol's values become, and what is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.registry import Signature, TensorSpec
from mlpilot.serving.dtypes import numpy_dtype, oip_datatype
from mlpilot.serving.schema import InputSchema

TENSOR = InputSchema.compile(
    Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 3])])
)
TABLE = InputSchema.compile(
    Signature(
        kind="dataframe",
        inputs=[
            TensorSpec(name="age", dtype="int64", shape=[-1]),
            TensorSpec(name="score", dtype="float32", shape=[-1]),
            TensorSpec(name="plan", dtype="string", shape=[-1]),
        ],
    )
)


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        ("float64", "FP64"),
        ("float32", "FP32"),
        ("int64", "INT64"),
        ("uint8", "UINT8"),
        ("bool", "BOOL"),
        ("string", "BYTES"),
        ("category", "BYTES"),
        ("object", "BYTES"),
        ("Int64", "BYTES"),
    ],
)
def test_datatypes(dtype: str, datatype: str) -> None:
    assert oip_datatype(dtype) == datatype
    assert numpy_dtype(datatype).kind == ("O" if datatype == "BYTES" else np.dtype(dtype).kind)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1, 2, 3]], [[1.0, 2.0, 3.0]]),  # integers into a float model
        ([1.5, 2, 3], [[1.5, 2.0, 3.0]]),  # one row without its batch axis
        ([[1.0, None, 3.0]], [[1.0, np.nan, 3.0]]),  # null is missing
        ([[True, False, True]], [[1.0, 0.0, 1.0]]),
    ],
)
def test_tensor_rows(rows: Any, expected: Any) -> None:
    out = TENSOR.from_rows(rows)["input"]
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.asarray(expected))


def test_table_records_and_columns_agree() -> None:
    records = TABLE.from_rows([{"age": 30, "score": 0.5, "plan": "pro"}, {"age": 41.0, "score": 1, "plan": None}])
    columns = TABLE.from_columns({"plan": ["pro", None], "age": [30, 41], "score": [0.5, 1.0]})
    split = TABLE.from_split(["score", "plan", "age"], [[0.5, "pro", 30], [1, None, 41]])
    for cols in (records, columns, split):
        assert cols["age"].dtype == np.int64
        assert cols["score"].dtype == np.float32
        assert cols["plan"].tolist() == ["pro", None]
        assert cols["age"].tolist() == [30, 41]
    frame = TABLE.to_model_input(split)
    assert list(frame.columns) == ["age", "score", "plan"]


@pytest.mark.parametrize(
    ("call", "field", "fragment"),
    [
        (lambda: TENSOR.from_rows([[1, 2]]), "input", "wrong shape"),
        (lambda: TENSOR.from_rows([["1", "2", "3"]]), "input", "wrong dtype"),
        (lambda: TENSOR.from_rows([[1, 2, 3], [1, 2]]), "input", "not a rectangular array"),
        (lambda: TENSOR.from_rows([]), "instances", "non-empty"),
        (lambda: TABLE.from_rows([{"age": 1.5, "score": 1, "plan": "a"}]), "age", "wrong dtype"),
        (lambda: TABLE.from_rows([{"age": 2**40, "score": 1, "plan": 3}]), "plan", "wrong dtype"),
        (lambda: TABLE.from_rows([{"age": 1, "score": 1}]), "plan", "missing"),
        (lambda: TABLE.from_rows([{"age": 1, "score": 1, "plan": "a", "x": 1}]), "x", "unknown input"),
        (lambda: TABLE.from_rows([[1, 2]]), "row 0", "expected 3 values"),
        (lambda: TABLE.from_split(["age", "age", "plan"], [[1, 2, "a"]]), "columns", "duplicate"),
        (lambda: TABLE.check_tensor("age", "FP64", np.array([1.0])), "age", "wrong datatype"),
        (lambda: TABLE.check_tensor("plan", "INT64", np.array([1])), "plan", "wrong datatype"),
    ],
)
def test_refusals_name_the_input(call: Any, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        call()
    assert info.value.field == field
    assert fragment in info.value.message


def test_lossless_oip_datatypes_are_widened() -> None:
    assert TABLE.check_tensor("age", "INT32", np.array([1, 2], dtype=np.int32)).dtype == np.int64
    assert TENSOR.check_tensor("input", "FP32", np.ones((2, 3), dtype=np.float32)).dtype == np.float64


def test_no_signature_takes_any_numeric_matrix() -> None:
    schema = InputSchema.compile(None)
    assert schema.from_rows([[1, 2, 3, 4]])["input"].shape == (1, 4)
