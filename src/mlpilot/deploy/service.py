"""The deployments service over the metadata store: specs, revisions, history, promotion and rollback.

Every change runs in one transaction that locks the deployment's row, checks the expected revision (when the
caller names one), writes the next revision with who and why, records a ``deployment.*`` audit event and,
when the primary changes, moves the registered model's ``champion`` alias with its ``model.alias_set`` event.
A rollback is a copy of the stable revision the rollout started from, so it restores exactly what served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from mlpilot.deploy import transitions
from mlpilot.deploy.endpoint import check_feature_service, check_named_inputs, serving_document
from mlpilot.deploy.entities import (
    ABConfig,
    AnalysisConfig,
    CanaryConfig,
    DeploymentInfo,
    DeploymentSpec,
    EndpointFeatures,
    GateConfig,
    PreviewVerification,
    RevisionInfo,
    RoutingConfig,
    ServingDocument,
    Variant,
    check_deployment_name,
)
from mlpilot.deploy.gates import GateReport, evaluate_gate
from mlpilot.deploy.observations import Moments, VariantStats
from mlpilot.deploy.preview import verify_preview_route
from mlpilot.deploy.reports import AnalysisReport, Outcome, build_report, rollout_data
from mlpilot.deploy.routing import RouteTable
from mlpilot.deploy.smoke import smoke_rows
from mlpilot.deploy.statrows import merge_stats, put_stats
from mlpilot.errors import AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError
from mlpilot.registry import ModelEvent, ModelVersionInfo, RegistryService
from mlpilot.store import Store, now_ms
from mlpilot.store.audit import list_events, record_event
from mlpilot.store.schema import (
    Deployment,
    DeploymentRevision,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
)

__all__ = ["CHAMPION", "LABELS_SOURCE", "Deployments", "serving_document"]

#: The alias that follows the deployment's primary.
CHAMPION = "champion"
_MAX_SOURCE = 128
#: The statistics source of outcomes derived from labels logged through monitoring (replaced, never added to).
LABELS_SOURCE = "labels"
#: Sources the control plane writes itself: a data-plane replica may not report under these names.
_RESERVED_SOURCES = frozenset({"outcomes", LABELS_SOURCE})
Mutation = Callable[[DeploymentSpec, int, int], DeploymentSpec]


def _subject(name: str) -> str:
    return f"deployments/{name}"


def _info(row: Deployment) -> DeploymentInfo:
    return DeploymentInfo(
        name=row.name,
        revision=row.revision,
        spec=DeploymentSpec.model_validate(row.spec),
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


class Deployments:
    """Deployments in the metadata store; ``artifacts`` enables the gate's load, latency and holdout checks.

    >>> deployments = Deployments(store)  # doctest: +SKIP
    >>> deployments.create("churn", model="churn", version=3, reason="first release").spec.primary.version
    3
    >>> deployments.start_canary("churn", 4, reason="retrained on May data").spec.state  # doctest: +SKIP
    'canary'
    >>> deployments.rollback("churn", reason="error rate").spec.primary.version  # doctest: +SKIP
    3

    ``clock`` returns the time in ms (tests pass a fake one to step through canary durations).
    """

    def __init__(self, store: Store, *, artifacts: Any = None, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.registry = RegistryService(store)
        self.artifacts = artifacts
        self.clock = clock

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with self.store.write() as session:
                yield session
        except SAIntegrityError as exc:
            raise ConflictError(f"the deployment store refused the change: {exc.orig}") from exc

    # -- reads -----------------------------------------------------------------------------------------------
    @staticmethod
    def _row(session: Session, name: str, *, lock: bool = False) -> Deployment:
        stmt = select(Deployment).where(Deployment.name == name)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).one_or_none()
        if row is None:
            raise NotFoundError(f"no deployment named {name!r}", field="name")
        return row

    def get(self, name: str) -> DeploymentInfo:
        with self.store.read() as session:
            return _info(self._row(session, name))

    def list_deployments(self, *, model: str | None = None) -> list[DeploymentInfo]:
        """Every deployment (of ``model``, when given), by name."""
        stmt = select(Deployment).order_by(Deployment.name)
        if model is not None:
            stmt = stmt.where(Deployment.model_name == model)
        with self.store.read() as session:
            return [_info(r) for r in session.scalars(stmt)]

    def history(self, name: str, *, after_revision: int = 0, limit: int = 100) -> list[RevisionInfo]:
        """Every revision of the deployment, oldest first: the spec it set, who set it, and why."""
        if not 1 <= limit <= 1000:
            raise InvalidInputError(f"limit: expected 1-1000, got {limit}", field="limit")
        with self.store.read() as session:
            row = self._row(session, name)
            revs = session.scalars(
                select(DeploymentRevision)
                .where(DeploymentRevision.deployment_id == row.id, DeploymentRevision.revision > after_revision)
                .order_by(DeploymentRevision.revision)
                .limit(limit)
            )
            return [
                RevisionInfo(
                    revision=r.revision,
                    time=r.time,
                    actor=r.actor,
                    action=r.action,
                    reason=r.reason,
                    spec=DeploymentSpec.model_validate(r.spec),
                )
                for r in revs
            ]

    def events(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ModelEvent]:
        """The deployment's audit trail (``deployment.*`` events), oldest first."""
        with self.store.read() as session:
            self._row(session, name)
            return [
                ModelEvent(id=e.id, time=e.time, kind=e.kind, subject=e.subject, actor=e.actor, payload=e.payload)
                for e in list_events(session, subject=_subject(name), after_id=after_id, limit=limit)
            ]

    def serving_config(self, name: str) -> ServingDocument:
        """What the data plane serves for ``name`` now (one indexed read)."""
        return serving_document(self.get(name))

    # -- the one way to change a deployment -------------------------------------------------------------------
    def _change(
        self,
        name: str,
        action: str,
        mutate: Mutation,
        *,
        actor: str,
        reason: str,
        if_revision: int | None,
        new_versions: Sequence[int] = (),
        event: Mapping[str, Any] | None = None,
    ) -> DeploymentInfo:
        """Apply ``mutate`` in one transaction; ``event`` adds to the audit event's payload."""
        with self._write() as session:
            row = self._row(session, name, lock=True)
            if if_revision is not None and row.revision != if_revision:
                raise ConflictError(
                    f"deployment {name!r} is at revision {row.revision}, not {if_revision}: it changed meanwhile",
                    field="if_revision",
                )
            current = DeploymentSpec.model_validate(row.spec)
            now = self.clock()
            spec = mutate(current, row.revision, now)
            for version in new_versions:
                self._version_row(session, spec.model, version)
            self._save(session, row, spec, action=action, actor=actor, reason=reason, now=now, event=event)
            if spec.primary.version != current.primary.version:
                self._point_champion(session, spec.model, spec.primary.version, actor)
            return _info(row)

    def _save(
        self,
        session: Session,
        row: Deployment,
        spec: DeploymentSpec,
        *,
        action: str,
        actor: str,
        reason: str,
        now: int,
        event: Mapping[str, Any] | None = None,
    ) -> None:
        previous = row.revision
        row.revision = previous + 1
        row.spec = spec.model_dump(mode="json")
        row.updated_at = now
        row.updated_by = actor
        session.add(
            DeploymentRevision(
                deployment_id=row.id,
                revision=row.revision,
                time=now,
                actor=actor,
                action=action,
                reason=reason,
                spec=row.spec,
            )
        )
        record_event(
            session,
            kind=f"deployment.{action}",
            subject=_subject(row.name),
            actor=actor,
            payload={
                "revision": row.revision,
                "previous_revision": previous or None,
                "reason": reason,
                "strategy": spec.strategy,
                "state": spec.state,
                "variants": [v.model_dump(mode="json") for v in spec.variants],
                **({"features": spec.features.model_dump(mode="json")} if spec.features is not None else {}),
                **(event or {}),
            },
        )

    @staticmethod
    def _version_row(session: Session, model: str, version: int) -> tuple[RegisteredModel, ModelVersion]:
        reg = session.scalars(select(RegisteredModel).where(RegisteredModel.name == model)).one_or_none()
        if reg is None:
            raise NotFoundError(f"no registered model named {model!r}", field="model")
        row = session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == reg.id, ModelVersion.version == version)
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"model {model!r} has no version {version}", field="version")
        return reg, row

    def _point_champion(self, session: Session, model: str, version: int, actor: str) -> None:
        """Move ``champion`` inside the deployment's transaction (the registry's own ``set_alias`` would open a
        second one), with the same ``model.alias_set`` event the registry records."""
        _, target = self._version_row(session, model, version)
        reg = session.scalars(select(RegisteredModel).where(RegisteredModel.name == model).with_for_update()).one()
        now = self.clock()
        alias = session.get(ModelAlias, (reg.id, CHAMPION))
        previous = None
        if alias is None:
            session.add(ModelAlias(model_id=reg.id, alias=CHAMPION, version_id=target.id, updated_at=now))
        else:
            previous = session.get_one(ModelVersion, alias.version_id).version
            if alias.version_id == target.id:
                return
            alias.version_id = target.id
            alias.updated_at = now
        reg.updated_at = now
        record_event(
            session,
            kind="model.alias_set",
            subject=f"models/{model}",
            actor=actor,
            payload={"alias": CHAMPION, "version": version, "previous_version": previous},
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        model: str,
        version: int,
        canary: CanaryConfig | None = None,
        analysis: AnalysisConfig | None = None,
        gate: GateConfig | None = None,
        routing: RoutingConfig | None = None,
        retention_seconds: float = 600.0,
        features: EndpointFeatures | str | None = None,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        """A new endpoint serving ``model`` version ``version`` to all traffic; ``champion`` points at it.

        With ``features`` (an :class:`EndpointFeatures`, or a feature service's name in project ``default``),
        callers send entity keys and every version of the endpoint looks its inputs up from that service; it
        must be registered (``mlpilot features apply``) and the version must take named inputs.
        """
        check_deployment_name(name)
        if isinstance(features, str):
            features = EndpointFeatures(service=features)
        if features is not None:
            check_feature_service(self.store, features)
        spec = DeploymentSpec(
            model=model,
            variants=[Variant(version=version, role="primary", weight=100)],
            canary=canary or CanaryConfig(),
            analysis=analysis or AnalysisConfig(),
            gate=gate or GateConfig(),
            routing=routing or RoutingConfig(),
            retention_seconds=retention_seconds,
            message=f"serving v{version}",
            features=features,
        )
        with self._write() as session:
            if session.scalars(select(Deployment.id).where(Deployment.name == name)).first() is not None:
                raise AlreadyExistsError(f"a deployment named {name!r} exists already", field="name")
            _, version_row = self._version_row(session, model, version)
            if features is not None:
                check_named_inputs(features, model, version, version_row.signature, field="features")
            now = self.clock()
            row = Deployment(
                name=name, model_name=model, revision=0, spec={}, created_at=now, updated_at=now, updated_by=actor
            )
            session.add(row)
            session.flush()
            self._save(session, row, spec, action="created", actor=actor, reason=reason, now=now)
            self._point_champion(session, model, version, actor)
            return _info(row)

    def delete(self, name: str, *, actor: str = "local", reason: str = "") -> None:
        """Remove a deployment, its history and statistics (the audit trail keeps the record)."""
        with self._write() as session:
            row = self._row(session, name, lock=True)
            record_event(
                session, kind="deployment.deleted", subject=_subject(name), actor=actor, payload={"reason": reason}
            )
            session.delete(row)

    def check_gate(
        self,
        name: str,
        version: int,
        *,
        gate: GateConfig | None = None,
        holdout: tuple[Any, Any] | None = None,
        metric_fn: Callable[[Any, Any], float] | None = None,
    ) -> GateReport:
        """Run the deployment's gate (or ``gate``) for ``version`` against the current primary."""
        info = self.get(name)
        candidate = self.registry.get_model_version(info.spec.model, version)
        champion = self.registry.get_model_version(info.spec.model, info.spec.primary.version)
        return evaluate_gate(
            gate or info.spec.gate,
            candidate,
            champion,
            artifacts=self.artifacts,
            holdout=holdout,
            metric_fn=metric_fn,
        )

    def _gated(
        self,
        name: str,
        version: int,
        skip_gate: bool,
        holdout: tuple[Any, Any] | None,
        start: Mutation,
        *,
        action: str,
        actor: str,
        reason: str,
    ) -> int:
        """Run the gate outside any transaction (loading models is slow); return the revision it judged.

        The transition is tried first on the current spec, so that a rollout the state forbids is refused
        before any model is loaded. A refusal changes nothing but the audit trail: a ``deployment.gate_refused``
        event with who asked, why, and every check.
        """
        info = self.get(name)
        start(info.spec, info.revision, self.clock())
        if info.spec.features is not None:
            # Not a gate check: a version that takes no named inputs cannot answer this endpoint's callers at all.
            candidate = self.registry.get_model_version(info.spec.model, version)
            check_named_inputs(info.spec.features, info.spec.model, version, candidate.signature, field="version")
        if skip_gate:
            return info.revision
        report = self.check_gate(name, version, holdout=holdout)
        if not report.passed:
            self._record_refusal(name, report, action=action, revision=info.revision, actor=actor, reason=reason)
            reasons = "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
            raise ConflictError(f"the gate refused v{version}: {reasons}", field="version", gate=report.to_dict())
        return info.revision

    def _record_refusal(
        self, name: str, report: GateReport, *, action: str, revision: int, actor: str, reason: str
    ) -> None:
        """The audit event of a gate refusal, in its own transaction; the deployment itself is left as it is."""
        with self._write() as session:
            row = self._row(session, name, lock=True)
            record_event(
                session,
                kind="deployment.gate_refused",
                subject=_subject(row.name),
                actor=actor,
                payload={
                    "revision": revision,
                    "requested": action,
                    "version": report.version,
                    "champion": report.champion,
                    "reason": reason,
                    "failed": [c.name for c in report.failures],
                    "checks": [c.to_dict() for c in report.checks],
                },
            )

    def _start(
        self,
        name: str,
        version: int,
        action: str,
        start: Mutation,
        *,
        skip_gate: bool,
        holdout: tuple[Any, Any] | None,
        actor: str,
        reason: str,
    ) -> DeploymentInfo:
        seen = self._gated(name, version, skip_gate, holdout, start, action=action, actor=actor, reason=reason)
        return self._change(
            name,
            action,
            start,
            actor=actor,
            reason=reason,
            if_revision=seen,
            new_versions=[version],
            event={"gate": "skipped"} if skip_gate else None,
        )

    def start_canary(
        self,
        name: str,
        version: int,
        *,
        canary: CanaryConfig | None = None,
        analysis: AnalysisConfig | None = None,
        skip_gate: bool = False,
        holdout: tuple[Any, Any] | None = None,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        """Gate ``version``, then send it the first canary step's share of traffic."""

        def start(s: DeploymentSpec, rev: int, now: int) -> DeploymentSpec:
            return transitions.start_canary(s, version, revision=rev, now_ms=now, canary=canary, analysis=analysis)

        return self._start(
            name, version, "canary_started", start, skip_gate=skip_gate, holdout=holdout, actor=actor, reason=reason
        )

    def start_blue_green(
        self,
        name: str,
        version: int,
        *,
        retention_seconds: float | None = None,
        skip_gate: bool = False,
        holdout: tuple[Any, Any] | None = None,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        """Gate ``version`` and load it next to the primary with no live traffic (its preview route answers)."""

        def start(s: DeploymentSpec, rev: int, now: int) -> DeploymentSpec:
            return transitions.start_blue_green(
                s, version, revision=rev, now_ms=now, retention_seconds=retention_seconds
            )

        return self._start(
            name, version, "blue_green_started", start, skip_gate=skip_gate, holdout=holdout, actor=actor, reason=reason
        )

    def start_shadow(
        self,
        name: str,
        version: int,
        *,
        mirror: float = 100.0,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        """Mirror ``mirror`` percent of live traffic to ``version`` off the response path."""

        def start(s: DeploymentSpec, rev: int, now: int) -> DeploymentSpec:
            return transitions.start_shadow(s, version, revision=rev, now_ms=now, mirror=mirror)

        return self._start(
            name, version, "shadow_started", start, skip_gate=skip_gate, holdout=None, actor=actor, reason=reason
        )

    def start_ab(
        self,
        name: str,
        version: int,
        *,
        ab: ABConfig | None = None,
        skip_gate: bool = False,
        actor: str = "local",
        reason: str = "",
    ) -> DeploymentInfo:
        """Split traffic between the primary (A) and ``version`` (B), sticky by assignment key."""
        config = ab or ABConfig()

        def start(s: DeploymentSpec, rev: int, now: int) -> DeploymentSpec:
            return transitions.start_ab(s, version, revision=rev, now_ms=now, ab=config)

        return self._start(
            name, version, "ab_started", start, skip_gate=skip_gate, holdout=None, actor=actor, reason=reason
        )

    def promote(
        self,
        name: str,
        *,
        actor: str = "local",
        reason: str = "",
        if_revision: int | None = None,
        force: bool = False,
    ) -> DeploymentInfo:
        """Give the candidate all traffic now (``champion`` moves to it); the old primary stays warm.

        A blue-green preview is promoted once :meth:`verify_preview` passed for its candidate; ``force=True``
        promotes it anyway, with a ``reason`` (recorded, with ``forced`` in the audit event).
        """
        if force and not reason.strip():
            raise InvalidInputError("reason: a forced promotion needs a reason (it is recorded)", field="reason")
        return self._change(
            name,
            "promoted",
            lambda s, _rev, now: transitions.promote(s, now_ms=now, message=reason, force=force),
            actor=actor,
            reason=reason,
            if_revision=if_revision,
            event={"forced": True} if force else None,
        )

    def verify_preview(
        self,
        name: str,
        url: str,
        *,
        inputs: Sequence[Any] | None = None,
        requests: int | None = None,
        timeout: float = 10.0,
        actor: str = "local",
        reason: str = "",
    ) -> PreviewVerification:
        """Send smoke requests to the blue-green candidate's preview route on the data plane at ``url`` and
        record the result (a ``preview_verified`` or ``preview_failed`` revision and audit event).

        ``inputs`` are rows as callers send them (``/v1`` instances); by default the version's stored sample,
        else rows generated from its signature. ``requests`` defaults to the gate's ``smoke_requests``; the
        p99 is held to the gate's ``latency_budget_ms``. A data plane that is unreachable or does not serve the
        candidate raises and records nothing. :meth:`promote` needs a passed verification.

        >>> deployments.verify_preview("churn", "http://127.0.0.1:8080").passed  # doctest: +SKIP
        True
        """
        if requests is not None and not 1 <= requests <= 10_000:
            raise InvalidInputError(f"requests: expected 1-10000, got {requests}", field="requests")
        if not 0 < timeout <= 300:
            raise InvalidInputError(f"timeout: expected 0-300 seconds, got {timeout}", field="timeout")
        info = self.get(name)
        candidate = transitions.check_preview(info.spec)
        version = self.registry.get_model_version(info.spec.model, candidate.version)
        gate = info.spec.gate
        rows, source = smoke_rows(
            version,
            inputs=inputs,
            count=requests or gate.smoke_requests,
            artifacts=self.artifacts,
            entity_keys=info.spec.features is not None,
        )
        result = verify_preview_route(
            url,
            name,
            candidate.version,
            rows,
            outputs=version.signature.outputs if version.signature is not None else [],
            rollout=info.spec.rollout,
            source=source,
            latency_budget_ms=gate.latency_budget_ms,
            timeout=timeout,
            now_ms=self.clock(),
        )
        self._change(
            name,
            "preview_verified" if result.passed else "preview_failed",
            lambda s, _rev, _now: transitions.record_verification(s, result),
            actor=actor,
            reason=reason,
            if_revision=None,
            event={"verification": result.model_dump(mode="json")},
        )
        return result

    def advance(
        self,
        name: str,
        *,
        actor: str = "local",
        reason: str = "",
        if_revision: int | None = None,
        latency_threshold_ms: float | None = None,
    ) -> DeploymentInfo:
        """Move a canary to its next step (a promotion after the last one)."""

        def mutate(s: DeploymentSpec, rev: int, now: int) -> DeploymentSpec:
            return transitions.advance(s, revision=rev, now_ms=now, latency_threshold_ms=latency_threshold_ms)

        info = self.get(name)
        promoting = info.spec.step + 1 >= len(info.spec.canary.steps) - 1
        return self._change(
            name,
            "promoted" if promoting else "traffic_shifted",
            mutate,
            actor=actor,
            reason=reason,
            if_revision=if_revision if if_revision is not None else info.revision,
        )

    def pause(
        self, name: str, *, actor: str = "local", reason: str = "", if_revision: int | None = None
    ) -> DeploymentInfo:
        """Stop a canary from progressing (its traffic split stays)."""
        message = reason or "paused"
        return self._change(
            name,
            "paused",
            lambda s, _rev, _now: transitions.pause(s, message=message),
            actor=actor,
            reason=reason,
            if_revision=if_revision,
        )

    def resume(self, name: str, *, actor: str = "local", reason: str = "") -> DeploymentInfo:
        """Resume a paused canary; its current step starts over."""
        return self._change(
            name,
            "resumed",
            lambda s, rev, now: transitions.resume(s, revision=rev, now_ms=now),
            actor=actor,
            reason=reason,
            if_revision=None,
        )

    def rollback(
        self, name: str, *, actor: str = "local", reason: str = "", if_revision: int | None = None
    ) -> DeploymentInfo:
        """Restore the stable revision the current (or last promoted) rollout started from, in one transaction;
        ``champion`` moves back when the primary changes."""
        with self._write() as session:
            row = self._row(session, name, lock=True)
            if if_revision is not None and row.revision != if_revision:
                raise ConflictError(
                    f"deployment {name!r} is at revision {row.revision}, not {if_revision}: it changed meanwhile",
                    field="if_revision",
                )
            current = DeploymentSpec.model_validate(row.spec)
            if current.base_revision is None:
                raise ConflictError(f"deployment {name!r} has nothing to roll back to", field="name")
            base_row = session.get_one(DeploymentRevision, (row.id, current.base_revision))
            base = DeploymentSpec.model_validate(base_row.spec)
            spec = transitions.rollback(current, base, message=f"rolled back: {reason}" if reason else "rolled back")
            now = self.clock()
            self._save(session, row, spec, action="rolled_back", actor=actor, reason=reason, now=now)
            if spec.primary.version != current.primary.version:
                self._point_champion(session, spec.model, spec.primary.version, actor)
            return _info(row)

    def release_standby(self, name: str, *, actor: str = "controller") -> DeploymentInfo | None:
        """Drop standbys whose retention window has passed; None when there is nothing to drop."""
        info = self.get(name)
        if transitions.expire_standby(info.spec, now_ms=self.clock()) is None:
            return None

        def mutate(s: DeploymentSpec, _rev: int, now: int) -> DeploymentSpec:
            expired = transitions.expire_standby(s, now_ms=now)
            if expired is None:
                raise ConflictError("the standby was released meanwhile", field="name")
            return expired

        return self._change(
            name, "standby_released", mutate, actor=actor, reason="retention window ended", if_revision=info.revision
        )

    # -- traffic statistics ------------------------------------------------------------------------------------
    def record_observations(
        self,
        name: str,
        *,
        source: str,
        revision: int,
        rollout: int,
        variants: dict[str, VariantStats],
    ) -> None:
        """Add a data-plane replica's statistics delta (``variants`` by name, e.g. ``v4``) for a revision."""
        if not source or len(source) > _MAX_SOURCE:
            raise InvalidInputError(f"source: expected 1-{_MAX_SOURCE} characters", field="source")
        if source in _RESERVED_SOURCES:
            raise InvalidInputError(f"source: {source!r} is reserved for outcomes; name the replica", field="source")
        with self._write() as session:
            row = self._row(session, name)
            if not 0 < revision <= row.revision:
                raise InvalidInputError(f"revision: {name!r} has no revision {revision}", field="revision")
            spec = DeploymentSpec.model_validate(row.spec)
            if not 0 <= rollout <= spec.rollout:
                raise InvalidInputError(f"rollout: {name!r} has had no rollout {rollout}", field="rollout")
            for variant, stats in variants.items():
                if not (variant.startswith("v") and variant[1:].isdigit()):
                    raise InvalidInputError(f"variants: expected names like 'v3', got {variant!r}", field="variants")
                if not stats.empty:
                    merge_stats(
                        session, self.store.dialect, self.clock(), row.id, (rollout, revision, variant, source), stats
                    )

    def set_label_outcomes(self, name: str, *, rollout: int, outcomes: Mapping[str, Moments]) -> bool:
        """Set (not add) the outcomes derived from labels logged through monitoring for rollout ``rollout``, by
        variant (see :mod:`mlpilot.deploy.labels`, which recomputes them from every label each time, so a label
        posted twice counts once). False, and nothing written, when the deployment is no longer in that rollout.
        """
        with self._write() as session:
            row = self._row(session, name)
            spec = DeploymentSpec.model_validate(row.spec)
            if spec.rollout != rollout or spec.base_revision is None:
                return False
            # Kept at the rollout's first revision: one row per variant, whatever step the canary is at.
            revision = spec.base_revision + 1
            for variant, moments in outcomes.items():
                stats = VariantStats(outcomes=moments)
                put_stats(
                    session,
                    self.store.dialect,
                    self.clock(),
                    row.id,
                    (rollout, revision, variant, LABELS_SOURCE),
                    stats,
                )
        return True

    def record_outcomes(self, name: str, outcomes: Sequence[Outcome]) -> dict[str, int]:
        """Add labels or business outcomes that arrived after the predictions; returns the count per variant.

        An outcome names its variant, or gives the assignment key (the sticky key, else the request id) and
        the variant is recomputed by the same hashing the data plane used.
        """
        info = self.get(name)
        table = RouteTable.build(name, info.spec.variants, routing=info.spec.routing)
        known = {v.name for v in info.spec.variants}
        per_variant: dict[str, VariantStats] = {}
        for i, outcome in enumerate(outcomes):
            variant = outcome.variant or f"v{table.choose(outcome.key or '')}"
            if variant not in known:
                field = f"outcomes[{i}].variant"
                raise InvalidInputError(f"{field}: {variant!r} is not a variant of {name!r}", field=field)
            per_variant.setdefault(variant, VariantStats()).record_outcome(outcome.numeric())
        with self._write() as session:
            row = self._row(session, name)
            for variant, stats in per_variant.items():
                merge_stats(
                    session,
                    self.store.dialect,
                    self.clock(),
                    row.id,
                    (info.spec.rollout, info.revision, variant, "outcomes"),
                    stats,
                )
        return {k: int(v.outcomes.n) for k, v in per_variant.items()}

    # -- analysis ------------------------------------------------------------------------------------------------
    def analyze(self, name: str) -> AnalysisReport:
        """Where the current rollout stands: the decision the controller would take now, with its checks."""
        with self.store.read() as session:
            row = self._row(session, name)
            info = _info(row)
            data = rollout_data(session, row.id, info.spec)
        return build_report(info, data, now_ms=self.clock())

    def candidate_info(self, name: str) -> ModelVersionInfo | None:
        info = self.get(name)
        candidate = info.spec.candidate
        return None if candidate is None else self.registry.get_model_version(info.spec.model, candidate.version)
