"""Signature inference for each input kind, and conversion of caller input to what a signature expects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.registry import Signature, TensorSpec, infer_signature
from mlpilot.registry.inputs import conform

pd = pytest.importorskip("pandas")


def _specs(specs: list[TensorSpec]) -> list[tuple[str, str, list[int]]]:
    return [(s.name, s.dtype, s.shape) for s in specs]


def test_numpy_example() -> None:
    sig = infer_signature(np.zeros((5, 3), dtype="float32"), lambda x: x.sum(axis=1))
    assert sig.kind == "ndarray"
    assert sig.example_type == "numpy"
    assert _specs(sig.inputs) == [("input", "float32", [-1, 3])]
    assert _specs(sig.outputs) == [("output", "float32", [-1])]


def test_image_batch_keeps_inner_dimensions() -> None:
    sig = infer_signature(np.zeros((2, 3, 8, 8), dtype="uint8"))
    assert _specs(sig.inputs) == [("input", "uint8", [-1, 3, 8, 8])]
    assert sig.outputs == []


def test_pandas_example_with_mixed_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "age": np.array([30, 40], dtype="int64"),
            "spend": [1.5, 2.5],
            "plan": ["basic", "pro"],
            "region": pd.Categorical(["n", "s"]),
            "active": [True, False],
            "joined": pd.to_datetime(["2024-01-01", "2024-02-01"]),
        }
    )
    sig = infer_signature(frame, lambda f: np.asarray(f["age"] > 35))
    assert sig.kind == "dataframe"
    assert sig.example_type == "pandas"
    assert _specs(sig.inputs) == [
        ("age", "int64", [-1]),
        ("spend", "float64", [-1]),
        ("plan", "string", [-1]),
        ("region", "category", [-1]),
        ("active", "bool", [-1]),
        ("joined", str(frame["joined"].dtype), [-1]),
    ]
    assert _specs(sig.outputs) == [("output", "bool", [-1])]


def test_object_column_of_strings_is_string() -> None:
    frame = pd.DataFrame({"plan": np.array(["a", "b"], dtype=object)})
    assert infer_signature(frame).inputs[0].dtype == "string"


def test_arrow_example_becomes_a_dataframe_signature() -> None:
    table = pa.table({"x": pa.array([1.0, 2.0]), "city": pa.array(["a", "b"])})
    seen: list[Any] = []
    sig = infer_signature(table, lambda f: seen.append(f) or np.zeros(len(f)))
    assert sig.kind == "dataframe"
    assert sig.example_type == "arrow"
    assert _specs(sig.inputs) == [("x", "float64", [-1]), ("city", "string", [-1])]
    assert isinstance(seen[0], pd.DataFrame)  # the model sees the canonical form
    assert infer_signature(table.to_batches()[0]).example_type == "arrow"


def test_dict_of_arrays_example() -> None:
    example = {"ids": np.array([[1, 2], [3, 4]]), "mask": np.array([True, False])}
    sig = infer_signature(example, lambda d: {"score": d["ids"].sum(axis=1).astype("float32")})
    assert sig.kind == "dict"
    assert _specs(sig.inputs) == [("ids", "int64", [-1, 2]), ("mask", "bool", [-1])]
    assert _specs(sig.outputs) == [("score", "float32", [-1])]


@pytest.mark.parametrize(
    ("example", "kind", "specs"),
    [
        ([[1.0, 2.0], [3.0, 4.0]], "ndarray", [("input", "float64", [-1, 2])]),
        ([1, 2, 3], "ndarray", [("input", "int64", [-1])]),
        (
            [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
            "dataframe",
            [("a", "int64", [-1]), ("b", "string", [-1])],
        ),
    ],
)
def test_list_examples(example: Any, kind: str, specs: list[Any]) -> None:
    sig = infer_signature(example)
    assert (sig.kind, sig.example_type) == (kind, "list")
    assert _specs(sig.inputs) == specs


def test_tuple_outputs_are_numbered() -> None:
    sig = infer_signature(np.zeros((4, 2)), lambda x: (x[:, 0], x.astype("int32")))
    assert _specs(sig.outputs) == [("output_0", "float64", [-1]), ("output_1", "int32", [-1, 2])]


def test_dataframe_outputs_are_per_column() -> None:
    sig = infer_signature(np.zeros((3, 1)), lambda x: pd.DataFrame({"p": x[:, 0], "label": ["a"] * len(x)}))
    assert _specs(sig.outputs) == [("p", "float64", [-1]), ("label", "string", [-1])]


@pytest.mark.parametrize(
    "example",
    [None, [], {}, np.float64(3.0), {"a": [1, 2], "b": [1]}, pd.DataFrame()],
)
def test_unusable_examples_are_refused(example: Any) -> None:
    with pytest.raises(InvalidInputError) as err:
        infer_signature(example)
    assert err.value.field == "input_example"


def test_signature_serialises_to_json_and_back() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1], "b": ["x"]}), lambda f: np.array([0.5]))
    assert Signature.model_validate_json(sig.model_dump_json()) == sig


# -- conform: caller input -> what the model takes ---------------------------------------------------------

FRAME_SIG = Signature(
    kind="dataframe",
    inputs=[
        TensorSpec(name="age", dtype="int64", shape=[-1]),
        TensorSpec(name="spend", dtype="float64", shape=[-1]),
        TensorSpec(name="plan", dtype="string", shape=[-1]),
    ],
)
ARRAY_SIG = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float32", shape=[-1, 3])])
DICT_SIG = Signature(
    kind="dict",
    inputs=[
        TensorSpec(name="a", dtype="float32", shape=[-1, 2]),
        TensorSpec(name="b", dtype="int64", shape=[-1]),
    ],
)


def test_frame_columns_are_selected_and_reordered() -> None:
    frame = pd.DataFrame({"plan": ["x"], "extra": [0], "spend": [1.0], "age": [3]})
    out = conform(frame, FRAME_SIG)
    assert list(out.columns) == ["age", "spend", "plan"]


@pytest.mark.parametrize(
    "data",
    [
        np.array([[30, 1.5, "basic"]], dtype=object),
        [[30, 1.5, "basic"]],
        pa.table({"age": [30], "spend": [1.5], "plan": ["basic"]}),
        {"age": [30], "spend": [1.5], "plan": ["basic"]},
        [{"plan": "basic", "age": 30, "spend": 1.5}],
    ],
)
def test_every_input_kind_becomes_the_same_frame(data: Any) -> None:
    out = conform(data, FRAME_SIG)
    assert list(out.columns) == ["age", "spend", "plan"]
    assert out["age"].dtype == np.dtype("int64")
    assert out["spend"].dtype == np.dtype("float64")
    assert out.iloc[0].tolist() == [30, 1.5, "basic"]


def test_lossless_casts_apply_and_lossy_ones_are_refused() -> None:
    out = conform(pd.DataFrame({"age": [30.0], "spend": [2], "plan": ["p"]}), FRAME_SIG)
    assert (out["age"].dtype, out["spend"].dtype) == (np.dtype("int64"), np.dtype("float64"))
    with pytest.raises(InvalidInputError) as err:
        conform(pd.DataFrame({"age": [30.5], "spend": [2.0], "plan": ["p"]}), FRAME_SIG)
    assert err.value.field == "age"


def test_missing_column_is_named() -> None:
    with pytest.raises(InvalidInputError) as err:
        conform(pd.DataFrame({"age": [1], "plan": ["p"]}), FRAME_SIG)
    assert err.value.field == "spend"


def test_arrays_are_cast_and_shape_checked() -> None:
    out = conform(np.ones((2, 3), dtype="float64"), ARRAY_SIG)
    assert (out.dtype, out.shape) == (np.dtype("float32"), (2, 3))
    assert conform([1, 2, 3], ARRAY_SIG).shape == (1, 3)  # one row without its batch axis
    assert conform(pd.DataFrame(np.ones((2, 3))), ARRAY_SIG).shape == (2, 3)
    assert conform(pa.table({"a": [1.0], "b": [2.0], "c": [3.0]}), ARRAY_SIG).tolist() == [[1.0, 2.0, 3.0]]
    with pytest.raises(InvalidInputError) as err:
        conform(np.ones((2, 4)), ARRAY_SIG)
    assert err.value.field == "input"
    assert "[-1, 3]" in err.value.message


def test_dicts_are_checked_by_name() -> None:
    out = conform({"a": [[1, 2]], "b": [7], "ignored": [0]}, DICT_SIG)
    assert (out["a"].dtype, out["b"].dtype, set(out)) == (np.dtype("float32"), np.dtype("int64"), {"a", "b"})
    with pytest.raises(InvalidInputError) as err:
        conform({"a": [[1, 2]]}, DICT_SIG)
    assert err.value.field == "b"
    with pytest.raises(InvalidInputError):
        conform(np.ones((1, 2)), DICT_SIG)


def test_without_a_signature_arrow_becomes_pandas() -> None:
    out = conform(pa.table({"a": [1, 2]}), None)
    assert isinstance(out, pd.DataFrame)
    array = np.ones(3)
    assert conform(array, None) is array
