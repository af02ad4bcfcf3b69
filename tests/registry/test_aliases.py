"""Aliases move with an audit event in the same transaction: both happen, or neither does."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from mlpilot.errors import InvalidInputError, MlpilotError, NotFoundError
from mlpilot.registry import RegistryService
from mlpilot.store import Store
from mlpilot.store.schema import AuditEvent, ModelAlias


def _alias_rows(store: Store) -> list[tuple[str, int]]:
    with store.read() as session:
        return [(a.alias, a.version_id) for a in session.scalars(select(ModelAlias).order_by(ModelAlias.alias))]


def _events(store: Store, kind_prefix: str = "model.alias") -> list[tuple[str, dict[str, Any]]]:
    with store.read() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.kind.startswith(kind_prefix)).order_by(AuditEvent.id)
        )
        return [(e.kind, e.payload) for e in rows]


def test_set_move_and_delete_write_events(store: Store, registry: RegistryService, new_version: Any) -> None:
    for _ in range(2):
        registry.create_model_version("churn", new_version())
    info = registry.set_alias("churn", "champion", 1, actor="alice")
    assert (info.name, info.alias, info.version) == ("churn", "champion", 1)
    registry.set_alias("churn", "champion", 2, actor="bob")
    registry.set_alias("churn", "champion", 2, actor="bob")  # already there: not a move, no event
    assert registry.get_model("churn").aliases == {"champion": 2}
    registry.delete_alias("churn", "champion", actor="carol")
    assert registry.get_model("churn").aliases == {}
    assert _events(store) == [
        ("model.alias_set", {"alias": "champion", "version": 1, "previous_version": None}),
        ("model.alias_set", {"alias": "champion", "version": 2, "previous_version": 1}),
        ("model.alias_deleted", {"alias": "champion", "version": 2}),
    ]
    assert [e.actor for e in registry.model_history("churn") if e.kind.startswith("model.alias")] == [
        "alice",
        "bob",
        "carol",
    ]


def test_aliases_given_at_registration_are_set_in_the_same_transaction(
    store: Store, registry: RegistryService, new_version: Any
) -> None:
    registry.create_model_version("churn", new_version(aliases=["champion"]))
    v2 = registry.create_model_version("churn", new_version(aliases=["challenger", "champion"]))
    assert v2.aliases == ["challenger", "champion"]
    assert registry.get_model("churn").aliases == {"challenger": 2, "champion": 2}
    assert registry.resolve("churn@challenger").version == 2
    assert _events(store)[-1] == (
        "model.alias_set",
        {"alias": "champion", "version": 2, "previous_version": 1},
    )


def test_bad_alias_at_registration_creates_nothing(registry: RegistryService, new_version: Any) -> None:
    with pytest.raises(InvalidInputError) as err:
        registry.create_model_version("churn", new_version(aliases=["Champion"]))
    assert err.value.field == "aliases"
    with pytest.raises(NotFoundError):
        registry.get_model("churn")


def _break_audit_trail(store: Store) -> None:
    """A real database trigger that makes every audit insert fail, as a full disk or a revoked grant would."""
    with store.write() as session:
        if store.dialect == "sqlite":
            session.execute(
                text(
                    "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
                    "BEGIN SELECT RAISE(ABORT, 'audit trail unavailable'); END"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE FUNCTION audit_down() RETURNS trigger AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit trail unavailable'; END $$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down()"
                )
            )


def _repair_audit_trail(store: Store) -> None:
    with store.write() as session:
        if store.dialect == "sqlite":
            session.execute(text("DROP TRIGGER audit_down"))
        else:
            session.execute(text("DROP TRIGGER audit_down ON audit_events"))
            session.execute(text("DROP FUNCTION audit_down()"))


def test_failed_audit_write_leaves_the_alias_untouched(
    store: Store, registry: RegistryService, new_version: Any
) -> None:
    for _ in range(2):
        registry.create_model_version("churn", new_version())
    registry.set_alias("churn", "champion", 1)
    before_aliases, before_events = _alias_rows(store), _events(store)

    _break_audit_trail(store)
    with pytest.raises(MlpilotError):
        registry.set_alias("churn", "champion", 2)
    with pytest.raises(MlpilotError):
        registry.set_alias("churn", "challenger", 2)
    with pytest.raises(MlpilotError):
        registry.delete_alias("churn", "champion")
    with pytest.raises(MlpilotError):
        registry.create_model_version("churn", new_version(aliases=["shadow"]))
    assert _alias_rows(store) == before_aliases
    assert _events(store) == before_events
    assert registry.get_model("churn").latest_version == 2

    _repair_audit_trail(store)
    registry.set_alias("churn", "champion", 2)
    assert registry.resolve("churn@champion").version == 2
    assert _events(store)[-1] == (
        "model.alias_set",
        {"alias": "champion", "version": 2, "previous_version": 1},
    )
    # the failed registration did not consume a version number
    assert registry.create_model_version("churn", new_version()).version == 3


def test_aliases_are_per_model(registry: RegistryService, new_version: Any) -> None:
    registry.create_model_version("a", new_version())
    registry.create_model_version("b", new_version())
    registry.create_model_version("b", new_version())
    registry.set_alias("a", "champion", 1)
    registry.set_alias("b", "champion", 2)
    assert registry.resolve("a@champion").name == "a"
    assert registry.resolve("b@champion").version == 2
