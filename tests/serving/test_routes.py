"""Every route of the model server, against a real server on 127.0.0.1."""

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


def test_health_and_server_metadata(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").status_code == 200
    meta = http.get("/v2").json()
    assert meta["name"] == "mlpilot"
    assert "binary_tensor_data" in meta["extensions"]
    for path in ("/ping", "/health"):
        assert http.get(path).status_code == 200
    assert http.get("/version").json()["version"]


def test_model_metadata_comes_from_the_signature(http: httpx.Client) -> None:
    meta = http.get("/v2/models/cancer").json()
    assert meta["name"] == "cancer"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "mlpilot_sklearn"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["output"]["datatype"] == "INT64"
    assert outputs["probabilities"] == {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}
    table = http.get("/v2/models/customers/versions/1").json()
    assert [(i["name"], i["datatype"]) for i in table["inputs"]] == [
        ("age", "INT64"),
        ("income", "FP64"),
        ("plan", "BYTES"),
    ]


def test_model_readiness(http: httpx.Client) -> None:
    assert http.get("/v2/models/cancer/ready").json() == {"name": "cancer", "ready": True}
    assert http.get("/v2/models/cancer/versions/1/ready").status_code == 200
    assert http.get("/v2/models/cancer/versions/9/ready").status_code == 404
    missing = http.get("/v2/models/nope/ready")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]


def test_oip_infer_json(http: httpx.Client, cancer: Any, cancer_model: Any) -> None:
    X, _ = cancer
    body = {
        "id": "abc",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 30], "data": X[:2].reshape(-1).tolist()}],
    }
    for path in ("/v2/models/cancer/infer", "/v2/models/cancer/versions/1/infer"):
        response = http.post(path, json=body)
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["model_name"] == "cancer"
        assert doc["model_version"] == "1"
        assert doc["id"] == "abc"
        assert response.headers["x-request-id"] == "abc"
        outputs = {o["name"]: o for o in doc["outputs"]}
        assert outputs["output"]["data"] == cancer_model.predict(X[:2]).tolist()
        assert outputs["output"]["shape"] == [2]
        proba = np.asarray(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
        np.testing.assert_allclose(proba, cancer_model.predict_proba(X[:2]))


def test_oip_infer_with_named_columns(http: httpx.Client, customers: Any, frame_model: Any) -> None:
    frame, _ = customers
    rows = frame.head(3)
    body = {
        "inputs": [
            {"name": "age", "datatype": "INT64", "shape": [3], "data": rows["age"].tolist()},
            {"name": "income", "datatype": "FP64", "shape": [3, 1], "data": rows["income"].tolist()},
            {"name": "plan", "datatype": "BYTES", "shape": [3], "data": rows["plan"].tolist()},
        ],
        "outputs": [{"name": "output"}],
    }
    doc = http.post("/v2/models/customers/infer", json=body).json()
    assert [o["name"] for o in doc["outputs"]] == ["output"]
    assert doc["outputs"][0]["data"] == frame_model.predict(rows).tolist()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda X: {"inputs": X[:3].tolist()}, id="inputs-tensor"),
        pytest.param(lambda X: {"inputs": {"input": X[:3].tolist()}}, id="inputs-named"),
        pytest.param(lambda X: {"instances": X[:3].tolist()}, id="instances"),
        pytest.param(
            lambda X: {"dataframe_split": {"columns": [f"f{i}" for i in range(30)], "data": X[:3].tolist()}},
            id="dataframe_split",
        ),
        pytest.param(
            lambda X: {"dataframe_split": {"data": X[:3].tolist()}, "params": {"entity_id": ["a", "b", "c"]}},
            id="dataframe_split-no-columns",
        ),
    ],
)
def test_invocations_tensor_model(http: httpx.Client, cancer: Any, cancer_model: Any, payload: Any) -> None:
    X, _ = cancer
    response = http.post("/invocations", params={"model": "cancer"}, json=payload(X))
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": cancer_model.predict(X[:3]).tolist()}
    assert len(response.headers["x-request-id"]) == 32


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs", "csv"])
def test_invocations_table_model(http: httpx.Client, customers: Any, frame_model: Any, fmt: str) -> None:
    frame, _ = customers
    rows = frame.head(4)
    expected = frame_model.predict(rows).tolist()
    if fmt == "csv":
        response = http.post(
            "/invocations?model=customers",
            content=rows.to_csv(index=False).encode(),
            headers={"content-type": "text/csv"},
        )
    else:
        payload: dict[str, Any] = {
            "dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()},
            "dataframe_records": rows.to_dict(orient="records"),
            "instances": rows.to_dict(orient="records"),
            "inputs": {c: rows[c].tolist() for c in rows.columns},
        }
        response = http.post("/invocations", params={"model": "customers"}, json={fmt: payload[fmt]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected


def test_invocations_defaults_to_the_first_model(http: httpx.Client, cancer: Any, cancer_model: Any) -> None:
    X, _ = cancer
    response = http.post("/invocations", json={"instances": X[:1].tolist()})
    assert response.json()["predictions"] == cancer_model.predict(X[:1]).tolist()


def test_v1_predict(http: httpx.Client, cancer: Any, cancer_model: Any, customers: Any, frame_model: Any) -> None:
    X, _ = cancer
    response = http.post(
        "/v1/models/cancer:predict",
        json={"instances": X[:2].tolist(), "outputs": ["probabilities"]},
        headers={"x-request-id": "my-request-1"},
    )
    doc = response.json()
    assert response.headers["x-request-id"] == "my-request-1"
    assert doc["request_id"] == "my-request-1"
    assert (doc["model"], doc["version"]) == ("cancer", 1)
    assert doc["predictions"] == cancer_model.predict(X[:2]).tolist()
    np.testing.assert_allclose(doc["outputs"]["probabilities"], cancer_model.predict_proba(X[:2]))
    frame, _ = customers
    records = frame.head(2).to_dict(orient="records")
    by_rows = http.post("/v1/models/customers/versions/1:predict", json={"instances": records}).json()
    assert by_rows["predictions"] == frame_model.predict(frame.head(2)).tolist()
    positional = [[r["age"], r["income"], r["plan"]] for r in records]
    by_position = http.post("/v1/models/customers:predict", json={"instances": positional}).json()
    assert by_position["predictions"] == by_rows["predictions"]
    assert by_position["request_id"] != by_rows["request_id"]


def test_listing_and_unknown_routes(http: httpx.Client) -> None:
    listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert listed["cancer"]["versions"] == [1]
    assert listed["cancer"]["refs"] == ["cancer@champion"]
    assert http.get("/v1/models/cancer").json()["name"] == "cancer"
    assert http.get("/nope").status_code == 404
    assert http.post("/v2/models/cancer/explain", json={}).status_code == 404
    assert http.delete("/v2/models/cancer").status_code == 405
    unknown = http.post("/v2/models/ghost/infer", json={"inputs": []})
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "NotFoundError"
    assert unknown.headers["x-request-id"]


def test_several_versions_of_one_model(serve: Any, source: Any, cancer: Any) -> None:
    from sklearn.dummy import DummyClassifier

    X, y = cancer
    source.add("cancer", DummyClassifier(strategy="constant", constant=1).fit(X, y), input_example=X[:5])
    running = serve(source, ["cancer@champion", "cancer/2"])
    with httpx.Client(base_url=running.url) as http:
        assert http.get("/v2/models/cancer").json()["versions"] == ["1", "2"]
        default = http.post("/v1/models/cancer:predict", json={"instances": X[:1].tolist()}).json()
        second = http.post("/v1/models/cancer/versions/2:predict", json={"instances": X[:1].tolist()}).json()
    assert default["version"] == 1
    assert (second["version"], second["predictions"]) == (2, [1])
