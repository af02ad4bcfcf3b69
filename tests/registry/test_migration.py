"""Migration 0003 adds the version counter and backfills it from existing versions."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from mlpilot.registry import NewModelVersion, RegistryService
from mlpilot.store import Store
from mlpilot.store.engine import IMMEDIATE, make_engine
from mlpilot.store.migrate import _config


def test_counter_is_backfilled_from_existing_versions(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        conn.info[IMMEDIATE] = True
        with conn.begin():
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
            conn.execute(
                text(
                    "INSERT INTO registered_models (id, name, description, tags, created_at, updated_at) "
                    "VALUES (1, 'churn', '', '{}', 0, 0), (2, 'empty', '', '{}', 0, 0)"
                )
            )
            for version in (1, 2, 5):
                conn.execute(
                    text(
                        "INSERT INTO model_versions (model_id, version, flavor, artifact_sha256, "
                        "artifact_size, signature, requirements, metrics, tags, description, lineage, "
                        "created_at) "
                        "VALUES (1, :v, 'pyfunc', :sha, 1, '{}', '[]', '{}', '{}', '', '{}', 0)"
                    ),
                    {"v": version, "sha": f"{version:064x}"},
                )
    engine.dispose()
    store = Store(db_url)  # migrates to head
    with store.read() as session:
        rows = session.execute(text("SELECT name, last_version FROM registered_models")).all()
    counters = {row[0]: row[1] for row in rows}
    assert counters == {"churn": 5, "empty": 0}
    new = NewModelVersion(flavor="pyfunc", artifact_sha256="f" * 64, artifact_size=1)
    assert RegistryService(store).create_model_version("churn", new).version == 6
    store.close()
