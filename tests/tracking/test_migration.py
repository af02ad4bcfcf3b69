"""Migration 0008 adds ``run_inputs.leakage_report``: existing inputs keep their rows and have no report."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import Connection, MetaData, inspect, text

from mlpilot.store import Store
from mlpilot.store.engine import IMMEDIATE, make_engine
from mlpilot.store.migrate import _config, current_revision, head_revision
from mlpilot.store.schema import Base
from mlpilot.tracking import TrackingService, describe_dataset

REPORT = {"entity_rows": 1, "totals": {"equal_timestamp": 1, "excluded_by_availability": 0, "ttl_expired": 0}}


def _migrate(db_url: str, revision: str, work: Any = None, *, down: bool = False) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        conn.info[IMMEDIATE] = True
        with conn.begin():
            cfg = _config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
            if work is not None:
                work(conn)
    engine.dispose()


def _old_input(conn: Connection) -> None:
    # No explicit ids: PostgreSQL's identity sequences must stay in step for the inserts that follow.
    conn.execute(text("INSERT INTO experiments (name, created_at, tags) VALUES ('e', 0, '{}')"))
    conn.execute(
        text(
            "INSERT INTO runs (id, experiment_id, name, status, start_time, environment) "
            "SELECT 'r1', id, 'old', 'FINISHED', 0, '{}' FROM experiments"
        )
    )
    conn.execute(
        text("INSERT INTO datasets (digest, name, schema, num_rows, created_at) VALUES (:digest, 'train', '{}', 3, 0)"),
        {"digest": "a" * 64},
    )
    conn.execute(text("INSERT INTO run_inputs (run_id, dataset_id, context) SELECT 'r1', id, 'train' FROM datasets"))


def test_existing_inputs_survive_the_upgrade_without_a_report(db_url: str) -> None:
    _migrate(db_url, "0007", _old_input)
    store = Store(db_url)  # migrates to head
    try:
        service = TrackingService(store)
        [entry] = service.get_run("r1").inputs
        assert (entry.dataset.digest, entry.dataset.num_rows, entry.context) == ("a" * 64, 3, "train")
        assert entry.dataset.leakage_report is None
        service.log_dataset("r1", describe_dataset({"x": [1]}, name="new", leakage_report=REPORT))
        reports = {i.dataset.name: i.dataset.leakage_report for i in service.get_run("r1").inputs}
        assert reports == {"train": None, "new": REPORT}
        with store.read() as session:  # SQL NULL, not a JSON 'null', for inputs without a report
            nulls = session.execute(text("SELECT count(*) FROM run_inputs WHERE leakage_report IS NULL")).scalar()
        assert nulls == 1
    finally:
        store.close()


def test_the_migration_matches_the_schema_and_downgrades(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    Store(db_url).close()
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in ("experiments", "runs", "datasets", "run_inputs"):
        Base.metadata.tables[name].to_metadata(metadata)

    def ours(name: str | None, type_: str, parent_names: Any) -> bool:
        return type_ != "table" or name in metadata.tables

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": ours})
            assert [d for d in compare_metadata(context, metadata) if "run_inputs" in str(d)] == []
        _migrate(db_url, "0007", down=True)
        columns = {c["name"] for c in inspect(engine).get_columns("run_inputs")}
        assert columns == {"run_id", "dataset_id", "context"}
        _migrate(db_url, "head")
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert "leakage_report" in {c["name"] for c in inspect(engine).get_columns("run_inputs")}
    finally:
        engine.dispose()
