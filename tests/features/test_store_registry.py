"""The feature registry in the metadata store: versioned, atomic, audited, safe under concurrent applies."""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError
from mlpilot.features import (
    Definitions,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    ParquetSource,
    StoreFeatureRegistry,
    apply_definitions,
    plan,
)
from mlpilot.store import Store
from mlpilot.store.audit import list_events
from mlpilot.store.schema import FeatureDefinition

from .conftest import hours, table

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    pq.write_table(table(cid=[1], et=[hours(0)], amount=[1.5], n=[3]), tmp_path / "txn.parquet")
    return tmp_path


def definitions(repo: Path, *, ttl_days: int = 7, service: bool = True) -> list[Any]:
    customer = Entity("customer", join_keys=["cid"])
    txn = FeatureView(
        "txn",
        [customer],
        ParquetSource("txn.parquet", base_dir=repo),
        timestamp_field="et",
        ttl=timedelta(days=ttl_days),
        features=[Feature("amount", "float64"), Feature("n", "int64")],
    )
    return [customer, txn] + ([FeatureService("churn", [txn[["amount"]]])] if service else [])


def current_rows(store: Store, project: str = "default") -> dict[tuple[str, str], int]:
    with store.read() as session:
        rows = session.scalars(select(FeatureDefinition).where(FeatureDefinition.project == project)).all()
    return {(r.kind, r.name): r.version for r in rows}


def test_applies_are_versioned_audited_and_readable(store: Store, repo: Path) -> None:
    registry = StoreFeatureRegistry(store)
    assert registry.load_specs().version == 0
    first = apply_definitions(registry, definitions(repo), actor="alice")
    assert first.base_version == 0
    assert registry.load_specs().version == 1
    second = apply_definitions(registry, definitions(repo, ttl_days=3, service=False), actor="bob")
    assert [c.name for c in second.changed] == ["txn"]
    assert [c.name for c in second.removed] == ["churn"]
    loaded = registry.load_specs()
    assert loaded.version == 2
    assert Definitions.from_specs(loaded.specs).views["txn"].ttl == timedelta(days=3)
    assert Definitions.from_specs(registry.load_specs(1).specs).services["churn"].name == "churn"
    assert current_rows(store) == {("entity", "customer"): 1, ("feature_view", "txn"): 2}
    assert registry.definition("feature_view", "txn")["ttl_seconds"] == 3 * 86400
    history = registry.history()
    assert [(h.version, h.actor) for h in history] == [(2, "bob"), (1, "alice")]
    assert history[0].changes == {"added": [], "changed": ["feature_view txn"], "removed": ["feature_service churn"]}
    with store.read() as session:
        events = list_events(session, kind="features.applied")
    assert [(e.subject, e.actor, e.payload["version"]) for e in events] == [
        ("features/default", "alice", 1),
        ("features/default", "bob", 2),
    ]
    assert apply_definitions(registry, definitions(repo, ttl_days=3, service=False)).has_changes is False
    assert registry.load_specs().version == 2, "an apply without changes writes nothing"
    with pytest.raises(NotFoundError, match="no version 9"):
        registry.load_specs(9)


def test_projects_are_separate(store: Store, repo: Path) -> None:
    apply_definitions(StoreFeatureRegistry(store, project="team-a"), definitions(repo))
    other = StoreFeatureRegistry(store, project="team-b")
    assert other.load_specs().version == 0
    apply_definitions(other, definitions(repo, service=False))
    assert len(StoreFeatureRegistry(store, project="team-a").load_specs().specs) == 3
    assert len(other.load_specs().specs) == 2
    with pytest.raises(InvalidInputError, match="project"):
        StoreFeatureRegistry(store, project="no spaces allowed")


def test_bad_definitions_are_refused_and_nothing_is_written(store: Store, repo: Path) -> None:
    registry = StoreFeatureRegistry(store)
    apply_definitions(registry, definitions(repo))
    customer, txn, churn = definitions(repo, ttl_days=2)
    broken = FeatureView("broken", ["nobody"], txn.source, "et", features=[Feature("amount", "float64")])
    with pytest.raises(InvalidInputError, match="feature view 'broken': unknown entity 'nobody'"):
        apply_definitions(registry, [customer, txn, churn, broken])
    # the backend refuses bad specs too, whoever sends them (e.g. over REST, where sources are not checked)
    bad = [*plan([], definitions(repo)).specs, {"kind": "feature_service", "name": "s", "features": [{"view": "x"}]}]
    with pytest.raises(InvalidInputError, match="feature service 's': unknown feature view 'x'"):
        registry.apply(bad, expected_version=1)
    with pytest.raises(InvalidInputError, match="specs"):
        registry.apply([{"kind": "feature_view", "name": "v"}])
    assert registry.load_specs().version == 1
    assert current_rows(store) == {
        ("entity", "customer"): 1,
        ("feature_view", "txn"): 1,
        ("feature_service", "churn"): 1,
    }
    with store.read() as session:
        assert len(list_events(session, kind="features.applied")) == 1


def test_a_stale_plan_is_refused(store: Store, repo: Path) -> None:
    registry = StoreFeatureRegistry(store)
    stale = plan(registry.load_specs(), definitions(repo))
    apply_definitions(registry, definitions(repo, ttl_days=2))
    with pytest.raises(ConflictError, match="plan again"):
        registry.apply(stale.specs, expected_version=stale.base_version)
    with pytest.raises(ConflictError, match="version 1, expected 0"):
        apply_definitions(registry, definitions(repo), expected_version=0)
    assert Definitions.from_specs(registry.load_specs().specs).views["txn"].ttl == timedelta(days=2)


def _apply_many(args: tuple[str, int, int]) -> tuple[int, int]:
    """In a child process: apply this worker's own set of definitions a few times; count wins and conflicts."""
    url, worker, rounds = args
    store = Store(url)
    registry = StoreFeatureRegistry(store)
    objects = [Entity(f"w{worker}_{j}", ["k"]) for j in range(15)]
    wins = conflicts = 0
    try:
        for r in range(rounds):
            # each round changes the set, so every apply writes
            batch = [*objects, Entity(f"w{worker}_round", [f"k{r}"])]
            try:
                apply_definitions(registry, batch, check_sources=False, actor=f"worker-{worker}")
                wins += 1
            except ConflictError:
                conflicts += 1
    finally:
        store.close()
    return wins, conflicts


def test_concurrent_applies_from_processes_never_leave_a_mix(db_url: str) -> None:
    Store(db_url).close()  # migrate once up front
    workers, rounds = 3, 6
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = pool.map(_apply_many, [(db_url, w, rounds) for w in range(workers)])
    wins = sum(w for w, _ in results)
    assert wins >= 1
    assert wins + sum(c for _, c in results) == workers * rounds
    store = Store(db_url)
    try:
        registry = StoreFeatureRegistry(store)
        loaded = registry.load_specs()
        assert loaded.version == wins, "every successful apply got its own version, none was lost"
        names = {spec["name"] for spec in loaded.specs}
        prefixes = {name.split("_")[0] for name in names}
        assert len(prefixes) == 1, "the stored set is exactly one apply's set"
        assert len(names) == 16
        assert set(current_rows(store)) == {("entity", n) for n in names}, "current rows match the last version"
        assert [h.version for h in registry.history(limit=1000)] == list(range(wins, 0, -1))
        with store.read() as session:
            assert len(list_events(session, kind="features.applied", limit=1000)) == wins
    finally:
        store.close()


def test_migration_matches_the_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from mlpilot.store.schema import Base

    def ours(name: str | None, type_: str, parent_names: Any) -> bool:
        # only this package's tables: other packages' expression indexes do not reflect cleanly
        return type_ != "table" or bool(name and name.startswith("feature_"))

    from sqlalchemy import MetaData

    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in ("feature_registry_versions", "feature_definitions"):
        Base.metadata.tables[name].to_metadata(metadata)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": ours})
        assert compare_metadata(context, metadata) == []
