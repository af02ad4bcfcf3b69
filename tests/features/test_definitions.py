"""Definitions: canonical specs and hashes, plan-time validation, plan diffs, atomic versioned apply."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mlpilot.errors import ConflictError, InvalidInputError
from mlpilot.features import (
    Definitions,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    LocalJsonRegistry,
    ParquetSource,
    SqlSource,
    TableSource,
    apply_definitions,
    plan,
    validate_definitions,
)

from .conftest import hours, table

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    pq.write_table(table(cid=[1], et=[hours(0)], av=[hours(1)], amount=[1.5], n=[3]), tmp_path / "txn.parquet")
    return tmp_path


def good_definitions(repo: Path, *, ttl_days: int = 7) -> list[Any]:
    customer = Entity("customer", join_keys=["cid"])
    txn = FeatureView(
        "txn",
        [customer],
        ParquetSource("txn.parquet", base_dir=repo),
        timestamp_field="et",
        available_at_field="av",
        ttl=timedelta(days=ttl_days),
        features=[Feature("amount", "float64"), Feature("n", "int64")],
    )
    return [customer, txn, FeatureService("churn", [txn[["amount"]]])]


def test_specs_round_trip_with_stable_hashes(repo: Path) -> None:
    customer, txn, churn = good_definitions(repo)
    assert FeatureView.from_spec(txn.to_spec()).to_spec() == txn.to_spec()
    assert Entity.from_spec(customer.to_spec()) == customer
    assert FeatureService.from_spec(churn.to_spec()).spec_hash == churn.spec_hash
    assert txn.to_spec()["ttl_seconds"] == 604800
    assert txn.spec_hash == good_definitions(repo)[1].spec_hash
    assert txn.spec_hash != good_definitions(repo, ttl_days=8)[1].spec_hash
    rebuilt = Definitions.from_specs(Definitions(good_definitions(repo)).to_specs())
    assert rebuilt.to_specs() == Definitions(good_definitions(repo)).to_specs()


def test_sql_and_table_sources_serialize() -> None:
    import pyarrow as pa

    source = SqlSource("SELECT * FROM a", inputs={"a": TableSource(pa.table({"k": [1]}))})
    assert source.to_spec() == {
        "type": "sql",
        "query": "SELECT * FROM a",
        "inputs": {"a": {"type": "table", "schema": {"k": "int64"}}},
    }
    view = FeatureView("v", ["e"], source, "ts", features=[Feature("k", "int64")])
    rebuilt = FeatureView.from_spec(view.to_spec())
    assert rebuilt.spec_hash == view.spec_hash
    from mlpilot.features import get_training_set

    with pytest.raises(InvalidInputError, match="rebuilt from its spec and has no data"):
        get_training_set(
            table(e=[1], event_timestamp=[hours(0)]),
            [rebuilt],
            definitions=Definitions([Entity("e", ["k"]), rebuilt]),
        )


@pytest.mark.parametrize(
    ("build", "message", "field"),
    [
        (lambda: Feature("x", "float"), "dtype must be one of", "features.x.dtype"),
        (lambda: Feature("bad name", "float64"), "expected a name", "feature.name"),
        (
            lambda: Entity("customer", join_keys=[]),
            "join_keys: expected at least one",
            "entities.customer.join_keys",
        ),
        (
            lambda: FeatureView(
                "v", ["e"], ParquetSource("x"), "ts", ttl=timedelta(0), features=[Feature("x", "int64")]
            ),
            "ttl: expected a positive timedelta",
            "feature_views.v.ttl",
        ),
        (
            lambda: FeatureView("v", ["e"], ParquetSource("x"), "ts"),
            "features: expected at least one",
            "feature_views.v.features",
        ),
        (lambda: FeatureService("s", []), "expected at least one", "feature_services.s.features"),
    ],
)
def test_malformed_definitions_fail_at_construction(build: Any, message: str, field: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as exc:
        build()
    assert exc.value.field == field


def test_bad_definitions_are_refused_naming_view_and_field(repo: Path) -> None:
    source = ParquetSource("txn.parquet", base_dir=repo)
    views = [
        FeatureView("unknown_entity", ["nobody"], source, "et", features=[Feature("amount", "float64")]),
        FeatureView("no_ts", ["customer"], source, "event_time", features=[Feature("amount", "float64")]),
        FeatureView("wrong_type", ["customer"], source, "et", features=[Feature("amount", "int64")]),
        FeatureView("missing_feature", ["customer"], source, "et", features=[Feature("amount_7d", "float64")]),
        FeatureView(
            "not_a_time",
            ["customer"],
            source,
            "et",
            available_at_field="n",
            features=[Feature("amount", "float64")],
        ),
        FeatureView(
            "dup",
            ["customer"],
            source,
            "et",
            features=[Feature("amount", "float64"), Feature("amount", "float64")],
        ),
    ]
    defs = Definitions([Entity("customer", ["cid"]), *views, FeatureService("svc", ["ghost:x", "dup:nope"])])
    with pytest.raises(InvalidInputError) as exc:
        validate_definitions(defs)
    problems = {p["field"]: p["message"] for p in exc.value.details["problems"]}
    assert (
        problems["feature_views.unknown_entity.entities"]
        == "feature view 'unknown_entity': unknown entity 'nobody' (customer)"
    )
    assert problems["feature_views.no_ts.timestamp_field"].startswith(
        "feature view 'no_ts': timestamp_field 'event_time' is not a column of its source (cid, et, av, amount, n)"
    )
    assert problems["feature_views.wrong_type.features.amount"] == (
        "feature view 'wrong_type': feature 'amount' is declared int64 but its source column is DOUBLE"
    )
    assert "feature 'amount_7d' is not a column" in problems["feature_views.missing_feature.features.amount_7d"]
    assert "expected a timestamp or date" in problems["feature_views.not_a_time.available_at_field"]
    assert problems["feature_views.dup.features.amount"] == "feature view 'dup': duplicate feature 'amount'"
    assert "unknown feature view 'ghost'" in exc.value.message
    assert "feature view 'dup' has no feature 'nope'" in exc.value.message
    assert exc.value.field == "feature_views.unknown_entity.entities"


def test_duplicate_names_are_refused(repo: Path) -> None:
    customer, txn, _ = good_definitions(repo)
    with pytest.raises(InvalidInputError, match="duplicate feature view name 'txn'") as exc:
        Definitions([customer, txn, good_definitions(repo)[1]])
    assert exc.value.field == "feature_views.txn"
    with pytest.raises(InvalidInputError, match="duplicate entity name 'customer'"):
        Definitions([customer, Entity("customer", ["customer_id"])])
    with pytest.raises(InvalidInputError, match="duplicate feature service name 'churn'"):
        Definitions([FeatureService("churn", ["txn"]), FeatureService("churn", ["txn:amount"])])


def test_join_key_types_must_agree_across_views(repo: Path) -> None:
    pq.write_table(table(cid=["1"], et=[hours(0)], age=[3]), repo / "profile.parquet")
    customer, txn, _ = good_definitions(repo)
    profile = FeatureView(
        "profile",
        [customer],
        ParquetSource(repo / "profile.parquet"),
        "et",
        features=[Feature("age", "int64")],
    )
    with pytest.raises(
        InvalidInputError,
        match="join key 'cid' of entity 'customer' is string here but int in feature view 'txn'",
    ):
        validate_definitions(Definitions([customer, txn, profile]))


def test_plan_reports_added_changed_removed(repo: Path) -> None:
    first = plan([], good_definitions(repo))
    assert first.render() == "+ entity customer\n+ feature_view txn\n+ feature_service churn"
    same = plan(first.specs, good_definitions(repo))
    assert not same.has_changes
    assert same.render() == "no changes"
    customer, txn, _ = good_definitions(repo, ttl_days=3)
    changed = plan(first.specs, [customer, txn])
    assert changed.render() == "~ feature_view txn (ttl_seconds)\n- feature_service churn"
    assert changed.to_dict()["changed"] == [{"kind": "feature_view", "name": "txn", "fields": ["ttl_seconds"]}]


def test_apply_is_versioned_and_refuses_bad_sets_whole(repo: Path, tmp_path: Path) -> None:
    registry = LocalJsonRegistry(tmp_path / "registry" / "features.json")
    apply_definitions(registry, good_definitions(repo))
    assert registry.load_specs().version == 1
    before = registry.path.read_bytes()
    customer, txn, churn = good_definitions(repo, ttl_days=3)
    broken = FeatureView("broken", [customer], txn.source, "nope", features=[Feature("amount", "float64")])
    with pytest.raises(InvalidInputError, match="feature view 'broken': timestamp_field 'nope'"):
        apply_definitions(registry, [customer, txn, churn, broken])
    assert registry.path.read_bytes() == before, "nothing half-applied"
    result = apply_definitions(registry, [customer, txn, churn])
    assert [c.name for c in result.changed] == ["txn"]
    loaded = registry.load_specs()
    assert loaded.version == 2
    assert Definitions.from_specs(loaded.specs).views["txn"].ttl == timedelta(days=3)
    assert apply_definitions(registry, [customer, txn, churn]).has_changes is False
    assert registry.load_specs().version == 2


def test_a_stale_plan_cannot_overwrite_a_newer_apply(repo: Path, tmp_path: Path) -> None:
    registry = LocalJsonRegistry(tmp_path / "features.json")
    stale = plan(registry.load_specs(), good_definitions(repo))
    apply_definitions(registry, good_definitions(repo, ttl_days=2))
    with pytest.raises(ConflictError, match="plan again"):
        registry.apply(stale.specs, expected_version=stale.base_version)
    assert Definitions.from_specs(registry.load_specs().specs).views["txn"].ttl == timedelta(days=2)


def test_concurrent_applies_never_leave_a_mix(tmp_path: Path) -> None:
    registry = LocalJsonRegistry(tmp_path / "features.json")
    sets = [[Entity(f"e{i}_{j}", ["k"]) for j in range(20)] for i in range(8)]
    errors: list[BaseException] = []

    def worker(objects: list[Entity]) -> None:
        for _ in range(5):
            try:
                apply_definitions(registry, objects, check_sources=False)
            except ConflictError:
                continue
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(objects,)) for objects in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = registry.load_specs()
    names = {spec["name"] for spec in stored.specs}
    assert any(names == {e.name for e in objects} for objects in sets), "the stored set is exactly one apply's set"
