"""``mlpilot server`` stops gracefully on SIGINT (Ctrl-C) and SIGTERM (Kubernetes stopping a pod): a request in
flight when the signal arrives finishes, its work is stored, and the process exits 0."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CliProcess, free_port

pytest.importorskip("uvicorn")


def _wait(check: object, what: str, timeout: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_lets_the_request_in_flight_finish_and_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    port = free_port()
    home = tmp_path / "srv"
    uploads = tmp_path / "tmp"  # the server spools an upload here while it arrives
    uploads.mkdir()
    env = {**os.environ, "MLPILOT_HOME": str(home), "MLPILOT_PORT": str(port), "TMPDIR": str(uploads)}
    server = CliProcess(["server"], env, port)
    proc, url = server.proc, server.url

    blob = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(blob).hexdigest()
    signalled = threading.Event()
    result: dict[str, httpx.Response | BaseException] = {}

    def body() -> Iterator[bytes]:
        yield blob[:65536]
        signalled.wait(60)  # the rest arrives after the server was told to stop
        for start in range(65536, len(blob), 65536):
            yield blob[start : start + 65536]

    def upload() -> None:
        try:
            result["response"] = httpx.put(f"{url}/api/v1/artifacts/{digest}", content=body(), timeout=60)
        except BaseException as exc:  # reported by the assertion below
            result["response"] = exc

    uploader = threading.Thread(target=upload)
    try:
        _wait(server.ready, "the control plane")
        uploader.start()
        _wait(lambda: any(uploads.glob("mlpilot-upload-*")), "the upload to be in flight")
        proc.send_signal(signum)
        signalled.set()
        uploader.join(60)
        _, stderr = proc.communicate(timeout=60)
    finally:
        signalled.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    response = result["response"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 201, response.text
    assert response.json() == {"sha256": digest, "size": len(blob)}
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "mlpilot control plane stopped" in stderr
    stored = home / "artifacts" / "sha256" / digest[:2] / digest[2:]
    assert stored.read_bytes() == blob, "the upload in flight was stored before the process ended"
    assert not list(uploads.glob("mlpilot-upload-*")), "no spooled upload left behind"
