"""The registry service over the metadata store: models, versions, aliases, tags, descriptions, resolution.

Every mutation writes its audit event in the same transaction as the change. Version numbers come from a
counter on the model's row, taken under a lock on that row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
write transactions are already serialised by ``BEGIN IMMEDIATE``): concurrent registrations of one name get
distinct numbers, and a deleted version's number is never given out again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from mlpilot.errors import AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError, StoreError
from mlpilot.registry.entities import (
    AliasInfo,
    ModelEvent,
    ModelVersionInfo,
    NewModelVersion,
    RegisteredModelInfo,
    check_tags,
)
from mlpilot.registry.signature import Signature
from mlpilot.registry.uri import check_alias, check_model_name, parse_model_uri
from mlpilot.store import Store, now_ms
from mlpilot.store.audit import list_events, record_event
from mlpilot.store.schema import Dataset, ModelAlias, ModelVersion, RegisteredModel, Run, RunInput

__all__ = ["RegistryService"]

_MAX_RESULTS = 1000


def _subject(name: str) -> str:
    return f"models/{name}"


def _check_page(max_results: int, offset: int) -> None:
    if not isinstance(max_results, int) or not 1 <= max_results <= _MAX_RESULTS:
        raise InvalidInputError(f"max_results: expected 1-{_MAX_RESULTS}, got {max_results!r}", field="max_results")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInputError(f"offset: expected a non-negative integer, got {offset!r}", field="offset")


def _check_tag_args(set_tags: dict[str, str] | None, delete_tags: Iterable[str] | None) -> None:
    try:
        check_tags(set_tags or {})
    except ValueError as exc:
        raise InvalidInputError(f"tags: {exc}", field="tags") from exc
    if set_tags and any(not isinstance(v, str) for v in set_tags.values()):
        raise InvalidInputError("tags: values must be strings", field="tags")
    if delete_tags is not None and any(not isinstance(k, str) for k in delete_tags):
        raise InvalidInputError("delete_tags: expected tag keys (strings)", field="delete_tags")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class RegistryService:
    """Registered models, versions and aliases in the metadata store.

    >>> from mlpilot.store import Store
    >>> registry = RegistryService(Store("sqlite:///:memory:"))
    >>> new = NewModelVersion(flavor="pyfunc", artifact_sha256="0" * 64, artifact_size=1)
    >>> registry.create_model_version("churn", new).version
    1
    >>> registry.set_alias("churn", "champion", 1).version
    1
    >>> registry.resolve("models:/churn@champion").version
    1
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction; a constraint the database enforces (and we did not foresee) becomes a
        ConflictError instead of a bare library error."""
        try:
            with self.store.write() as session:
                yield session
        except SAIntegrityError as exc:
            raise ConflictError(f"the registry refused the change: {exc.orig}") from exc

    # -- reads ---------------------------------------------------------------------------------------------

    def get_model(self, name: str) -> RegisteredModelInfo:
        with self.store.read() as session:
            return self._model_infos(session, [self._model(session, name)])[0]

    def search_models(
        self,
        query: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[RegisteredModelInfo]:
        """Models whose name contains ``query`` (case-insensitive) and that carry every tag in ``tags``,
        ordered by name.
        """
        _check_page(max_results, offset)
        stmt = select(RegisteredModel)
        if query:
            stmt = stmt.where(RegisteredModel.name.ilike(f"%{_escape_like(query)}%", escape="\\"))
        for key, value in (tags or {}).items():
            stmt = stmt.where(RegisteredModel.tags[key].as_string() == value)
        stmt = stmt.order_by(RegisteredModel.name).limit(max_results).offset(offset)
        with self.store.read() as session:
            return self._model_infos(session, list(session.scalars(stmt)))

    def get_model_version(self, name: str, version: int) -> ModelVersionInfo:
        with self.store.read() as session:
            model = self._model(session, name)
            return self._version_infos(session, model, [self._version(session, model, version)])[0]

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersionInfo:
        with self.store.read() as session:
            model = self._model(session, name)
            row = session.get(ModelAlias, (model.id, alias))
            if row is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}", field="alias")
            version = session.get_one(ModelVersion, row.version_id)
            return self._version_infos(session, model, [version])[0]

    def get_latest_version(self, name: str) -> ModelVersionInfo:
        with self.store.read() as session:
            model = self._model(session, name)
            version = session.scalars(
                select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version.desc())
            ).first()
            if version is None:
                raise NotFoundError(f"model {name!r} has no versions yet", field="name")
            return self._version_infos(session, model, [version])[0]

    def list_model_versions(self, name: str, *, max_results: int = 100, offset: int = 0) -> list[ModelVersionInfo]:
        """Versions of one model, newest first."""
        _check_page(max_results, offset)
        with self.store.read() as session:
            model = self._model(session, name)
            stmt = (
                select(ModelVersion)
                .where(ModelVersion.model_id == model.id)
                .order_by(ModelVersion.version.desc())
                .limit(max_results)
                .offset(offset)
            )
            return self._version_infos(session, model, list(session.scalars(stmt)))

    def search_model_versions(
        self,
        *,
        name: str | None = None,
        run_id: str | None = None,
        flavor: str | None = None,
        tags: dict[str, str] | None = None,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[ModelVersionInfo]:
        """Versions across models, newest first; e.g. every version a run produced (``run_id=...``)."""
        _check_page(max_results, offset)
        stmt = select(ModelVersion, RegisteredModel).join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        if name is not None:
            stmt = stmt.where(RegisteredModel.name == name)
        if run_id is not None:
            stmt = stmt.where(ModelVersion.run_id == run_id)
        if flavor is not None:
            stmt = stmt.where(ModelVersion.flavor == flavor)
        for key, value in (tags or {}).items():
            stmt = stmt.where(ModelVersion.tags[key].as_string() == value)
        stmt = stmt.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc()).limit(max_results).offset(offset)
        with self.store.read() as session:
            rows = session.execute(stmt).all()
            aliases = self._aliases_of(session, [v.id for v, _ in rows])
            return [self._version_info(m, v, aliases.get(v.id, [])) for v, m in rows]

    def resolve(self, uri: str) -> ModelVersionInfo:
        """The version a URI points at now: ``models:/churn@champion``, ``churn/3``, ``churn/latest``."""
        ref = parse_model_uri(uri)
        if ref.alias is not None:
            return self.get_model_version_by_alias(ref.name, ref.alias)
        if ref.latest:
            return self.get_latest_version(ref.name)
        assert ref.version is not None
        return self.get_model_version(ref.name, ref.version)

    def model_history(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ModelEvent]:
        """The model's audit trail, oldest first: registrations, alias moves, edits."""
        _check_page(limit, 0)
        if not isinstance(after_id, int) or after_id < 0:
            raise InvalidInputError(f"after_id: expected an event id >= 0, got {after_id!r}", field="after_id")
        with self.store.read() as session:
            self._model(session, name)
            return [
                ModelEvent(id=e.id, time=e.time, kind=e.kind, subject=e.subject, actor=e.actor, payload=e.payload)
                for e in list_events(session, subject=_subject(name), after_id=after_id, limit=limit)
            ]

    # -- writes --------------------------------------------------------------------------------------------

    def create_model_version(self, name: str, new: NewModelVersion, *, actor: str = "local") -> ModelVersionInfo:
        """Register version N+1 of ``name`` (creating the model on its first version) and point
        ``new.aliases`` at it, all in one transaction with its audit events.
        """
        check_model_name(name)
        aliases = list(dict.fromkeys(check_alias(a, field="aliases") for a in new.aliases))
        with self._write() as session:
            return self._create_version(session, name, new, aliases, actor)

    def _create_version(
        self, session: Session, name: str, new: NewModelVersion, aliases: list[str], actor: str
    ) -> ModelVersionInfo:
        lineage = dict(new.lineage)
        if new.run_id is not None:
            if session.get(Run, new.run_id) is None:
                raise NotFoundError(f"run_id: no run {new.run_id!r}", field="run_id")
            lineage["datasets"] = self._run_datasets(session, new.run_id)
        model, created = self._lock_or_create_model(session, name)
        if created:
            record_event(session, kind="model.created", subject=_subject(name), actor=actor)
        now = now_ms()
        model.last_version += 1  # under the model's row lock: concurrent registrations queue here
        row = ModelVersion(
            model_id=model.id,
            version=model.last_version,
            run_id=new.run_id,
            flavor=new.flavor,
            artifact_sha256=new.artifact_sha256,
            artifact_size=new.artifact_size,
            signature=new.signature.model_dump(mode="json") if new.signature is not None else {},
            requirements=list(new.requirements),
            sample_sha256=new.sample_sha256,
            metrics=dict(new.metrics),
            tags=dict(new.tags),
            description=new.description,
            lineage=lineage,
            created_at=now,
        )
        session.add(row)
        session.flush()
        model.updated_at = now
        record_event(
            session,
            kind="model.registered",
            subject=_subject(name),
            actor=actor,
            payload={
                "version": row.version,
                "flavor": row.flavor,
                "artifact_sha256": row.artifact_sha256,
                "run_id": row.run_id,
            },
        )
        for alias in aliases:
            self._point_alias(session, model, alias, row, actor)
        return self._version_info(model, row, aliases)

    def create_model(
        self, name: str, *, description: str = "", tags: dict[str, str] | None = None, actor: str = "local"
    ) -> RegisteredModelInfo:
        """Register a model name before its first version (``create_model_version`` does this implicitly)."""
        check_model_name(name)
        _check_tag_args(tags, None)
        with self._write() as session:
            model, created = self._lock_or_create_model(session, name)
            if not created:
                raise AlreadyExistsError(f"a model named {name!r} exists already", field="name")
            model.description = description
            model.tags = dict(tags or {})
            record_event(session, kind="model.created", subject=_subject(name), actor=actor)
            return self._model_infos(session, [model])[0]

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
        actor: str = "local",
    ) -> RegisteredModelInfo:
        """Change a model's description and tags (``set_tags`` adds or replaces, ``delete_tags`` removes)."""
        _check_tag_args(set_tags, delete_tags)
        with self._write() as session:
            model = self._lock_model(session, name)
            changes = self._apply_edits(model, description, set_tags, delete_tags)
            if changes:
                model.updated_at = now_ms()
                record_event(session, kind="model.updated", subject=_subject(name), actor=actor, payload=changes)
            return self._model_infos(session, [model])[0]

    def update_model_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
        actor: str = "local",
    ) -> ModelVersionInfo:
        """Change a version's description and tags; its artifact, signature and lineage never change."""
        _check_tag_args(set_tags, delete_tags)
        with self._write() as session:
            model = self._lock_model(session, name)
            row = self._version(session, model, version)
            changes = self._apply_edits(row, description, set_tags, delete_tags)
            if changes:
                model.updated_at = now_ms()
                record_event(
                    session,
                    kind="model.version_updated",
                    subject=_subject(name),
                    actor=actor,
                    payload={"version": version, **changes},
                )
            return self._version_infos(session, model, [row])[0]

    def delete_model_version(self, name: str, version: int, *, actor: str = "local") -> None:
        """Delete a version's metadata (its blobs stay: they are content-addressed and may be shared).

        Refused with :class:`ConflictError` while an alias points at it: move the alias first.
        """
        with self._write() as session:
            model = self._lock_model(session, name)
            row = self._version(session, model, version)
            held = self._aliases_of(session, [row.id]).get(row.id, [])
            if held:
                raise ConflictError(
                    f"version {version} of {name!r} is aliased as {', '.join(held)}: move or delete the alias first",
                    field="version",
                )
            session.delete(row)
            model.updated_at = now_ms()
            record_event(
                session,
                kind="model.version_deleted",
                subject=_subject(name),
                actor=actor,
                payload={"version": version, "artifact_sha256": row.artifact_sha256},
            )

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = "local") -> AliasInfo:
        """Point ``alias`` at ``version`` (creating or moving it) and record ``model.alias_set`` with the
        previous version, in one transaction.
        """
        check_alias(alias)
        with self._write() as session:
            model = self._lock_model(session, name)
            row = self._version(session, model, version)
            return self._point_alias(session, model, alias, row, actor)

    def delete_alias(self, name: str, alias: str, *, actor: str = "local") -> None:
        """Remove ``alias`` and record ``model.alias_deleted``, in one transaction."""
        with self._write() as session:
            model = self._lock_model(session, name)
            row = session.get(ModelAlias, (model.id, alias))
            if row is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}", field="alias")
            version = session.get_one(ModelVersion, row.version_id).version
            session.delete(row)
            model.updated_at = now_ms()
            record_event(
                session,
                kind="model.alias_deleted",
                subject=_subject(name),
                actor=actor,
                payload={"alias": alias, "version": version},
            )

    # -- helpers -------------------------------------------------------------------------------------------

    def _point_alias(
        self, session: Session, model: RegisteredModel, alias: str, target: ModelVersion, actor: str
    ) -> AliasInfo:
        now = now_ms()
        row = session.get(ModelAlias, (model.id, alias))
        previous: int | None = None
        if row is not None:
            previous = session.get_one(ModelVersion, row.version_id).version
            if row.version_id != target.id:
                row.version_id = target.id
                row.updated_at = now
        else:
            row = ModelAlias(model_id=model.id, alias=alias, version_id=target.id, updated_at=now)
            session.add(row)
        if previous != target.version:
            model.updated_at = now
            record_event(
                session,
                kind="model.alias_set",
                subject=_subject(model.name),
                actor=actor,
                payload={"alias": alias, "version": target.version, "previous_version": previous},
            )
        return AliasInfo(name=model.name, alias=alias, version=target.version, updated_at=row.updated_at)

    def _lock_or_create_model(self, session: Session, name: str) -> tuple[RegisteredModel, bool]:
        created = False
        model = self._locked(session, name)
        if model is None:
            now = now_ms()
            values = {
                "name": name,
                "description": "",
                "tags": {},
                "created_at": now,
                "updated_at": now,
                "last_version": 0,
            }
            insert = pg_insert if self.store.dialect == "postgresql" else sqlite_insert
            # ON CONFLICT DO NOTHING: a concurrent first registration of the same name is not an error.
            stmt = insert(RegisteredModel).values(**values).on_conflict_do_nothing(index_elements=["name"])
            created = session.execute(stmt.returning(RegisteredModel.id)).first() is not None
            model = self._locked(session, name)
            if model is None:
                raise StoreError(f"model {name!r} vanished while it was being registered")
        return model, created

    @staticmethod
    def _locked(session: Session, name: str) -> RegisteredModel | None:
        stmt = select(RegisteredModel).where(RegisteredModel.name == name).with_for_update()
        return session.scalars(stmt).one_or_none()

    def _lock_model(self, session: Session, name: str) -> RegisteredModel:
        model = self._locked(session, name)
        if model is None:
            raise NotFoundError(f"no registered model named {name!r}", field="name")
        return model

    @staticmethod
    def _model(session: Session, name: str) -> RegisteredModel:
        model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).one_or_none()
        if model is None:
            raise NotFoundError(f"no registered model named {name!r}", field="name")
        return model

    @staticmethod
    def _version(session: Session, model: RegisteredModel, version: int) -> ModelVersion:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInputError(f"version: expected a positive integer, got {version!r}", field="version")
        row = session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version)
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"model {model.name!r} has no version {version}", field="version")
        return row

    @staticmethod
    def _apply_edits(
        row: RegisteredModel | ModelVersion,
        description: str | None,
        set_tags: dict[str, str] | None,
        delete_tags: Iterable[str] | None,
    ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if description is not None and description != row.description:
            row.description = description
            changes["description"] = description
        tags = dict(row.tags)
        for key in delete_tags or ():
            if tags.pop(key, None) is not None:
                changes.setdefault("deleted_tags", []).append(key)
        for key, value in (set_tags or {}).items():
            if tags.get(key) != value:
                tags[key] = value
                changes.setdefault("set_tags", {})[key] = value
        if tags != row.tags:
            row.tags = tags  # a new dict: SQLAlchemy does not see in-place changes to a JSON column
        return changes

    @staticmethod
    def _run_datasets(session: Session, run_id: str) -> list[dict[str, Any]]:
        rows = session.execute(
            select(Dataset, RunInput.context, RunInput.leakage_report)
            .join(RunInput, RunInput.dataset_id == Dataset.id)
            .where(RunInput.run_id == run_id)
            .order_by(Dataset.id)
        ).all()
        found: list[dict[str, Any]] = []
        for d, context, leakage in rows:
            entry = {"id": d.id, "name": d.name, "digest": d.digest, "num_rows": d.num_rows, "context": context}
            if leakage is not None:  # a point-in-time training set: how it was joined travels with the model
                entry["leakage_report"] = leakage
            found.append(entry)
        return found

    @staticmethod
    def _aliases_of(session: Session, version_ids: list[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        if not version_ids:
            return found
        stmt = select(ModelAlias.version_id, ModelAlias.alias).where(ModelAlias.version_id.in_(version_ids))
        for version_id, alias in session.execute(stmt.order_by(ModelAlias.alias)):
            found.setdefault(version_id, []).append(alias)
        return found

    @staticmethod
    def _version_info(model: RegisteredModel, row: ModelVersion, aliases: list[str]) -> ModelVersionInfo:
        return ModelVersionInfo(
            name=model.name,
            version=row.version,
            flavor=row.flavor,
            artifact_sha256=row.artifact_sha256,
            artifact_size=row.artifact_size,
            signature=Signature.model_validate(row.signature) if row.signature else None,
            requirements=list(row.requirements),
            sample_sha256=row.sample_sha256,
            run_id=row.run_id,
            metrics=dict(row.metrics),
            tags=dict(row.tags),
            description=row.description,
            lineage=dict(row.lineage),
            created_at=row.created_at,
            aliases=sorted(aliases),
        )

    def _version_infos(
        self, session: Session, model: RegisteredModel, rows: list[ModelVersion]
    ) -> list[ModelVersionInfo]:
        aliases = self._aliases_of(session, [r.id for r in rows])
        return [self._version_info(model, r, aliases.get(r.id, [])) for r in rows]

    @staticmethod
    def _model_infos(session: Session, models: list[RegisteredModel]) -> list[RegisteredModelInfo]:
        ids = [m.id for m in models]
        latest: dict[int, int] = {}
        aliases: dict[int, dict[str, int]] = {}
        if ids:
            latest = {
                model_id: int(v)
                for model_id, v in session.execute(
                    select(ModelVersion.model_id, func.max(ModelVersion.version))
                    .where(ModelVersion.model_id.in_(ids))
                    .group_by(ModelVersion.model_id)
                )
            }
            for model_id, alias, version in session.execute(
                select(ModelAlias.model_id, ModelAlias.alias, ModelVersion.version)
                .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
                .where(ModelAlias.model_id.in_(ids))
                .order_by(ModelAlias.alias)
            ):
                aliases.setdefault(model_id, {})[alias] = version
        return [
            RegisteredModelInfo(
                name=m.name,
                description=m.description,
                tags=dict(m.tags),
                created_at=m.created_at,
                updated_at=m.updated_at,
                latest_version=latest.get(m.id),
                aliases=aliases.get(m.id, {}),
            )
            for m in models
        ]
