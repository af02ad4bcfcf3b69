"""The feature registry in the metadata store: versioned, atomic, audited applies of whole definition sets.

    >>> from mlpilot.store import Store
    >>> registry = StoreFeatureRegistry(Store("sqlite:///:memory:"))
    >>> registry.load_specs().version
    0

Each apply writes, in one transaction, the next version of the project's set (kept whole, so every version
can be read back), the current definitions (one row per kind and name) and a ``features.applied`` audit
event listing what changed. Applies are optimistic: one planned against version ``v`` commits only if the
project is still at ``v``. On PostgreSQL two such applies race to insert version ``v + 1`` and the primary
key lets exactly one win; on SQLite writers are serialized and the second sees the new version. The loser
raises :class:`~mlpilot.errors.ConflictError` and leaves nothing behind.

Specs are validated before anything is written (structure and cross-references; the sources are checked by
whoever planned, since the server may not see the user's files), so a bad set is never stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from mlpilot.errors import ConflictError, InvalidInputError, MlpilotError, NotFoundError
from mlpilot.features.catalog import Definitions
from mlpilot.features.definitions import spec_hash
from mlpilot.features.registry import RegisteredSpecs
from mlpilot.features.validate import validate_definitions
from mlpilot.store import Store, now_ms
from mlpilot.store.audit import record_event
from mlpilot.store.schema import FeatureDefinition, FeatureRegistryVersion

__all__ = ["APPLIED_EVENT", "MAX_VERSION", "RegistryVersion", "StoreFeatureRegistry", "check_project", "check_specs"]

APPLIED_EVENT = "features.applied"
#: Versions are 32-bit integers in the schema.
MAX_VERSION = 2**31 - 1
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Retries of an apply without an expected version that lost a race (it re-reads the version and tries again).
_RACE_RETRIES = 5


@dataclass(frozen=True)
class RegistryVersion:
    """One apply: its version, when and by whom, the hash of the whole set and what it changed."""

    version: int
    applied_at: int
    actor: str
    specs_hash: str
    changes: dict[str, list[str]] = field(default_factory=dict)


def check_project(project: str) -> str:
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise InvalidInputError(
            f"project: expected letters, digits, '_', '.' or '-' (at most 128), got {project!r}", field="project"
        )
    return project


def check_specs(specs: Sequence[Mapping[str, Any]]) -> Definitions:
    """Rebuild definitions from ``specs`` and validate them without opening sources; raise
    :class:`~mlpilot.errors.InvalidInputError` naming the definition and field."""
    if isinstance(specs, str | bytes) or not isinstance(specs, Sequence):
        raise InvalidInputError("specs: expected a list of definition specs", field="specs")
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping):
            raise InvalidInputError(f"specs[{i}]: expected a mapping, got {type(spec).__name__}", field=f"specs[{i}]")
    try:
        definitions = Definitions.from_specs(specs)
    except MlpilotError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"specs: malformed definition spec: {exc!r}", field="specs") from exc
    if len(definitions) != len(specs):
        raise InvalidInputError("specs: a definition appears twice", field="specs")
    validate_definitions(definitions, check_sources=False)
    return definitions


def _key(spec: Mapping[str, Any]) -> tuple[str, str]:
    return str(spec["kind"]), str(spec["name"])


class StoreFeatureRegistry:
    """A :class:`~mlpilot.features.FeatureRegistryBackend` over the metadata store, one set per ``project``."""

    def __init__(self, store: Store, *, project: str = "default") -> None:
        self.store = store
        self.project = check_project(project)

    def load_specs(self, version: int | None = None) -> RegisteredSpecs:
        """The current set (or the set as applied at ``version``); version 0 and no specs before any apply."""
        if version is not None and not 0 <= version <= MAX_VERSION:
            raise NotFoundError(f"feature registry {self.project!r} has no version {version}", field="version")
        with self.store.read() as session:
            query = select(FeatureRegistryVersion).where(FeatureRegistryVersion.project == self.project)
            if version is None:
                query = query.order_by(FeatureRegistryVersion.version.desc()).limit(1)
            else:
                query = query.where(FeatureRegistryVersion.version == version)
            row = session.scalars(query).first()
        if row is None:
            if version is None or version == 0:
                return RegisteredSpecs(0)
            raise NotFoundError(f"feature registry {self.project!r} has no version {version}", field="version")
        return RegisteredSpecs(row.version, tuple(row.specs))

    def current_version(self) -> int:
        """The latest applied version (0 before any apply): one indexed lookup, without reading the specs."""
        with self.store.read() as session:
            version = session.scalar(
                select(func.max(FeatureRegistryVersion.version)).where(FeatureRegistryVersion.project == self.project)
            )
        return int(version or 0)

    def apply(
        self, specs: Sequence[Mapping[str, Any]], *, expected_version: int | None = None, actor: str = "local"
    ) -> int:
        """Replace the set with ``specs`` and return the new version.

        Raises :class:`~mlpilot.errors.ConflictError` (writing nothing) when ``expected_version`` is given and
        the project is no longer at it.
        """
        if expected_version is not None and not 0 <= expected_version <= MAX_VERSION:
            raise InvalidInputError(
                f"expected_version: expected 0..{MAX_VERSION}, got {expected_version}", field="expected_version"
            )
        check_specs(specs)
        ordered = sorted((dict(s) for s in specs), key=_key)
        for attempt in range(_RACE_RETRIES):
            try:
                return self._apply_once(ordered, expected_version, actor)
            except SAIntegrityError as exc:
                if expected_version is not None or attempt == _RACE_RETRIES - 1:
                    raise ConflictError(
                        f"feature registry {self.project!r}: another apply landed at the same time: plan again",
                        expected_version=expected_version,
                    ) from exc
        raise AssertionError("unreachable")

    def _apply_once(self, specs: list[dict[str, Any]], expected_version: int | None, actor: str) -> int:
        now = now_ms()
        with self.store.write() as session:
            current = session.scalar(
                select(func.max(FeatureRegistryVersion.version)).where(FeatureRegistryVersion.project == self.project)
            )
            current = int(current or 0)
            if expected_version is not None and current != expected_version:
                raise ConflictError(
                    f"feature registry {self.project!r} changed since it was planned (version {current}, expected "
                    f"{expected_version}): plan again",
                    expected_version=expected_version,
                    version=current,
                )
            version = current + 1
            stored = {
                (row.kind, row.name): row
                for row in session.scalars(select(FeatureDefinition).where(FeatureDefinition.project == self.project))
            }
            new = {_key(s): s for s in specs}
            changes: dict[str, list[str]] = {
                "added": [f"{k} {n}" for (k, n) in new if (k, n) not in stored],
                "changed": [
                    f"{k} {n}"
                    for (k, n), s in new.items()
                    if (k, n) in stored and stored[k, n].spec_hash != spec_hash(s)
                ],
                "removed": [f"{k} {n}" for (k, n) in stored if (k, n) not in new],
            }
            # The version row goes first: a concurrent apply of the same version fails here, before it has
            # touched any definition.
            session.add(
                FeatureRegistryVersion(
                    project=self.project,
                    version=version,
                    applied_at=now,
                    actor=actor,
                    specs_hash=spec_hash({"specs": specs}),
                    specs=specs,
                    changes=changes,
                )
            )
            session.flush()
            for kind, name in stored:
                if (kind, name) not in new:
                    session.execute(
                        delete(FeatureDefinition).where(
                            FeatureDefinition.project == self.project,
                            FeatureDefinition.kind == kind,
                            FeatureDefinition.name == name,
                        )
                    )
            for (kind, name), spec in new.items():
                digest = spec_hash(spec)
                existing = stored.get((kind, name))
                if existing is None:
                    session.add(
                        FeatureDefinition(
                            project=self.project,
                            kind=kind,
                            name=name,
                            spec=spec,
                            spec_hash=digest,
                            version=version,
                            updated_at=now,
                        )
                    )
                elif existing.spec_hash != digest:
                    existing.spec, existing.spec_hash = spec, digest
                    existing.version, existing.updated_at = version, now
            record_event(
                session,
                kind=APPLIED_EVENT,
                subject=f"features/{self.project}",
                actor=actor,
                payload={"version": version, **changes},
            )
        return version

    def history(self, *, limit: int = 100) -> list[RegistryVersion]:
        """Applies, newest first."""
        with self.store.read() as session:
            rows = session.scalars(
                select(FeatureRegistryVersion)
                .where(FeatureRegistryVersion.project == self.project)
                .order_by(FeatureRegistryVersion.version.desc())
                .limit(limit)
            ).all()
        return [RegistryVersion(r.version, r.applied_at, r.actor, r.specs_hash, dict(r.changes)) for r in rows]

    def definition(self, kind: str, name: str) -> dict[str, Any]:
        """The current spec of one definition."""
        with self.store.read() as session:
            row = session.get(FeatureDefinition, (self.project, kind, name))
        if row is None:
            raise NotFoundError(f"feature registry {self.project!r} has no {kind} {name!r}", field="name")
        return dict(row.spec)
