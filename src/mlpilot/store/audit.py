"""The audit trail: one row per state change, written in the transaction that makes the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlpilot.store.schema import AuditEvent
from mlpilot.store.store import now_ms

__all__ = ["list_events", "record_event"]


def record_event(
    session: Session, *, kind: str, subject: str, actor: str, payload: dict[str, Any] | None = None
) -> AuditEvent:
    """Add an event (e.g. ``kind="model.alias_set"``, ``subject="models/churn"``) to ``session``'s transaction.

    It commits or rolls back with the change it records, so the trail never claims a change that did not happen.
    """
    event = AuditEvent(time=now_ms(), kind=kind, subject=subject, actor=actor, payload=payload or {})
    session.add(event)
    return event


def list_events(
    session: Session,
    *,
    subject: str | None = None,
    kind: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[AuditEvent]:
    """Events in order of occurrence, optionally for one subject or kind, after a cursor."""
    query = select(AuditEvent).where(AuditEvent.id > after_id)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if kind is not None:
        query = query.where(AuditEvent.kind == kind)
    return list(session.scalars(query.order_by(AuditEvent.id).limit(limit)))
