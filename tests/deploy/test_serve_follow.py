"""``mlpilot serve --follow NAME``: the model server following a deployment on a live control plane, in its own
process; its alias ``mlpilot deploy serve``; one-line errors; a graceful stop on SIGTERM exits 0 (SIGINT:
``tests/serving/test_cli.py``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli
from mlpilot.deploy import CanaryConfig
from tests.conftest import LiveServer

from .conftest import log_tiny_models

pytest.importorskip("uvicorn")
pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("churn/1", "--follow", "churn"), "drop REFS"),
        (("--follow", "churn", "-c", "serve.toml"), "drop REFS and --config"),
        (("--follow", "churn"), "name the mlpilot server to follow"),
        (("--follow", "churn", "--control-plane", "sqlite:///x.db"), "expected the URL of an mlpilot server"),
        (("--follow", "churn", "--control-plane", "http://cp", "--refresh-interval", "5"), "--poll-interval"),
        (("churn/1", "--control-plane", "http://cp"), "go with --follow"),
    ],
)
def test_follow_errors_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.count("\n") == 1


def test_deploy_serve_is_the_same_command() -> None:
    result = CliRunner().invoke(cli, ["deploy", "serve", "churn", "--control-plane", "sqlite:///x.db"])
    assert result.exit_code == 2, result.output
    assert (
        result.output
        == "error: --control-plane: expected the URL of an mlpilot server (http://...), got 'sqlite:///x.db'\n"
    )


@pytest.mark.slow
def test_the_server_follows_a_canary_started_through_the_sdk(tmp_path: Path) -> None:
    control = LiveServer(tmp_path / "control-plane")
    port = _free_port()
    proc: subprocess.Popen[str] | None = None
    try:
        client = control.client
        log_tiny_models(client.registry, client.artifacts, [0.9, 0.91])
        client.deployments.create("churn", model="churn", version=1, reason="first release")
        home = tmp_path / "replica"
        env = {**os.environ, "MLPILOT_HOME": str(home), "PYTHONPATH": os.getcwd()}
        args = ["serve", "--follow", "churn", "--control-plane", control.url, "--port", str(port), "--threads", "1"]
        args += ["--max-wait-ms", "0", "--poll-interval", "0.1"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlpilot.cli", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        running = proc

        def ready() -> bool:
            assert running.poll() is None, running.stderr.read() if running.stderr else "the server exited"
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(ready, "the data plane")
        row = {"instances": [[0.5, 0.1, -0.2, 0.3]]}
        assert httpx.post(f"{url}/v1/models/churn:predict", json=row).headers["x-mlpilot-variant"] == "v1"

        client.deployments.start_canary(
            "churn",
            2,
            canary=CanaryConfig(steps=[50, 100], min_step_seconds=3600, min_step_requests=10**6),
            reason="retrained",
        )
        seen: Counter[str] = Counter()

        def both_answer() -> bool:
            r = httpx.post(
                f"{url}/v1/models/churn:predict", json=row, headers={"x-mlpilot-key": f"k{sum(seen.values())}"}
            )
            assert r.status_code == 200, r.text
            seen[r.headers["x-mlpilot-variant"]] += 1
            return seen["v2"] >= 5 and seen["v1"] >= 5

        _wait(both_answer, "the canary to take traffic")
        # the replica reports what each variant did: the control plane's analysis sees the canary's requests
        _wait(lambda: client.deployments.analyze("churn").variants["v2"]["requests"] >= 5, "the statistics")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)  # what Kubernetes sends a pod it stops
            _, stderr = proc.communicate(timeout=60)
        control.stop()
    assert proc.returncode == 0, stderr  # a graceful shutdown is a clean exit
    assert "Traceback" not in stderr
    assert f"mlpilot serve on http://127.0.0.1:{port} following churn" in stderr
    access = [json.loads(line) for line in stderr.splitlines() if line.startswith("{") and "request_id" in line]
    assert {a["status"] for a in access} == {200}  # one access-log line per request, like `mlpilot serve`
    logged = {p.parent.parent.name for p in (home / "predictions" / "model=churn").rglob("*.parquet")}
    assert logged == {"version=1", "version=2"}  # flushed at shutdown, one partition per variant
