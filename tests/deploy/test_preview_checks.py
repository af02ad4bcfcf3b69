"""The pieces of a preview verification that need no server: judging an answer against the output signature,
building smoke rows (from the caller's rows, the stored sample, or the signature), and reading files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.deploy.files import read_records
from mlpilot.deploy.preview import check_output
from mlpilot.deploy.reports import parse_outcomes
from mlpilot.deploy.smoke import sample_rows, signature_rows
from mlpilot.errors import InvalidInputError
from mlpilot.registry import Signature, TensorSpec
from mlpilot.registry.sample import sample_table

LABEL = TensorSpec(name="output", dtype="int64", shape=[-1])
SCORE = TensorSpec(name="score", dtype="float32", shape=[-1])
PROBA = TensorSpec(name="proba", dtype="float64", shape=[-1, 2])
TEXT = TensorSpec(name="label", dtype="string", shape=[-1])
ANY_WIDTH = TensorSpec(name="embedding", dtype="float64", shape=[-1, -1])


@pytest.mark.parametrize(
    ("spec", "values", "problem"),
    [
        (LABEL, [1], None),
        (LABEL, [0.25], "output output: float values where the signature has int64"),
        (LABEL, [True], "output output: bool values where the signature has int64"),
        (LABEL, [[1, 0]], "output output: shape [-1, 2] where the signature has [-1]"),
        (LABEL, [1, 0], "output output: 2 values for 1 rows"),
        (LABEL, [None], "output output: missing values (null, NaN or infinite)"),
        (LABEL, {"a": 1}, "output output: expected one value per row, got dict"),
        (SCORE, [1], None),  # a float output may answer 1 for 1.0
        (SCORE, ["0.5"], "output score: text values where the signature has float32"),
        (PROBA, [[0.2, 0.8]], None),
        (PROBA, [[0.2, 0.3, 0.5]], "output proba: shape [-1, 3] where the signature has [-1, 2]"),
        (PROBA, [[0.2, [0.8]]], "output proba: ragged values (rows of different shapes)"),
        (TEXT, ["churn"], None),
        (TEXT, [3], "output label: integer values where the signature has string"),
        (ANY_WIDTH, [[0.1, 0.2, 0.3]], None),
        (None, [0.3], None),  # no signature: one finite value per row is all that is asked
    ],
)
def test_an_answer_is_judged_against_the_output_signature(
    spec: TensorSpec | None, values: Any, problem: str | None
) -> None:
    name = spec.name if spec is not None else "predictions"
    assert check_output(name, values, spec, 1) == problem


def test_rows_generated_from_the_signature_take_every_input_with_its_kind() -> None:
    tensor = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float32", shape=[-1, 3])])
    assert signature_rows(tensor, 2) == [[0.0, 1.0, -1.0], [1.0, -1.0, 0.5]]
    frame = Signature(
        kind="dataframe",
        inputs=[
            TensorSpec(name="age", dtype="int64", shape=[-1]),
            TensorSpec(name="plan", dtype="string", shape=[-1]),
            TensorSpec(name="active", dtype="bool", shape=[-1]),
            TensorSpec(name="visits", dtype="uint8", shape=[-1]),
        ],
    )
    rows = signature_rows(frame, 3)
    assert rows[2] == {"age": -1, "plan": "", "active": False, "visits": 1}
    assert all(r["visits"] >= 0 for r in rows)


def test_rows_of_the_stored_sample_are_shaped_for_the_signature() -> None:
    pytest.importorskip("pandas")
    import pandas as pd

    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensor = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])])
    assert sample_rows(tensor, sample_table(X), 4) == [X[0].tolist(), X[1].tolist(), X[2].tolist(), X[0].tolist()]
    frame = pd.DataFrame({"age": [30, 40], "plan": ["basic", "pro"], "target": [0, 1]})
    named = Signature(
        kind="dataframe",
        inputs=[TensorSpec(name="age", dtype="int64", shape=[-1]), TensorSpec(name="plan", dtype="string", shape=[-1])],
    )
    # the training sample may hold more columns (the label): only the model's inputs are sent
    assert sample_rows(named, sample_table(frame), 2) == [{"age": 30, "plan": "basic"}, {"age": 40, "plan": "pro"}]
    other = Signature(kind="dataframe", inputs=[TensorSpec(name="tenure", dtype="int64", shape=[-1])])
    assert sample_rows(other, sample_table(frame), 2) is None  # not the model's inputs: generate them instead


def test_missing_sample_values_travel_as_null() -> None:
    X = np.array([[1.0, np.nan]])
    tensor = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 2])])
    assert sample_rows(tensor, sample_table(X), 1) == [[1.0, None]]


def test_records_are_read_from_json_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"outcomes": [{"key": "u1", "value": 1}]}))
    (tmp_path / "b.jsonl").write_text('{"key": "u1", "value": 1}\n\n{"variant": "v2", "value": 0.5}\n')
    (tmp_path / "c.csv").write_text("key,variant,value\nu1,,1\n,v2,0.5\n")
    assert read_records(tmp_path / "a.json", key="outcomes", field="outcomes") == [{"key": "u1", "value": 1}]
    assert len(read_records(tmp_path / "b.jsonl", key="outcomes", field="outcomes")) == 2
    assert read_records(tmp_path / "c.csv", key="outcomes", field="outcomes") == [
        {"key": "u1", "value": 1},
        {"variant": "v2", "value": 0.5},
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "{nope", "is not valid JSON"),
        ("obj.json", '{"rows": []}', "expected a JSON list, or an object with 'outcomes'"),
        ("empty.json", "[]", "holds no records"),
        ("bad.jsonl", '{"a": 1}\n{nope\n', "line 2: not valid JSON"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_field(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InvalidInputError, match=message) as err:
        read_records(tmp_path / name, key="outcomes", field="outcomes")
    assert err.value.field == "outcomes"


def test_a_bad_outcome_names_its_index_and_field() -> None:
    assert [o.key for o in parse_outcomes([{"key": 42, "value": 1}])] == ["42"]
    with pytest.raises(InvalidInputError) as err:
        parse_outcomes([{"key": "u1", "value": 1}, {"key": "u2", "value": 1, "revenue": 3}])
    assert err.value.field == "outcomes[1].revenue"
    with pytest.raises(InvalidInputError, match="give a value, or a prediction and its label") as err:
        parse_outcomes([{"key": "u1"}])
    assert err.value.field == "outcomes[0]"
