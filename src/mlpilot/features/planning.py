"""Plan and apply feature definitions.

``plan`` says what applying a set of definitions would change; ``apply_definitions`` validates, then replaces
the registered set atomically.

    >>> from mlpilot.features import Entity
    >>> p = plan([], [Entity("customer", join_keys=["customer_id"])])
    >>> print(p.render())
    + entity customer
    >>> plan(p.specs, [Entity("customer", join_keys=["id"])]).changed[0].fields
    ('join_keys',)

Nothing is written unless every definition validates, so a bad definition never leaves a half-applied set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlpilot.errors import ConflictError
from mlpilot.features.catalog import Definition, Definitions
from mlpilot.features.definitions import spec_hash
from mlpilot.features.registry import FeatureRegistryBackend, RegisteredSpecs
from mlpilot.features.validate import validate_definitions

__all__ = ["Change", "Plan", "apply_definitions", "plan"]


@dataclass(frozen=True)
class Change:
    """One definition added, changed or removed; ``old``/``new`` are its specs (None when absent)."""

    kind: str
    name: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None

    @property
    def fields(self) -> tuple[str, ...]:
        """Top-level spec keys that differ (all of the present side's keys for an addition or removal)."""
        if self.old is None or self.new is None:
            return tuple(sorted((self.new or self.old or {}).keys()))
        keys = set(self.old) | set(self.new)
        return tuple(sorted(k for k in keys if self.old.get(k) != self.new.get(k)))

    @property
    def new_hash(self) -> str | None:
        return None if self.new is None else spec_hash(self.new)


@dataclass(frozen=True)
class Plan:
    """The diff between registered specs and new definitions, plus the full new set to apply."""

    added: tuple[Change, ...]
    changed: tuple[Change, ...]
    removed: tuple[Change, ...]
    unchanged: tuple[str, ...]
    specs: tuple[Mapping[str, Any], ...]
    base_version: int | None = None

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def render(self) -> str:
        """One line per change: ``+`` added, ``~`` changed (with the changed fields), ``-`` removed."""
        lines = [f"+ {c.kind} {c.name}" for c in self.added]
        lines += [f"~ {c.kind} {c.name} ({', '.join(c.fields)})" for c in self.changed]
        lines += [f"- {c.kind} {c.name}" for c in self.removed]
        return "\n".join(lines) if lines else "no changes"

    def to_dict(self) -> dict[str, Any]:
        def side(changes: tuple[Change, ...]) -> list[dict[str, Any]]:
            return [{"kind": c.kind, "name": c.name, "fields": list(c.fields)} for c in changes]

        return {
            "added": side(self.added),
            "changed": side(self.changed),
            "removed": side(self.removed),
            "unchanged": list(self.unchanged),
            "base_version": self.base_version,
        }


def _as_definitions(new: Definitions | Iterable[Definition]) -> Definitions:
    return new if isinstance(new, Definitions) else Definitions(new)


def plan(
    old_specs: RegisteredSpecs | Sequence[Mapping[str, Any]],
    new_definitions: Definitions | Iterable[Definition],
    *,
    check_sources: bool = True,
) -> Plan:
    """Validate ``new_definitions`` (raising :class:`~mlpilot.errors.InvalidInputError` naming every bad view
    and field) and diff them against ``old_specs``, by kind and name."""
    definitions = _as_definitions(new_definitions)
    validate_definitions(definitions, check_sources=check_sources)
    base_version = old_specs.version if isinstance(old_specs, RegisteredSpecs) else None
    old_list = old_specs.specs if isinstance(old_specs, RegisteredSpecs) else tuple(old_specs)
    old = {(s["kind"], s["name"]): s for s in old_list}
    new_specs = definitions.to_specs()
    new = {(s["kind"], s["name"]): s for s in new_specs}
    added, changed, unchanged = [], [], []
    for key, spec in new.items():
        before = old.get(key)
        if before is None:
            added.append(Change(key[0], key[1], None, spec))
        elif spec_hash(before) != spec_hash(spec):
            changed.append(Change(key[0], key[1], before, spec))
        else:
            unchanged.append(f"{key[0]} {key[1]}")
    removed = [Change(k[0], k[1], s, None) for k, s in old.items() if k not in new]
    return Plan(tuple(added), tuple(changed), tuple(removed), tuple(unchanged), tuple(new_specs), base_version)


def apply_definitions(
    backend: FeatureRegistryBackend,
    new_definitions: Definitions | Iterable[Definition],
    *,
    check_sources: bool = True,
    expected_version: int | None = None,
    actor: str = "local",
) -> Plan:
    """Plan against what ``backend`` holds, then replace it with the new set in one atomic step.

    ``expected_version`` (a reviewed plan's ``base_version``) refuses the apply if anything landed since that
    plan was shown; by default the apply is checked against the version it just planned against.

    Raises :class:`~mlpilot.errors.InvalidInputError` before writing anything if a definition is bad, and
    :class:`~mlpilot.errors.ConflictError` if another apply landed in between (nothing is written either way).
    """
    registered = backend.load_specs()
    if expected_version is not None and registered.version != expected_version:
        raise ConflictError(
            f"feature registry changed since it was planned (version {registered.version}, expected "
            f"{expected_version}): plan again",
            expected_version=expected_version,
            version=registered.version,
        )
    result = plan(registered, new_definitions, check_sources=check_sources)
    if result.has_changes:
        backend.apply(result.specs, expected_version=registered.version, actor=actor)
    return result
