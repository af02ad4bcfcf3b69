"""The prediction log: Parquet segments written off the request path, flushed at shutdown, joinable on the
request id every response carries."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpilot.serving import PredictionLog, ServeConfig
from mlpilot.serving.metrics import ServingMetrics
from mlpilot.serving.predlog import LogRecord
from mlpilot.serving.testing import serve_in_thread
from tests.serving.conftest import wait_for


def _read(folder: Path) -> pa.Table:
    files = sorted(folder.rglob("*.parquet"))
    assert files, f"no segments under {folder}"
    assert not list(folder.rglob("*.tmp"))
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")


def test_every_prediction_is_logged_and_flushed_at_shutdown(
    source: Any, cancer: Any, cancer_model: Any, customers: Any, tmp_path: Path
) -> None:
    X, _ = cancer
    frame, _ = customers
    config = ServeConfig.from_refs(["cancer@champion", "customers@champion"], refresh_interval=0)
    running = serve_in_thread(source, config=config, log_url=tmp_path / "log")
    with httpx.Client(base_url=running.url) as http:
        v1 = http.post(
            "/v1/models/cancer:predict",
            json={"instances": X[:2].tolist(), "entity_id": ["p1", "p2"], "segments": {"site": "lyon", "age": 3}},
        )
        v2 = http.post(
            "/v2/models/cancer/infer",
            json={
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 30], "data": X[2].tolist()}],
                "parameters": {"entity_id": "p3"},
            },
        )
        mlflow = http.post("/invocations?model=customers", json={"dataframe_records": frame.head(3).to_dict("records")})
        refused = http.post("/v1/models/cancer:predict", json={"instances": [[1.0]]})
    assert [r.status_code for r in (v1, v2, mlflow, refused)] == [200, 200, 200, 400]
    running.stop()  # flushes

    cancer_log = _read(tmp_path / "log" / "model=cancer")
    assert cancer_log.num_rows == 3  # the refused request is not a prediction
    rows = {(r["request_id"], r["row"]): r for r in cancer_log.to_pylist()}
    first = rows[(v1.headers["x-request-id"], 0)]
    assert (first["protocol"], first["model"], first["version"]) == ("v1", "cancer", 1)
    assert first["entity_id"] == "p1"
    assert rows[(v1.headers["x-request-id"], 1)]["entity_id"] == "p2"
    assert dict(first["segments"]) == {"site": "lyon", "age": "3"}
    assert first["latency_ms"] > 0
    assert abs(first["time"].timestamp() - time.time()) < 600
    assert [first["inputs"][f"input_{j}"] for j in range(30)] == X[0].tolist()
    assert first["outputs"]["output"] == cancer_model.predict(X[:1])[0]
    oip = rows[(v2.headers["x-request-id"], 0)]
    assert (oip["protocol"], oip["entity_id"]) == ("v2", "p3")
    assert oip["outputs"]["probabilities_1"] == pytest.approx(cancer_model.predict_proba(X[2:3])[0, 1])

    table_log = _read(tmp_path / "log" / "model=customers" / "version=1")
    inputs = pa.Table.from_struct_array(table_log.column("inputs").combine_chunks())
    assert inputs.column_names == ["age", "income", "plan"]
    assert inputs.column("plan").to_pylist() == frame["plan"].head(3).tolist()
    assert set(table_log.column("request_id").to_pylist()) == {mlflow.headers["x-request-id"]}
    assert table_log.column("protocol").to_pylist() == ["invocations"] * 3


def test_segments_are_written_in_the_background(source: Any, cancer: Any, tmp_path: Path) -> None:
    config = ServeConfig.from_dict(
        {"models": [{"ref": "cancer@champion"}], "refresh_interval": 0, "log": {"flush_interval": 0.05}}
    )
    running = serve_in_thread(source, config=config, log_url=tmp_path / "log")
    try:
        with httpx.Client(base_url=running.url) as http:
            http.post("/v1/models/cancer:predict", json={"instances": cancer[0][:1].tolist()})
        wait_for(lambda: any((tmp_path / "log").rglob("*.parquet")), what="a segment while serving")
        assert "mlpilot_serve_prediction_log_segments_total 1.0" in httpx.get(f"{running.url}/metrics").text
    finally:
        running.stop()


def test_sampling_zero_logs_nothing(source: Any, cancer: Any, tmp_path: Path) -> None:
    config = ServeConfig.from_dict({"models": [{"ref": "cancer@champion"}], "log": {"sample_rate": 0.0}})
    running = serve_in_thread(source, config=config, log_url=tmp_path / "log")
    with httpx.Client(base_url=running.url) as http:
        for _ in range(10):
            assert http.post("/v1/models/cancer:predict", json={"instances": cancer[0][:1].tolist()}).status_code == 200
    running.stop()
    assert not list((tmp_path / "log").rglob("*.parquet"))


def _record(i: int, rows: int = 1) -> LogRecord:
    return LogRecord(
        f"r{i}",
        1_700_000_000_000 + i,
        "v1",
        "m",
        2,
        rows,
        {"x": np.full((rows, 2), float(i))},
        {"output": np.arange(rows)},
        0.001,
    )


def test_log_to_an_fsspec_url_and_bounded_buffer() -> None:
    import fsspec

    metrics = ServingMetrics()
    log = PredictionLog("memory://mlpilot-test/preds", max_buffer_rows=5, metrics=metrics)
    for i in range(4):
        log.record(_record(i))
    log.record(_record(9, rows=3))  # would pass the 5-row bound: dropped and counted
    log.close()
    fs = fsspec.filesystem("memory")
    files = fs.glob("/mlpilot-test/preds/model=m/version=2/date=2023-11-14/*.parquet")
    assert len(files) == 1
    with fs.open(files[0], "rb") as fh:
        table = pq.read_table(fh)
    assert table.column("request_id").to_pylist() == ["r0", "r1", "r2", "r3"]
    assert table.column("inputs").combine_chunks().field("x_1").to_pylist() == [0.0, 1.0, 2.0, 3.0]
    text = metrics.render().decode()
    assert "mlpilot_serve_prediction_log_dropped_rows_total 3.0" in text
    assert "mlpilot_serve_prediction_log_rows_total 4.0" in text
    fs.rm("/mlpilot-test", recursive=True)
