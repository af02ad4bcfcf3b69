"""Every kind of wrong input is refused before the model, with a 400 naming the input, expected and got."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.serving.testing import RunningServer


@pytest.fixture
def http(server: RunningServer) -> Any:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _row(cancer: Any) -> list[float]:
    return [float(v) for v in cancer[0][0]]


def _refused(response: httpx.Response, *, field: str, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    doc: dict[str, Any] = response.json()
    assert doc["field"] == field, doc
    assert doc["request_id"] == response.headers["x-request-id"]
    return doc


def test_unknown_input_name(http: httpx.Client, cancer: Any) -> None:
    body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 30], "data": _row(cancer)}]}
    doc = _refused(http.post("/v2/models/cancer/infer", json=body), field="features")
    assert doc["error"] == "input 'features': unknown input: expected one of ['input'], got 'features'"


def test_missing_input(http: httpx.Client, customers: Any) -> None:
    body = {
        "inputs": [
            {"name": "age", "datatype": "INT64", "shape": [1], "data": [30]},
            {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]},
        ]
    }
    doc = _refused(http.post("/v2/models/customers/infer", json=body), field="income")
    assert doc["error"].startswith("input 'income': missing")
    records = http.post("/v1/models/customers:predict", json={"instances": [{"age": 30, "plan": "pro"}]})
    assert "income" in _refused(records, field="income")["error"]


def test_unknown_column_in_records(http: httpx.Client) -> None:
    row = {"age": 30, "income": 1.0, "plan": "pro", "zip": "75001"}
    doc = _refused(http.post("/v1/models/customers:predict", json={"instances": [row]}), field="zip")
    assert "unknown input" in doc["error"]


def test_text_where_numbers_are_expected(http: httpx.Client, cancer: Any) -> None:
    row: list[Any] = _row(cancer)
    row[3] = "a lot"
    doc = _refused(http.post("/invocations", json={"instances": [row]}), field="input")
    assert doc["error"].startswith("input 'input': wrong dtype: expected float64 values, got ")
    assert "str" in doc["got"]


def test_numbers_where_text_is_expected(http: httpx.Client) -> None:
    doc = _refused(
        http.post("/v1/models/customers:predict", json={"inputs": {"age": [30], "income": [2.0], "plan": [3]}}),
        field="plan",
    )
    assert doc["expected"] == "strings (string)"


def test_fractional_value_for_an_integer_input(http: httpx.Client) -> None:
    body = {"inputs": {"age": [30.5], "income": [2.0], "plan": ["pro"]}}
    doc = _refused(http.post("/v1/models/customers:predict", json=body), field="age")
    assert doc["expected"] == "int64 values"


def test_wrong_oip_datatype(http: httpx.Client, cancer: Any) -> None:
    body = {
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 30], "data": [str(v) for v in _row(cancer)]}]
    }
    doc = _refused(http.post("/v2/models/cancer/infer", json=body), field="input")
    assert (doc["expected"], doc["got"]) == ("FP64", "BYTES")


def test_unknown_oip_datatype(http: httpx.Client, cancer: Any) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FLOAT", "shape": [1, 30], "data": _row(cancer)}]}
    assert "unknown datatype" in _refused(http.post("/v2/models/cancer/infer", json=body), field="input")["error"]


def test_wrong_number_of_features(http: httpx.Client, cancer: Any) -> None:
    doc = _refused(http.post("/v1/models/cancer:predict", json={"instances": [_row(cancer)[:29]]}), field="input")
    assert (doc["expected"], doc["got"]) == ("[n, 30]", [1, 29])


def test_shape_that_does_not_match_the_data(http: httpx.Client, cancer: Any) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 30], "data": _row(cancer)}]}
    doc = _refused(http.post("/v2/models/cancer/infer", json=body), field="input")
    assert (doc["expected"], doc["got"]) == ("60 values", "30")


def test_ragged_rows(http: httpx.Client, cancer: Any) -> None:
    rows = [_row(cancer), _row(cancer)[:10]]
    assert (
        "not a rectangular array" in _refused(http.post("/invocations", json={"inputs": rows}), field="input")["error"]
    )


def test_inputs_with_different_batch_sizes(http: httpx.Client) -> None:
    body = {"inputs": {"age": [30, 40], "income": [2.0], "plan": ["pro", "basic"]}}
    assert (
        "different batch sizes" in _refused(http.post("/v1/models/customers:predict", json=body), field="age")["error"]
    )


def test_binary_size_that_does_not_fit(http: httpx.Client, cancer: Any) -> None:
    raw = np.asarray(cancer[0][:1], dtype="<f8").tobytes()
    head = b'{"inputs":[{"name":"input","datatype":"FP64","shape":[1,30],"parameters":{"binary_data_size":200}}]}'
    response = http.post(
        "/v2/models/cancer/infer",
        content=head + raw,
        headers={"inference-header-content-length": str(len(head))},
    )
    doc = _refused(response, field="input")
    assert (doc["expected"], doc["got"]) == ("240 bytes", "200 bytes")
    beyond = head.replace(b"200", b"300")
    response = http.post(
        "/v2/models/cancer/infer",
        content=beyond + raw,
        headers={"inference-header-content-length": str(len(beyond))},
    )
    assert "binary_data_size" in _refused(response, field="input")["error"]
    response = http.post(
        "/v2/models/cancer/infer",
        content=head.replace(b"200", b"240") + raw + b"extra",
        headers={"inference-header-content-length": str(len(head))},
    )
    assert "belong to no input" in _refused(response, field="body")["error"]


def test_body_that_is_not_json(http: httpx.Client) -> None:
    for path in ("/v2/models/cancer/infer", "/invocations", "/v1/models/cancer:predict"):
        assert "not valid JSON" in _refused(http.post(path, content=b"{nope"), field="body")["error"]


def test_mlflow_payload_with_two_formats(http: httpx.Client, cancer: Any) -> None:
    body = {"instances": [_row(cancer)], "inputs": [_row(cancer)]}
    assert "exactly one of" in _refused(http.post("/invocations", json=body), field="body")["error"]


def test_mlflow_unsupported_param(http: httpx.Client, cancer: Any) -> None:
    body = {"instances": [_row(cancer)], "params": {"temperature": 0.3}}
    _refused(http.post("/invocations", json=body), field="params.temperature")


def test_empty_batch(http: httpx.Client) -> None:
    assert (
        "non-empty"
        in _refused(http.post("/v1/models/cancer:predict", json={"instances": []}), field="instances")["error"]
    )


def test_unknown_output(http: httpx.Client, cancer: Any) -> None:
    body = {"instances": [_row(cancer)], "outputs": ["logits"]}
    doc = _refused(http.post("/v1/models/cancer:predict", json=body), field="outputs")
    assert doc["got"] == "logits"


def test_bad_entity_ids(http: httpx.Client, cancer: Any) -> None:
    body = {"instances": [_row(cancer)], "entity_id": ["a", "b"]}
    _refused(http.post("/v1/models/cancer:predict", json=body), field="entity_id")


def test_bad_version_in_the_path(http: httpx.Client, cancer: Any) -> None:
    response = http.post("/v2/models/cancer/versions/one/infer", json={"inputs": []})
    assert _refused(response, field="version")["error"].startswith("version: expected a positive integer")


def test_request_ids_that_cannot_go_back_in_a_header(http: httpx.Client, cancer: Any) -> None:
    tensor = {"name": "input", "datatype": "FP64", "shape": [1, 30], "data": _row(cancer)}
    for bad in ("two\nlines", "x" * 200, ""):
        response = http.post("/v2/models/cancer/infer", json={"id": bad, "inputs": [tensor]})
        assert _refused(response, field="id")["error"].startswith("id: expected 1-128 printable ASCII")
    response = http.post(
        "/v1/models/cancer:predict", json={"instances": [_row(cancer)]}, headers={"x-request-id": "a b"}
    )
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 32  # not the caller's: spaces are not allowed
