"""Deployments through a real ``mlpilot server``: the same operations as in process, conditional GETs of the
serving config, errors naming the field, and auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlpilot.deploy import CanaryConfig, DeploymentsBackend, Outcome, VariantStats, reconcile
from mlpilot.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from mlpilot.remote.deploy import RestDeployments
from mlpilot.remote.http import HttpTransport

from .conftest import log_tiny_models


@pytest.fixture
def remote(live_server: Any) -> Iterator[RestDeployments]:
    pytest.importorskip("sklearn")
    log_tiny_models(live_server.client.registry, live_server.client.artifacts, [0.9, 0.91])
    transport = HttpTransport(live_server.url)
    yield RestDeployments(transport)
    transport.close()


def test_rest_backend_satisfies_the_protocol(remote: RestDeployments) -> None:
    assert isinstance(remote, DeploymentsBackend)


def test_full_canary_over_rest(remote: RestDeployments, live_server: Any) -> None:
    remote.create("churn", model="churn", version=1, reason="first")
    info = remote.start_canary(
        "churn", 2, canary=CanaryConfig(steps=[50, 100], min_step_seconds=0, min_step_requests=100), reason="new"
    )
    assert info.spec.state == "canary"
    stats = {"v1": VariantStats(), "v2": VariantStats()}
    for name in stats:
        for i in range(500):
            stats[name].record(status=200, latency_ms=4 + (i % 7) * 0.1, predictions=[i % 2])
    remote.record_observations(
        "churn", source="replica-a", revision=info.revision, rollout=info.spec.rollout, variants=stats
    )
    assert remote.record_outcomes("churn", [Outcome(variant="v2", value=1.0)]) == {"v2": 1}
    report = remote.analyze("churn")
    assert report.variants["v2"]["requests"] == 500
    assert report.action == "promote", report.reason
    # the controller works through the same protocol
    assert reconcile(remote, "churn").action == "promote"
    assert live_server.client.registry.get_model("churn").aliases == {"champion": 2}
    back = remote.rollback("churn", reason="changed my mind")
    assert back.spec.primary.version == 1
    actions = [h.action for h in remote.history("churn")]
    assert actions == ["created", "canary_started", "promoted", "rolled_back"]
    assert [e.kind for e in remote.events("churn")][-1] == "deployment.rolled_back"
    assert [d.name for d in remote.list_deployments()] == ["churn"]


def test_serving_config_supports_conditional_get(remote: RestDeployments, live_server: Any) -> None:
    remote.create("churn", model="churn", version=1)
    with httpx.Client(base_url=live_server.url) as http:
        first = http.get("/api/v1/deployments/churn/config")
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert first.json()["models"] == [{"ref": "churn/1", "name": "churn"}]
        same = http.get("/api/v1/deployments/churn/config", headers={"If-None-Match": etag})
        assert same.status_code == 304
        assert same.content == b""
        remote.start_blue_green("churn", 2)
        changed = http.get("/api/v1/deployments/churn/config", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert [m["ref"] for m in changed.json()["models"]] == ["churn/1", "churn/2"]
    assert remote.serving_config("churn").revision == 2


def test_errors_cross_the_wire_with_their_type_and_field(remote: RestDeployments, live_server: Any) -> None:
    remote.create("churn", model="churn", version=1)
    with pytest.raises(NotFoundError):
        remote.get("nope")
    with pytest.raises(ConflictError, match="already the primary"):
        remote.start_canary("churn", 1)
    with pytest.raises(ConflictError, match="nothing to roll back"):
        remote.rollback("churn")
    with pytest.raises(InvalidInputError) as err:
        remote.transport.request("POST", "/api/v1/deployments/churn/canary", json={"version": 0})
    assert err.value.field == "version"
    with pytest.raises(InvalidInputError) as err:
        remote.transport.request(
            "POST", "/api/v1/deployments/churn/canary", json={"version": 2, "canary": {"steps": [50, 20]}}
        )
    assert err.value.field == "canary.steps"


def test_gate_refusal_carries_the_report(remote: RestDeployments, live_server: Any) -> None:
    from mlpilot.deploy import GateConfig

    remote.create("churn", model="churn", version=2, gate=GateConfig(metric="accuracy"))
    with pytest.raises(ConflictError, match="gate refused v1") as err:
        remote.start_canary("churn", 1)
    assert err.value.details["gate"]["passed"] is False


def test_writes_need_a_token_when_the_server_demands_one(secured_server: Any) -> None:
    transport = HttpTransport(secured_server.url)
    try:
        with pytest.raises(AuthenticationError):
            RestDeployments(transport).list_deployments()
    finally:
        transport.close()
