"""NVIDIA's own Open Inference Protocol client, ``tritonclient.http``, against mlpilot serve."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlpilot.serving.testing import RunningServer

httpclient = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


@pytest.fixture
def triton(server: RunningServer) -> Any:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def test_health_and_metadata(triton: Any) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("cancer")
    assert not triton.is_model_ready("ghost")
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    meta = triton.get_model_metadata("cancer")
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP64", "shape": [-1, 30]}


def _input(X: np.ndarray[Any, Any], binary: bool) -> Any:
    tensor = httpclient.InferInput("input", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=binary)
    return tensor


def test_default_settings_are_binary_both_ways(triton: Any, cancer: Any, cancer_model: Any) -> None:
    X, _ = cancer
    result = triton.infer("cancer", [_input(X[:5], binary=True)])
    response = result.get_response()
    # Binary outputs carry a size and no JSON data: the extension was used on the way back too.
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    np.testing.assert_array_equal(result.as_numpy("output"), cancer_model.predict(X[:5]))
    np.testing.assert_allclose(result.as_numpy("probabilities"), cancer_model.predict_proba(X[:5]))


def test_json_settings(triton: Any, cancer: Any, cancer_model: Any) -> None:
    X, _ = cancer
    outputs = [
        httpclient.InferRequestedOutput("output", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = triton.infer("cancer", [_input(X[:4], binary=False)], outputs=outputs, model_version="1")
    assert all("data" in o for o in result.get_response()["outputs"])
    np.testing.assert_array_equal(result.as_numpy("output"), cancer_model.predict(X[:4]))
    np.testing.assert_allclose(result.as_numpy("probabilities"), cancer_model.predict_proba(X[:4]))


def test_mixed_binary_and_json_outputs(triton: Any, cancer: Any, cancer_model: Any) -> None:
    X, _ = cancer
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
        httpclient.InferRequestedOutput("output", binary_data=False),
    ]
    result = triton.infer("cancer", [_input(X[:3], binary=True)], outputs=outputs, request_id="req-7")
    assert result.get_response()["id"] == "req-7"
    np.testing.assert_allclose(result.as_numpy("probabilities"), cancer_model.predict_proba(X[:3]))
    np.testing.assert_array_equal(result.as_numpy("output"), cancer_model.predict(X[:3]))


def test_bytes_tensors_binary_and_json(triton: Any, customers: Any, frame_model: Any) -> None:
    frame, _ = customers
    rows = frame.head(6)
    for binary in (True, False):
        age = httpclient.InferInput("age", [6], "INT64")
        age.set_data_from_numpy(rows["age"].to_numpy(np.int64), binary_data=binary)
        income = httpclient.InferInput("income", [6], "FP64")
        income.set_data_from_numpy(rows["income"].to_numpy(np.float64), binary_data=binary)
        plan = httpclient.InferInput("plan", [6], "BYTES")
        plan.set_data_from_numpy(rows["plan"].to_numpy(object), binary_data=binary)
        result = triton.infer("customers", [age, income, plan])
        np.testing.assert_array_equal(result.as_numpy("output"), frame_model.predict(rows))


def test_errors_reach_the_client_with_their_message(triton: Any, cancer: Any) -> None:
    X, _ = cancer
    wrong = httpclient.InferInput("input", [2, 29], "FP64")
    wrong.set_data_from_numpy(X[:2, :29])
    with pytest.raises(InferenceServerException) as info:
        triton.infer("cancer", [wrong])
    assert info.value.status() == "400"
    assert "input 'input': wrong shape" in info.value.message()
    # FP32 widens to FP64 without loss: accepted. FP64 into an INT64 input would lose: refused.
    as_float32 = httpclient.InferInput("input", [1, 30], "FP32")
    as_float32.set_data_from_numpy(X[:1].astype(np.float32))
    assert triton.infer("cancer", [as_float32]).as_numpy("output").shape == (1,)


def test_lossy_datatype_is_refused(triton: Any, customers: Any) -> None:
    frame, _ = customers
    inputs = []
    for name, datatype, values in (
        ("age", "FP64", frame["age"].head(2).to_numpy(np.float64)),
        ("income", "FP64", frame["income"].head(2).to_numpy()),
        ("plan", "BYTES", frame["plan"].head(2).to_numpy(object)),
    ):
        tensor = httpclient.InferInput(name, [2], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException, match="input 'age': wrong datatype: expected INT64, got FP64"):
        triton.infer("customers", inputs)
