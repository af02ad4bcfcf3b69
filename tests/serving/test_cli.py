"""``mlpilot serve`` from the command line: a registered model served from the embedded store, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "name the models to serve"),
        (("ghost@champion",), 3, "ghost"),
        (("a/1", "--max-batch-size", "0"), 78, "batching.max_batch_size"),
        (("a/1", "--config", "missing.toml"), 2, "not both"),
        (("a/1", "--shadow", "nice=20"), 78, "shadow.nice: Input should be less than or equal to 19"),
        (("a/1", "--shadow", "max_queue=lots"), 78, "shadow.max_queue: Input should be a valid integer"),
        (("a/1", "--shadow", "isolation=fork"), 78, "shadow.isolation: Input should be 'process' or 'thread'"),
        (("a/1", "--shadow", "nice"), 2, "--shadow: expected KEY=VALUE"),
        (("a/1", "--shadow", "no_such_knob=1"), 78, "shadow.no_such_knob: Extra inputs are not permitted"),
        # a following server checks its options before it asks the control plane for anything
        (("--follow", "x", "--control-plane", "http://127.0.0.1:9", "--shadow", "max_queue=0"), 78, "max_queue"),
    ],
)
def test_errors_are_one_line(args: tuple[str, ...], code: int, message: str) -> None:
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert result.output.count("\n") <= 2


def test_serve_a_registered_model(tmp_path: Path, cancer: Any, cancer_model: Any) -> None:
    import mlpilot

    X, _ = cancer
    home = tmp_path / "home"
    os.environ["MLPILOT_HOME"] = str(home)  # restored by the autouse isolation fixture
    client = mlpilot.Client()
    client.log_model(cancer_model, "cancer", input_example=X[:5], aliases=["champion"])
    client.close()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlpilot.cli", "serve", "cancer@champion", "--port", str(port), "--threads", "1"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "mlpilot serve did not start"
            time.sleep(0.1)
        response = httpx.post(f"{url}/invocations", json={"instances": X[:2].tolist()})
        assert response.json() == {"predictions": cancer_model.predict(X[:2]).tolist()}
        assert httpx.get(f"{url}/v2/models/cancer").json()["platform"] == "mlpilot_sklearn"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr  # a graceful shutdown on SIGINT is a clean exit
    assert "mlpilot serve on http://127.0.0.1" in stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if "request_id" in line]
    assert any(a["request_id"] == response.headers["x-request-id"] and a["status"] == 200 for a in access)
    segments = list((home / "predictions" / "model=cancer" / "version=1").rglob("*.parquet"))
    assert segments, "the prediction log was not flushed at shutdown"


def test_shadow_options_reach_the_serving_config() -> None:
    from mlpilot.cli.serve import config_overrides
    from mlpilot.serving import ServeConfig

    overrides = config_overrides(threads=1, shadow=("live_grace_ms=2.5", "max_batch_rows=32"))
    config = ServeConfig.from_dict({"models": [{"ref": "a/1"}], **overrides})
    settings = config.shadow.settings()
    assert (settings.live_grace_ms, settings.max_batch_rows, settings.max_queue) == (2.5, 32, 256)
    assert config.inference_threads == 1
