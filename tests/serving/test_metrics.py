"""``/metrics`` is valid Prometheus exposition with Prometheus naming, and counts what happened."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mlpilot.serving.testing import RunningServer


def _families(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def test_metrics_parse_and_follow_prometheus_naming(fresh_server: RunningServer, cancer: Any) -> None:
    server = fresh_server
    X, _ = cancer
    with httpx.Client(base_url=server.url) as http:
        for i in range(5):
            assert http.post("/v1/models/cancer:predict", json={"instances": X[i : i + 2].tolist()}).status_code == 200
        assert http.post("/v1/models/cancer:predict", json={"instances": [[1.0]]}).status_code == 400
        assert http.post("/invocations?model=cancer", json={"instances": X[:1].tolist()}).status_code == 200
        assert http.post("/v2/models/made-up-name/infer", json={}).status_code == 404
    families = _families(server.url)
    expected = {
        "mlpilot_serve_requests": "counter",
        "mlpilot_serve_request_duration_seconds": "histogram",
        "mlpilot_serve_queue_duration_seconds": "histogram",
        "mlpilot_serve_inference_duration_seconds": "histogram",
        "mlpilot_serve_batch_size_rows": "histogram",
        "mlpilot_serve_batch_size_requests": "histogram",
        "mlpilot_serve_in_flight_requests": "gauge",
        "mlpilot_serve_queue_rows": "gauge",
        "mlpilot_serve_model_load_duration_seconds": "histogram",
        "mlpilot_serve_model_load_failures": "counter",
        "mlpilot_serve_model_info": "gauge",
        "mlpilot_serve_rejected_requests": "counter",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    for family in families.values():
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            # No per-request labels: nothing that looks like a request id, and no unknown model names.
            assert "request_id" not in sample.labels
            assert sample.labels.get("model") != "made-up-name"
    requests = {
        (s.labels["model"], s.labels["version"], s.labels["protocol"], s.labels["code"]): s.value
        for s in families["mlpilot_serve_requests"].samples
        if s.name == "mlpilot_serve_requests_total"
    }
    assert requests[("cancer", "1", "v1", "200")] == 5
    assert requests[("cancer", "1", "v1", "400")] == 1
    assert requests[("cancer", "1", "invocations", "200")] == 1
    assert requests[("_unknown", "", "v2", "404")] == 1
    rows = {s.name: s.value for s in families["mlpilot_serve_batch_size_rows"].samples if s.labels["model"] == "cancer"}
    assert rows["mlpilot_serve_batch_size_rows_sum"] == 11
    durations = [s for s in families["mlpilot_serve_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in durations if s.labels["model"] == "cancer") == 7
    loads = {s.labels["model"] for s in families["mlpilot_serve_model_load_duration_seconds"].samples}
    assert loads == {"cancer", "customers"}
    info = [s.labels for s in families["mlpilot_serve_model_info"].samples]
    assert {(i["model"], i["version"]) for i in info} == {("cancer", "1"), ("customers", "1")}
