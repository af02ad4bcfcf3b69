"""The rows of a deployment's traffic statistics: one per (rollout, revision, variant, source), merged or set
with one upsert on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mlpilot.deploy.observations import VariantStats
from mlpilot.store.schema import DeploymentStat

__all__ = ["StatsKey", "merge_stats", "put_stats"]

#: rollout, revision, variant, source
StatsKey = tuple[int, int, str, str]


def _values(deployment_id: int, key: StatsKey, stats: VariantStats, now: int) -> dict[str, object]:
    rollout, revision, variant, source = key
    return {
        "deployment_id": deployment_id,
        "rollout": rollout,
        "revision": revision,
        "variant": variant,
        "source": source,
        "updated_at": now,
        "stats": stats.to_dict(),
    }


def merge_stats(
    session: Session, dialect: str, now: int, deployment_id: int, key: StatsKey, stats: VariantStats
) -> None:
    """Add ``stats`` to the row of ``key`` (created when missing), under a row lock."""
    rollout, revision, variant, source = key
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(DeploymentStat).values(**_values(deployment_id, key, stats, now)).on_conflict_do_nothing()
    if session.execute(stmt.returning(DeploymentStat.id)).first() is not None:
        return
    where = (
        DeploymentStat.deployment_id == deployment_id,
        DeploymentStat.rollout == rollout,
        DeploymentStat.revision == revision,
        DeploymentStat.variant == variant,
        DeploymentStat.source == source,
    )
    row = session.scalars(select(DeploymentStat).where(*where).with_for_update()).one()
    row.stats = VariantStats.from_dict(row.stats).merge(stats).to_dict()
    row.updated_at = now


def put_stats(session: Session, dialect: str, now: int, deployment_id: int, key: StatsKey, stats: VariantStats) -> None:
    """Set the row of ``key`` to ``stats`` (replacing what it held)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(DeploymentStat).values(**_values(deployment_id, key, stats, now))
    stmt = stmt.on_conflict_do_update(
        index_elements=["deployment_id", "rollout", "revision", "variant", "source"],
        set_={"stats": stmt.excluded.stats, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt)
