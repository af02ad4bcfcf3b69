from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlpilot.cli.server import is_loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_only_loopback_addresses_skip_auth(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_mlpilot_server_serves_the_sdk(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, MLPILOT_HOME=str(tmp_path / "srv"), MLPILOT_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlpilot.cli", "server"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        import mlpilot

        client = mlpilot.Client(url)
        with client.start_run("via-server") as run:
            run.log_params({"a": 1})
            for step in range(50):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
        assert len(client.get_metric_history(run.id, "loss")) == 50
        client.close()
        assert (tmp_path / "srv" / "mlpilot.db").exists()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err
