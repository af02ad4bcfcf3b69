"""Backpressure: bounded queues answer 503 with Retry-After at once under overload, memory stays flat, and
oversized bodies are refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.serving.testing import InMemorySource

SERVER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mlpilot.serving import ServeConfig
    from mlpilot.serving.testing import InMemorySource, serve_in_thread

    class Slow:
        def predict(self, x):
            time.sleep(0.02)
            return np.asarray(x).sum(axis=1)

    source = InMemorySource()
    source.add("slow", Slow(), input_example=np.ones((2, 8)))
    config = ServeConfig.from_dict({
        "models": [{"ref": "slow/1"}],
        "batching": {"max_batch_size": 4, "max_queue_size": 16},
        "access_log": False,
        "refresh_interval": 0,
    })
    running = serve_in_thread(source, config=config, log_url=sys.argv[1])
    print(running.url, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
    running.stop()
    """
)


@pytest.fixture
def overloadable(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A server in its own process (so its memory is its own): a 20 ms model, batches of 4, a 16-row queue."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "predictions")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    url = proc.stdout.readline().strip()
    try:
        assert url.startswith("http://127.0.0.1:"), "the server did not start"
        yield url, proc.pid
    finally:
        proc.stdin.close()
        proc.wait(60)
        proc.stdout.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _connection(host: str, port: int, request: bytes, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """One keep-alive connection sending ``count`` requests back to back (a light client, like wrk's)."""
    reader, writer = await asyncio.open_connection(host, port)
    answers = []
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            body = await reader.readexactly(int(headers["content-length"]))
            answers.append((int(lines[0].split()[1]), headers, body))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


def _burst(url: str, connections: int = 100, per_connection: int = 4) -> list[tuple[int, dict[str, str], bytes]]:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"instances": [[1.0] * 8]}).encode()
    request = (
        f"POST /v1/models/slow:predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        done = await asyncio.gather(
            *(_connection(host, int(port), request, per_connection) for _ in range(connections))
        )
        return [answer for answers in done for answer in answers]

    return asyncio.run(run())


def test_overload_gets_503_at_once_and_memory_stays_flat(overloadable: tuple[str, int]) -> None:
    url, pid = overloadable
    first = _burst(url)
    codes = [status for status, _, _ in first]
    assert set(codes) <= {200, 503}
    assert codes.count(200) >= 16
    refused = [(headers, json.loads(body)) for status, headers, body in first if status == 503]
    assert len(refused) > 100
    assert all(int(headers["retry-after"]) >= 1 for headers, _ in refused)
    assert all(doc["type"] == "OverloadedError" and "overloaded" in doc["error"] for _, doc in refused)
    baseline = _rss_kib(pid)
    for _ in range(5):
        assert {status for status, _, _ in _burst(url)} <= {200, 503}
    growth_mib = (_rss_kib(pid) - baseline) / 1024
    # 2,000 more requests refused or served and nothing accumulates: a leak of 5 kB each would be 10 MiB.
    assert growth_mib < 8, f"RSS grew by {growth_mib:.1f} MiB"
    metrics = httpx.get(f"{url}/metrics").text
    assert 'mlpilot_serve_rejected_requests_total{model="slow",reason="queue_full"}' in metrics
    assert 'mlpilot_serve_requests_total{code="503",model="slow",protocol="v1",version="1"}' in metrics


def test_in_flight_limit(serve: Any) -> None:
    class Slow:
        def predict(self, x: Any) -> Any:
            import time

            time.sleep(0.05)
            return np.asarray(x).sum(axis=1)

    source = InMemorySource()
    source.add("slow", Slow(), input_example=np.ones((2, 2)))
    running = serve(source, ["slow/1"], max_in_flight=2, batching={"max_batch_size": 1})
    responses = asyncio.run(_burst_small(running.url, 12))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes
    assert 503 in codes
    assert set(codes) == {200, 503}
    assert 'reason="in_flight"' in httpx.get(f"{running.url}/metrics").text


async def _burst_small(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body = {"instances": [[1.0, 2.0]]}
        return await asyncio.gather(*(client.post("/v1/models/slow:predict", json=body) for _ in range(n)))


def test_oversized_body_is_refused(serve: Any, source: Any) -> None:
    running = serve(source, ["cancer@champion"], max_request_bytes=4096)
    big = {"instances": [[0.5] * 30] * 100}
    with httpx.Client(base_url=running.url) as http:
        response = http.post("/v1/models/cancer:predict", json=big)
        assert response.status_code == 413
        assert response.json()["type"] == "RequestTooLargeError"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            yield b'{"instances": ['
            for _ in range(200):
                yield b"[" + b"0.5," * 29 + b"0.5],"
            yield b"[0.5]]}"

        streamed = http.post("/v1/models/cancer:predict", content=chunks())
        assert streamed.status_code == 413
        assert http.post("/v1/models/cancer:predict", json={"instances": [[0.5] * 30]}).status_code == 200
