"""The deployments service on SQLite and PostgreSQL: specs, history, audit, champion, rollback, statistics."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mlpilot.deploy import CanaryConfig, Deployments, Outcome, VariantStats, reconcile
from mlpilot.errors import AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError
from mlpilot.registry import RegistryService
from mlpilot.store import Store
from mlpilot.store.schema import AuditEvent

from .conftest import FakeClock, register, traffic

FAST = CanaryConfig(steps=[10, 50, 100], min_step_seconds=60, min_step_requests=300)


def _events(store: Store, prefix: str) -> list[AuditEvent]:
    with store.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.kind.like(f"{prefix}%")).order_by(AuditEvent.id)))


def test_create_serves_the_version_and_points_champion(churn: Deployments, registry: RegistryService) -> None:
    info = churn.get("churn")
    assert info.revision == 1
    assert [(v.version, v.role, v.weight) for v in info.spec.variants] == [(1, "primary", 100.0)]
    assert registry.get_model("churn").aliases == {"champion": 1}
    doc = churn.serving_config("churn")
    assert doc.models == [{"ref": "churn/1", "name": "churn"}]
    assert doc.etag == '"churn-1"'


def test_create_refuses_duplicates_bad_names_and_unknown_versions(churn: Deployments) -> None:
    with pytest.raises(AlreadyExistsError):
        churn.create("churn", model="churn", version=2)
    with pytest.raises(InvalidInputError, match="name"):
        churn.create("Bad_Name", model="churn", version=2)
    with pytest.raises(NotFoundError, match="version"):
        churn.create("other", model="churn", version=99)
    with pytest.raises(NotFoundError, match="model"):
        churn.create("other", model="nope", version=1)
    assert [d.name for d in churn.list_deployments()] == ["churn"]


def test_every_change_is_a_revision_and_an_audit_event_naming_who_and_why(churn: Deployments, store: Store) -> None:
    churn.start_canary("churn", 2, canary=FAST, actor="alice", reason="retrained on May data")
    churn.pause("churn", actor="bob", reason="looking at a dashboard")
    churn.rollback("churn", actor="bob", reason="customer complaint")
    history = churn.history("churn")
    assert [(h.revision, h.action, h.actor, h.reason) for h in history] == [
        (1, "created", "local", "first release"),
        (2, "canary_started", "alice", "retrained on May data"),
        (3, "paused", "bob", "looking at a dashboard"),
        (4, "rolled_back", "bob", "customer complaint"),
    ]
    kinds = [(e.kind, e.actor, e.payload["reason"]) for e in _events(store, "deployment.")]
    assert kinds[1:] == [
        ("deployment.canary_started", "alice", "retrained on May data"),
        ("deployment.paused", "bob", "looking at a dashboard"),
        ("deployment.rolled_back", "bob", "customer complaint"),
    ]
    assert [e.kind for e in churn.events("churn")][-1] == "deployment.rolled_back"


def test_canary_advances_then_promotes_and_moves_champion(
    churn: Deployments, clock: FakeClock, registry: RegistryService
) -> None:
    churn.start_canary("churn", 2, canary=FAST)
    clock.advance(61)
    traffic(churn, "churn", 3000)
    assert reconcile(churn, "churn").action == "advance"
    assert churn.get("churn").spec.candidate.weight == 50  # type: ignore[union-attr]
    clock.advance(61)
    traffic(churn, "churn", 3000)
    assert reconcile(churn, "churn").action == "promote"
    info = churn.get("churn")
    assert info.spec.state == "stable"
    assert [(v.version, v.role) for v in info.spec.variants] == [(2, "primary"), (1, "standby")]
    assert registry.get_model("churn").aliases == {"champion": 2}
    # the promotion and the alias move are in the audit trail, with the controller as the actor
    history = registry.model_history("churn")
    assert (history[-1].kind, history[-1].actor, history[-1].payload["version"]) == ("model.alias_set", "controller", 2)


def test_rollback_after_promotion_restores_the_old_primary_and_champion(
    churn: Deployments, registry: RegistryService
) -> None:
    churn.start_blue_green("churn", 2)
    churn.promote("churn", reason="preview looked fine", force=True)
    assert registry.get_model("churn").aliases == {"champion": 2}
    info = churn.rollback("churn", reason="conversion dropped")
    assert [(v.version, v.role, v.weight) for v in info.spec.variants] == [(1, "primary", 100.0)]
    assert registry.get_model("churn").aliases == {"champion": 1}
    assert "conversion dropped" in info.spec.message
    with pytest.raises(ConflictError, match="nothing to roll back"):
        churn.rollback("churn")


def test_rollback_is_one_transaction(churn: Deployments, store: Store, registry: RegistryService) -> None:
    churn.start_blue_green("churn", 2)
    churn.promote("churn", reason="no data plane in this test", force=True)
    # Make the champion move fail inside the rollback: the version it points back to disappears.
    registry.delete_alias("churn", "champion")
    registry.delete_model_version("churn", 1)
    before = churn.get("churn")
    with pytest.raises(NotFoundError):
        churn.rollback("churn", reason="try")
    after = churn.get("churn")
    assert after.revision == before.revision
    assert after.spec == before.spec
    assert not _events(store, "deployment.rolled_back")


def test_a_stale_revision_is_refused(churn: Deployments) -> None:
    seen = churn.start_canary("churn", 2, canary=FAST).revision
    churn.pause("churn", reason="human first")
    with pytest.raises(ConflictError, match="revision"):
        churn.rollback("churn", if_revision=seen, reason="controller late")
    assert churn.get("churn").spec.state == "paused"


def test_rollouts_need_a_stable_deployment_and_a_new_version(churn: Deployments) -> None:
    with pytest.raises(ConflictError, match="already the primary"):
        churn.start_canary("churn", 1)
    churn.start_shadow("churn", 2, mirror=50)
    with pytest.raises(ConflictError, match="shadowing"):
        churn.start_canary("churn", 3)
    with pytest.raises(ConflictError):
        churn.advance("churn")
    with pytest.raises(NotFoundError):
        churn.start_canary("nope", 3)


def test_standby_is_released_after_the_retention_window(churn: Deployments, clock: FakeClock) -> None:
    churn.start_blue_green("churn", 2, retention_seconds=300)
    churn.promote("churn", reason="no data plane in this test", force=True)
    assert reconcile(churn, "churn").action == "none"
    clock.advance(301)
    outcome = reconcile(churn, "churn")
    assert outcome.action == "release_standby"
    assert [v.version for v in churn.get("churn").spec.variants] == [2]
    # released, the old version is no longer loaded but a rollback still restores it
    assert churn.rollback("churn").spec.primary.version == 1


def test_observations_from_replicas_are_merged(churn: Deployments, clock: FakeClock) -> None:
    churn.start_canary("churn", 2, canary=FAST)
    traffic(churn, "churn", 1000, error_rate={2: 0.1}, source="a")
    traffic(churn, "churn", 1000, error_rate={2: 0.1}, source="b")
    traffic(churn, "churn", 1000, error_rate={2: 0.1}, source="a")
    report = churn.analyze("churn")
    assert report.variants["v2"]["requests"] == 300
    assert report.variants["v2"]["errors"] == 30
    assert report.variants["v1"]["requests"] == 2700


def test_bad_observations_are_refused(churn: Deployments) -> None:
    with pytest.raises(InvalidInputError, match="revision"):
        churn.record_observations("churn", source="r", revision=9, rollout=0, variants={})
    with pytest.raises(InvalidInputError, match="variants"):
        churn.record_observations("churn", source="r", revision=1, rollout=0, variants={"x": VariantStats()})
    with pytest.raises(InvalidInputError, match="stats"):
        VariantStats.from_dict({"requests": 1, "errors": 5})


def test_outcomes_are_attributed_by_the_routers_hashing(churn: Deployments) -> None:
    from mlpilot.deploy import RouteTable

    info = churn.start_ab("churn", 2)
    table = RouteTable.build("churn", info.spec.variants, routing=info.spec.routing)
    keys = [f"user-{i}" for i in range(400)]
    counts = churn.record_outcomes("churn", [Outcome(key=k, value=1.0) for k in keys])
    expected_b = sum(table.choose(k) == 2 for k in keys)
    assert counts == {"v1": 400 - expected_b, "v2": expected_b}
    assert 150 < expected_b < 250
    labelled = churn.record_outcomes("churn", [Outcome(variant="v2", prediction=1, label="1")])
    assert labelled == {"v2": 1}
    with pytest.raises(InvalidInputError, match="variant"):
        churn.record_outcomes("churn", [Outcome(variant="v9", value=1)])


def test_deleting_keeps_the_audit_record(churn: Deployments, store: Store) -> None:
    churn.delete("churn", reason="endpoint retired")
    with pytest.raises(NotFoundError):
        churn.get("churn")
    assert _events(store, "deployment.deleted")[0].payload == {"reason": "endpoint retired"}


def test_models_can_back_several_endpoints(store: Store, clock: FakeClock) -> None:
    registry = RegistryService(store)
    register(registry, "fraud")
    d = Deployments(store, clock=clock)
    d.create("fraud-eu", model="fraud", version=1)
    d.create("fraud-us", model="fraud", version=1)
    assert [x.name for x in d.list_deployments(model="fraud")] == ["fraud-eu", "fraud-us"]
