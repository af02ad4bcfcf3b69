"""Adaptive batching on a real server: requests merge under concurrency, never wait at concurrency 1, respect the
batch size, and one bad request does not fail its batch companions."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlpilot.serving.testing import InMemorySource


class SlowModel:
    """A user model that takes a while per call (like a big model would), whatever the batch size."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.lock = threading.Lock()

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with self.lock:
            self.calls += 1
        time.sleep(self.seconds)
        if np.isnan(x).any():
            raise ValueError("NaN in the input")
        return np.asarray(x).sum(axis=1)


def _samples(url: str, family: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    out: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name.startswith(family):
                out[sample.name + str(sorted(sample.labels.items()))] = sample.value
    return out


def _one(samples: dict[str, float], prefix: str) -> float:
    return next(v for k, v in samples.items() if k.startswith(prefix))


def _post_many(url: str, bodies: list[dict[str, Any]], workers: int) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: client.post("/v1/models/slow:predict", json=b), bodies))


def test_concurrent_requests_run_as_one_batch(serve: Any) -> None:
    model = SlowModel(0.05)
    source = InMemorySource()
    source.add("slow", model, input_example=np.ones((2, 3)))
    running = serve(source, ["slow/1"], batching={"max_batch_size": 64})
    model.calls = 0
    bodies = [{"instances": [[float(i), 1.0, 2.0]]} for i in range(32)]
    responses = _post_many(running.url, bodies, workers=32)
    assert [r.json()["predictions"] for r in responses] == [[i + 3.0] for i in range(32)]
    # 32 requests arriving while a 50 ms call runs are merged: far fewer calls than requests.
    assert model.calls < 16
    samples = _samples(running.url, "mlpilot_serve_batch_size_requests")
    assert _one(samples, "mlpilot_serve_batch_size_requests_sum") == 32
    assert _one(samples, "mlpilot_serve_batch_size_requests_count") == model.calls


def test_batches_never_exceed_max_batch_size(serve: Any) -> None:
    model = SlowModel(0.02)
    source = InMemorySource()
    source.add("slow", model, input_example=np.ones((2, 3)))
    running = serve(source, ["slow/1"], batching={"max_batch_size": 4})
    bodies = [{"instances": [[1.0, 2.0, 3.0]] * (1 + i % 3)} for i in range(30)]
    assert {r.status_code for r in _post_many(running.url, bodies, workers=30)} == {200}
    samples = _samples(running.url, "mlpilot_serve_batch_size_rows")
    count = _one(samples, "mlpilot_serve_batch_size_rows_count")
    assert _one(samples, "mlpilot_serve_batch_size_rows_bucket[('le', '4.0')") == count
    assert _one(samples, "mlpilot_serve_batch_size_rows_sum") == sum(1 + i % 3 for i in range(30))


def test_a_lone_client_never_waits_for_company(serve: Any) -> None:
    """With a 10 s wait budget, one waiting batch would blow the client's 5 s timeout."""
    model = SlowModel(0.0)
    source = InMemorySource()
    source.add("slow", model, input_example=np.ones((2, 3)))
    running = serve(source, ["slow/1"], batching={"max_batch_size": 64, "max_wait_ms": 10_000})
    with httpx.Client(base_url=running.url, timeout=5) as client:
        for i in range(50):
            body = {"instances": [[float(i), 0.0, 0.0]]}
            assert client.post("/v1/models/slow:predict", json=body).json()["predictions"] == [float(i)]


def test_a_failing_request_does_not_fail_its_batch(serve: Any) -> None:
    model = SlowModel(0.05)
    source = InMemorySource()
    source.add("slow", model, input_example=np.ones((2, 3)))
    running = serve(source, ["slow/1"])
    bodies: list[dict[str, Any]] = [{"instances": [[float(i), 0.0, 0.0]]} for i in range(12)]
    bodies[5] = {"instances": [[None, 0.0, 0.0]]}  # null becomes NaN, which this model refuses
    responses = _post_many(running.url, bodies, workers=12)
    codes = [r.status_code for r in responses]
    assert codes[5] == 500
    assert "NaN in the input" in responses[5].json()["error"]
    assert responses[5].json()["type"] == "PredictionError"
    assert codes[:5] + codes[6:] == [200] * 11
    assert [responses[i].json()["predictions"] for i in (0, 11)] == [[0.0], [11.0]]


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_requests_asking_for_different_outputs_share_a_batch(
    serve: Any, source: Any, cancer: Any, protocol: str
) -> None:
    running = serve(source, ["cancer@champion"])
    X, _ = cancer
    with httpx.Client(base_url=running.url, timeout=30) as client, ThreadPoolExecutor(8) as pool:

        def call(i: int) -> dict[str, Any]:
            if protocol == "v1":
                body = {"instances": X[i : i + 1].tolist(), "outputs": ["probabilities"] if i % 2 else ["output"]}
                doc: dict[str, Any] = client.post("/v1/models/cancer:predict", json=body).json()
                return {"output": doc["predictions"], **doc.get("outputs", {})}
            wanted = [{"name": "probabilities"}] if i % 2 else [{"name": "output"}]
            body = {
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 30], "data": X[i].tolist()}],
                "outputs": wanted,
            }
            outs = client.post("/v2/models/cancer/infer", json=body).json()["outputs"]
            return {o["name"]: o["data"] for o in outs}

        results = list(pool.map(call, range(16)))
    for i, result in enumerate(results):
        assert ("probabilities" in result) == bool(i % 2)
