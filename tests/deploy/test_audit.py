"""Every decision about a deployment is in its audit trail, including the ones that change nothing: a gate
refusal, a skipped gate, a forced promotion. On SQLite and PostgreSQL."""

from __future__ import annotations

import socket

import pytest

from mlpilot.deploy import Deployments, GateConfig
from mlpilot.errors import ConflictError, InvalidInputError, RemoteError
from mlpilot.registry import RegistryService

from .conftest import register


@pytest.fixture
def strict(deployments: Deployments, registry: RegistryService) -> Deployments:
    """``churn`` v1 (accuracy .95) and v2 (.80) and a deployment gated on accuracy, serving v1."""
    register(registry, accuracy=0.95)
    register(registry, accuracy=0.80)
    deployments.create("churn", model="churn", version=1, gate=GateConfig(metric="accuracy"))
    return deployments


@pytest.mark.parametrize("strategy", ["canary", "blue_green", "shadow", "ab"])
def test_a_gate_refusal_is_audited_and_changes_nothing(strict: Deployments, strategy: str) -> None:
    before = strict.get("churn")
    start = getattr(strict, f"start_{strategy}")
    with pytest.raises(ConflictError, match="the gate refused v2"):
        start("churn", 2, actor="alice", reason="retrained on May data")
    after = strict.get("churn")
    assert (after.revision, after.spec) == (before.revision, before.spec)
    assert len(strict.history("churn")) == before.revision
    event = strict.events("churn")[-1]
    assert (event.kind, event.actor) == ("deployment.gate_refused", "alice")
    payload = event.payload
    assert payload["reason"] == "retrained on May data"
    assert (payload["version"], payload["champion"], payload["revision"]) == (2, 1, before.revision)
    assert payload["requested"].startswith(strategy)
    assert payload["failed"] == ["evaluation"]
    evaluation = next(c for c in payload["checks"] if c["name"] == "evaluation")
    assert "accuracy 0.8 vs champion 0.95" in evaluation["detail"]


def test_a_skipped_gate_is_in_the_event(strict: Deployments) -> None:
    strict.start_canary("churn", 2, skip_gate=True, actor="bob", reason="hotfix, judged by hand")
    event = strict.events("churn")[-1]
    assert (event.kind, event.actor, event.payload["gate"]) == ("deployment.canary_started", "bob", "skipped")
    assert event.payload["reason"] == "hotfix, judged by hand"


def test_a_preview_is_promoted_only_when_verified_or_forced(churn: Deployments) -> None:
    churn.start_blue_green("churn", 2)
    with pytest.raises(ConflictError, match="it has not been verified") as err:
        churn.promote("churn", reason="looks fine")
    assert err.value.field == "verification"
    with pytest.raises(InvalidInputError, match="a forced promotion needs a reason"):
        churn.promote("churn", force=True)
    info = churn.promote("churn", force=True, actor="carol", reason="verified by hand on staging")
    assert info.spec.primary.version == 2
    event = churn.events("churn")[-1]
    assert (event.kind, event.actor, event.payload["forced"]) == ("deployment.promoted", "carol", True)
    # other strategies are promoted as before: their analysis is the verification
    churn.start_shadow("churn", 3)
    assert churn.promote("churn", reason="the shadow agreed").spec.primary.version == 3


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_only_a_preview_is_verified_and_an_unreachable_data_plane_records_nothing(churn: Deployments) -> None:
    with pytest.raises(ConflictError, match="only a blue-green preview is verified; the deployment is stable"):
        churn.verify_preview("churn", "http://127.0.0.1:8080")
    churn.start_blue_green("churn", 2)
    before = churn.get("churn").revision
    with pytest.raises(InvalidInputError) as err:
        churn.verify_preview("churn", "127.0.0.1:8080")
    assert err.value.field == "url"
    with pytest.raises(InvalidInputError) as err:
        churn.verify_preview("churn", "http://127.0.0.1:8080", requests=0)
    assert err.value.field == "requests"
    with pytest.raises(RemoteError, match="cannot reach the data plane"):
        churn.verify_preview("churn", _closed_port_url())
    assert churn.get("churn").revision == before
    assert churn.events("churn")[-1].kind == "deployment.blue_green_started"
