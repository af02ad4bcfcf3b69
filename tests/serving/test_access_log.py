"""Structured access logs: JSON lines written off the request path, bounded when the stream falls behind."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx
import pytest

from mlpilot.serving import ServeConfig
from mlpilot.serving.accesslog import AccessLog
from mlpilot.serving.testing import serve_in_thread


def test_lines_go_to_the_stream_in_batches() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream, flush_interval=60, max_lines=3).start()
    for i in range(5):
        log.write({"request_id": f"r{i}", "status": 200})
    log.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["r0", "r1", "r2"]
    assert log.dropped == 2


def test_server_access_lines_reach_the_logger(
    source: Any, cancer: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServeConfig.from_refs(["cancer@champion"], refresh_interval=0)
    with caplog.at_level(logging.INFO, logger="mlpilot.serving.access"):
        running = serve_in_thread(source, config=config, log_url=tmp_path)
        with httpx.Client(base_url=running.url) as http:
            ok = http.post("/v1/models/cancer:predict", json={"instances": cancer[0][:2].tolist()})
            bad = http.post("/v2/models/ghost/infer", json={})
        running.stop()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mlpilot.serving.access"]
    by_id = {line["request_id"]: line for line in lines}
    first = by_id[ok.headers["x-request-id"]]
    assert (first["status"], first["model"], first["version"], first["rows"]) == (200, "cancer", 1, 2)
    assert first["path"] == "/v1/models/cancer:predict"
    assert first["duration_ms"] > 0
    assert by_id[bad.headers["x-request-id"]]["status"] == 404
