"""Blue-green preview verification end to end: a real control plane (``mlpilot server`` in a thread), a real data
plane following it over HTTP, smoke requests on the preview route through the SDK, REST and the CLI, and the
promotion they unlock. Models are pyfunc models with planted problems."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli
from mlpilot.deploy import Deployments, GateConfig
from mlpilot.deploy.dataplane import RunningDataPlane, build_data_plane, serve_in_thread
from mlpilot.errors import ConflictError, RemoteError
from mlpilot.remote.deploy import RestDeployments
from mlpilot.remote.http import HttpTransport
from tests.conftest import LiveServer

from . import planted

pytest.importorskip("uvicorn")
pytest.importorskip("cloudpickle")
pytestmark = pytest.mark.slow

GOOD, GOOD_TOO, SLOW, UNSTABLE = 1, 2, 3, 4
#: generous enough that a healthy model on a busy 2-core machine passes; the slow model sleeps 60 ms a call
ROOMY_BUDGET_MS, TIGHT_BUDGET_MS = 5_000.0, 20.0


@dataclass
class Env:
    control: LiveServer
    deployments: Deployments
    client: Any
    rest: RestDeployments


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    import cloudpickle  # type: ignore[import-untyped]

    from mlpilot.registry import log_model

    cloudpickle.register_pickle_by_value(planted)
    control = LiveServer(tmp_path_factory.mktemp("control-plane"))
    transport = HttpTransport(control.url)
    try:
        client = control.client
        zeros = np.zeros((8, 4))
        real_rows = np.random.default_rng(0).normal(size=(50, 4))
        for model, training in (
            (planted.Threshold(), None),
            (planted.Threshold(), None),
            (planted.Slow(60), None),
            # logged on zeros (its signature says integer labels), sampled from real rows (where it answers floats)
            (planted.Unstable(), real_rows),
        ):
            log_model(
                model,
                "churn",
                registry=client.registry,
                artifacts=client.artifacts,
                input_example=zeros,
                training_data=training,
            )
        cloudpickle.unregister_pickle_by_value(planted)
        yield Env(control, control.services.deployments, client, RestDeployments(transport))
    finally:
        transport.close()
        control.stop()


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _preview(env: Env, version: int, *, budget_ms: float, skip_gate: bool = False) -> tuple[str, int]:
    """A new endpoint on GOOD with ``version`` loaded for preview; its name and the preview's revision."""
    name = f"bg-{uuid.uuid4().hex[:8]}"
    env.deployments.create(name, model="churn", version=GOOD, gate=GateConfig(latency_budget_ms=budget_ms))
    reason = "the preview check is what is tested" if skip_gate else "retrained"
    info = env.deployments.start_blue_green(name, version, skip_gate=skip_gate, reason=reason)
    return name, info.revision


def _plane(env: Env, name: str, revision: int) -> RunningDataPlane:
    from mlpilot.serving import RegistrySource

    plane = build_data_plane(
        RegistrySource(env.client.registry, env.client.artifacts),
        control_url=env.control.url,
        names=[name],
        poll_interval=0.1,
        report_interval=0.2,
    )
    running = serve_in_thread(plane)
    _wait(lambda: any(rev >= revision for _, rev, _ in plane.follower.applied), "the data plane to load the preview")
    return running


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["deploy", *args])
    return result.exit_code, result.output


def _cli_streams(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["deploy", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_verified_preview_is_promoted_and_not_before(env: Env) -> None:
    name, revision = _preview(env, GOOD_TOO, budget_ms=ROOMY_BUDGET_MS)
    with _plane(env, name, revision) as running:
        with pytest.raises(ConflictError, match="v2 is not promoted: it has not been verified") as refused:
            env.rest.promote(name, reason="looks fine to me")
        assert refused.value.field == "verification"
        # over REST: the control plane sends the smoke requests to the data plane
        result = env.rest.verify_preview(name, running.url, reason="pre-switch check")
        with httpx.Client(base_url=running.url) as http:
            live = http.post(f"/v1/models/{name}:predict", json={"instances": [[1, 0, 0, 0]]})
    assert result.passed, result.checks
    assert (result.version, result.inputs, result.requests, result.answered) == (GOOD_TOO, "sample", 20, 20)
    assert [c.name for c in result.checks] == ["requests", "signature", "latency"]
    assert result.p99_ms is not None
    assert f"within the {ROOMY_BUDGET_MS:g} ms budget" in result.checks[2].detail
    assert live.headers["x-mlpilot-variant"] == "v1"  # live traffic stayed on the primary
    last = env.deployments.history(name)[-1]
    assert (last.action, last.reason, last.spec.state) == ("preview_verified", "pre-switch check", "preview")
    event = env.deployments.events(name)[-1]
    assert event.kind == "deployment.preview_verified"
    assert event.payload["verification"]["p99_ms"] == result.p99_ms
    assert event.payload["verification"]["answered"] == 20
    assert "passed its verification" in env.deployments.analyze(name).reason
    promoted = env.rest.promote(name, reason="preview verified")
    assert promoted.spec.primary.version == GOOD_TOO
    assert env.deployments.events(name)[-1].kind == "deployment.promoted"
    assert "forced" not in env.deployments.events(name)[-1].payload
    env.deployments.rollback(name, reason="leave the champion where the other tests expect it")


def test_answers_that_break_the_signature_fail_and_only_force_promotes(env: Env) -> None:
    name, revision = _preview(env, UNSTABLE, budget_ms=ROOMY_BUDGET_MS)
    with _plane(env, name, revision) as running:
        result = env.deployments.verify_preview(name, running.url, requests=5, actor="alice", reason="smoke")
    assert not result.passed
    signature = next(c for c in result.checks if c.name == "signature")
    assert not signature.passed
    assert "5 of 5 answers break it: output output: float values where the signature has int64" in signature.detail
    assert next(c for c in result.checks if c.name == "requests").passed  # it answered: wrongly
    last = env.deployments.history(name)[-1]
    assert (last.action, last.actor) == ("preview_failed", "alice")
    assert "failed preview verification: signature" in last.spec.message
    with pytest.raises(ConflictError, match="it failed its last verification"):
        env.deployments.promote(name, reason="ship it")
    code, out = _cli("promote", name, "--force", "--url", env.control.url)
    assert code == 2  # a forced promotion needs a reason
    assert out.strip() == "error: reason: a forced promotion needs a reason (it is recorded)"
    code, out = _cli("promote", name, "--force", "-r", "the float scores are intended", "--url", env.control.url)
    assert code == 0, out
    assert env.deployments.get(name).spec.primary.version == UNSTABLE
    promoted = next(e for e in reversed(env.deployments.events(name)) if e.kind == "deployment.promoted")
    assert (promoted.payload["forced"], promoted.payload["reason"]) == (True, "the float scores are intended")
    env.deployments.rollback(name, reason="leave the champion where the other tests expect it")


def test_a_preview_over_the_latency_budget_fails_from_the_cli(env: Env, tmp_path: Path) -> None:
    name, revision = _preview(env, SLOW, budget_ms=TIGHT_BUDGET_MS, skip_gate=True)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"instances": [[0.5, 1, 2, 3], [-0.5, 1, 2, 3]]}))
    with _plane(env, name, revision) as running:
        code, out, err = _cli_streams(
            "verify", name, "--data-plane", running.url, "--inputs", str(rows), "--requests", "4", "--json",
            "--url", env.control.url,
        )  # fmt: skip
    assert code == 4
    assert err == f"error: v{SLOW} failed preview verification (latency): not promotable\n"
    result = json.loads(out)
    assert (result["passed"], result["inputs"], result["answered"]) == (False, "given", 4)
    latency = next(c for c in result["checks"] if c["name"] == "latency")
    # the model sleeps 60 ms a call: its p99 cannot be within a 20 ms budget
    assert result["p99_ms"] >= 60
    assert latency["passed"] is False
    assert f"over the {TIGHT_BUDGET_MS:g} ms budget" in latency["detail"]
    assert env.deployments.history(name)[-1].action == "preview_failed"
    code, out = _cli("promote", name, "--url", env.control.url)
    assert code == 4
    assert "failed its last verification" in out
    env.deployments.rollback(name, reason="too slow")


def test_a_data_plane_that_does_not_serve_the_preview_records_nothing(env: Env) -> None:
    name, _ = _preview(env, GOOD_TOO, budget_ms=ROOMY_BUDGET_MS)
    before = env.deployments.get(name).revision
    # the control plane is no model server: it serves no preview route
    with pytest.raises(ConflictError, match="does not serve") as err:
        env.rest.verify_preview(name, env.control.url)
    assert err.value.field == "url"
    with pytest.raises(RemoteError, match="cannot reach the data plane"):
        env.deployments.verify_preview(name, _closed_port_url())
    assert env.deployments.get(name).revision == before
    env.deployments.rollback(name, reason="test over")


def _closed_port_url() -> str:
    """The URL of a port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_verification_longer_than_the_clients_timeout_still_returns_over_rest(env: Env) -> None:
    # 30 smoke requests to a model that sleeps 60 ms a call take at least 1.8 s on the server: longer than this
    # client's 1 s timeout, which holds for ordinary calls but not for the verification's answer.
    name, revision = _preview(env, SLOW, budget_ms=ROOMY_BUDGET_MS, skip_gate=True)
    transport = HttpTransport(env.control.url, timeout=1.0)
    try:
        with _plane(env, name, revision) as running:
            result = RestDeployments(transport).verify_preview(name, running.url, requests=30, reason="slow smoke")
    finally:
        transport.close()
    assert (result.passed, result.requests, result.answered) == (True, 30, 30)
    assert result.p99_ms is not None
    assert result.p99_ms >= 60
    assert env.deployments.history(name)[-1].action == "preview_verified"
    env.deployments.rollback(name, reason="leave the champion where the other tests expect it")
