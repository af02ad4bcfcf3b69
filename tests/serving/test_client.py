"""The Python serving client against a real server: each protocol, and server errors as mlpilot error types."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlpilot.errors import InvalidInputError, NotFoundError
from mlpilot.serving.testing import RunningServer, drive


def test_client_speaks_every_protocol(server: RunningServer, cancer: Any, cancer_model: Any, customers: Any) -> None:
    X, _ = cancer
    frame, _ = customers
    with server.client() as client:
        assert client.ready()
        prediction = client.predict("cancer", X[:3].tolist(), outputs=["probabilities"], request_id="abc-1")
        assert prediction.request_id == "abc-1"
        assert prediction.predictions == cancer_model.predict(X[:3]).tolist()
        np.testing.assert_allclose(prediction.outputs["probabilities"], cancer_model.predict_proba(X[:3]))
        for binary in (True, False):
            result = client.infer("cancer", {"input": X[:4]}, binary=binary)
            np.testing.assert_array_equal(result.outputs["output"], cancer_model.predict(X[:4]))
            assert result.version == "1"
        table = client.infer(
            "customers",
            {
                "age": frame["age"].head(2).to_numpy(),
                "income": frame["income"].head(2).to_numpy(),
                "plan": frame["plan"].head(2).to_numpy(),
            },
            outputs=["output"],
        )
        assert list(table.outputs) == ["output"]
        assert client.invocations({"instances": X[:2].tolist()}, model="cancer") == cancer_model.predict(X[:2]).tolist()
        assert "mlpilot_serve_requests_total" in client.metrics()


def test_client_raises_the_servers_error_types(server: RunningServer, cancer: Any) -> None:
    with server.client() as client:
        with pytest.raises(InvalidInputError) as info:
            client.predict("cancer", [[1.0, 2.0]])
        assert info.value.field == "input"
        assert info.value.details["expected"] == "[n, 30]"
        with pytest.raises(NotFoundError):
            client.metadata("ghost")


def test_drive_reports_throughput_and_latency(server: RunningServer, cancer: Any) -> None:
    report = drive(server.url, "cancer", cancer[0][:20].tolist(), requests=60, concurrency=3)
    assert report.statuses == {200: 60}
    assert report.errors == 0
    assert report.requests_per_second > 0
    assert 0 < report.p50_ms <= report.p99_ms
