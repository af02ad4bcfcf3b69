"""``Monitor``: the monitoring service over the metadata store, the artifact store and the prediction log.

It ties the engine to the platform: reference profiles of model versions (computed once from the registry's
training sample, stored as artifacts), windows of served traffic with their late labels, checks whose results
are stored and exported, alert rules evaluated on a schedule. The REST API, the CLI and the demo call it::

    >>> monitor = Monitor(store, artifacts, predictions_url="/srv/predictions")  # doctest: +SKIP
    >>> monitor.configure_endpoint("churn", EndpointConfig(segments=["region", "plan"]))  # doctest: +SKIP
    >>> result = monitor.check("churn", WindowSpec(last_rows=5000), html="churn.html")  # doctest: +SKIP
    >>> result.summary.drifted_features, result.summary.worst_segment  # doctest: +SKIP
    (['income'], 'region=EU & plan=basic')
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from mlpilot.artifacts import ArtifactStore
from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError
from mlpilot.monitor._logfs import LogLocation, check_endpoint
from mlpilot.monitor.entities import CheckSummary, EndpointConfig, ProfileInfo
from mlpilot.monitor.labels import LabelBatch, LabelReceipt, store_labels
from mlpilot.monitor.references import (
    ModelLoader,
    load_sample,
    main_output,
    params_digest,
    profile_params,
    reference_table,
)
from mlpilot.monitor.windows import Window, WindowSpec, read_window
from mlpilot.store import Store, now_ms
from mlpilot.store.audit import list_events, record_event
from mlpilot.store.schema import ModelVersion, MonitorEndpoint, MonitorProfile, MonitorResult, RegisteredModel

if TYPE_CHECKING:
    from mlpilot.config import Settings
    from mlpilot.monitor.alerts import AlertManager
    from mlpilot.monitor.profiles import Profile
    from mlpilot.monitor.report import DriftReport
    from mlpilot.monitor.scheduler import Scheduler

__all__ = ["CheckResult", "Monitor"]

logger = logging.getLogger("mlpilot.monitor")
_PROFILE_CACHE = 32


def _subject(endpoint: str) -> str:
    return f"endpoints/{endpoint}"


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: strict JSON, which PostgreSQL and browsers accept."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass
class CheckResult:
    """A check just run: the stored summary, the full report, and the window it read."""

    summary: CheckSummary
    report: DriftReport
    window: Window
    html_path: Path | None = None

    @property
    def drifted_features(self) -> list[str]:
        return self.summary.drifted_features

    @property
    def worst_segment(self) -> str | None:
        return self.summary.worst_segment


class Monitor:
    """The monitoring service; see the module docstring.

    ``model_loader(name, version)`` returns a predictor (see :data:`~mlpilot.monitor.references.ModelLoader`);
    without it, reference profiles hold the training inputs only. ``interval`` is the scheduler's period in
    seconds (0 disables it); ``keep_results`` caps the stored results per endpoint.
    """

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        *,
        predictions_url: str,
        model_loader: ModelLoader | None = None,
        interval: float = 60.0,
        keep_results: int = 1000,
        webhook_retries: int = 3,
        webhook_backoff: float = 0.5,
        webhook_timeout: float = 5.0,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if interval < 0:
            raise InvalidInputError(f"interval: expected seconds >= 0, got {interval}", field="interval")
        if keep_results < 1:
            raise InvalidInputError(f"keep_results: expected >= 1, got {keep_results}", field="keep_results")
        self.store = store
        self.artifacts = artifacts
        self.location = LogLocation(predictions_url, **(storage_options or {}))
        self.model_loader = model_loader
        self.interval = interval
        self.keep_results = keep_results
        self._profiles: OrderedDict[str, Profile] = OrderedDict()
        self._profiles_lock = threading.Lock()
        self._event_cursor = 0
        self._owned: list[Any] = []
        from mlpilot.monitor.alerts import AlertManager

        self.alerts: AlertManager = AlertManager(
            self, retries=webhook_retries, backoff=webhook_backoff, timeout=webhook_timeout
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, model_loader: ModelLoader | None = None, **options: Any) -> Monitor:
        """A monitor over the settings' store, artifacts and default prediction log (closes them on ``close``)."""
        from mlpilot.artifacts import artifact_store_from_settings
        from mlpilot.monitor.backend import default_predictions_url

        store = Store(settings.resolved_db_url, busy_timeout=settings.sqlite_busy_timeout)
        artifacts = artifact_store_from_settings(settings)
        monitor = cls(
            store, artifacts, predictions_url=default_predictions_url(settings), model_loader=model_loader, **options
        )
        monitor._owned = [artifacts, store]
        return monitor

    def close(self) -> None:
        self.location.close()
        for owned in self._owned:
            owned.close()
        self._owned = []

    # -- endpoints -------------------------------------------------------------------------------------------

    def configure_endpoint(self, name: str, config: EndpointConfig, *, actor: str = "local") -> EndpointConfig:
        """Declare how ``name`` is monitored (segment fields, label and output columns, window, drift options)."""
        check_endpoint(name)
        now = now_ms()
        with self.store.write() as session:
            row = session.scalars(select(MonitorEndpoint).where(MonitorEndpoint.name == name)).one_or_none()
            data = config.model_dump(mode="json")
            if row is None:
                row = MonitorEndpoint(name=name, created_at=now)
                session.add(row)
            row.model_name = config.model or name
            row.config = data
            row.updated_at = now
            row.updated_by = actor
            record_event(session, kind="monitor.endpoint_configured", subject=_subject(name), actor=actor, payload=data)
        return config

    def endpoint_config(self, name: str) -> EndpointConfig:
        """The endpoint's configuration, or the defaults when it was never configured."""
        check_endpoint(name)
        with self.store.read() as session:
            row = session.scalars(select(MonitorEndpoint).where(MonitorEndpoint.name == name)).one_or_none()
        return EndpointConfig() if row is None else EndpointConfig.model_validate(row.config)

    def list_endpoints(self) -> dict[str, EndpointConfig]:
        """Configured endpoints, and endpoints that only have a prediction log (with default settings)."""
        with self.store.read() as session:
            rows = list(session.scalars(select(MonitorEndpoint).order_by(MonitorEndpoint.name)))
        found = {r.name: EndpointConfig.model_validate(r.config) for r in rows}
        for name in self.location.endpoints():
            found.setdefault(name, EndpointConfig())
        return dict(sorted(found.items()))

    def delete_endpoint(self, name: str, *, actor: str = "local") -> None:
        check_endpoint(name)
        with self.store.write() as session:
            row = session.scalars(select(MonitorEndpoint).where(MonitorEndpoint.name == name)).one_or_none()
            if row is None:
                raise NotFoundError(f"endpoint: {name!r} is not configured for monitoring", field="endpoint")
            session.delete(row)
            record_event(session, kind="monitor.endpoint_deleted", subject=_subject(name), actor=actor)

    # -- reference profiles ----------------------------------------------------------------------------------

    def _version(self, model: str, version: int) -> ModelVersion:
        with self.store.read() as session:
            row = session.scalars(
                select(ModelVersion)
                .join(RegisteredModel, ModelVersion.model_id == RegisteredModel.id)
                .where(RegisteredModel.name == model, ModelVersion.version == version)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"model: no version {version} of registered model {model!r}", field="model")
        return row

    def _cached(self, sha256: str) -> Profile:
        from mlpilot.monitor.profiles import Profile

        with self._profiles_lock:
            found = self._profiles.get(sha256)
            if found is not None:
                self._profiles.move_to_end(sha256)
                return found
        loaded = Profile.from_dict(json.loads(self.artifacts.get_bytes(sha256)))
        with self._profiles_lock:
            self._profiles[sha256] = loaded
            while len(self._profiles) > _PROFILE_CACHE:
                self._profiles.popitem(last=False)
        return loaded

    def _save_profile(self, subject: str, digest: str, params: dict[str, Any], profile: Profile) -> ProfileInfo:
        payload = json.dumps(jsonable(profile.to_dict()), separators=(",", ":"), sort_keys=True).encode()
        sha = self.artifacts.put_bytes(payload)
        with self._profiles_lock:
            self._profiles[sha] = profile
        try:
            with self.store.write() as session:
                row = MonitorProfile(
                    subject=subject,
                    params_digest=digest,
                    sha256=sha,
                    rows=profile.rows,
                    params=jsonable(params),
                    created_at=now_ms(),
                )
                session.add(row)
        except SAIntegrityError:
            # Another worker stored the same profile first: theirs is the one every check uses.
            found = self._stored_profile(subject, digest)
            assert found is not None
            return found
        return ProfileInfo(
            subject=subject, sha256=sha, rows=row.rows, params=row.params, created_at=row.created_at, computed=True
        )

    def _stored_profile(self, subject: str, digest: str) -> ProfileInfo | None:
        with self.store.read() as session:
            row = session.scalars(
                select(MonitorProfile).where(MonitorProfile.subject == subject, MonitorProfile.params_digest == digest)
            ).one_or_none()
        if row is None:
            return None
        return ProfileInfo(
            subject=row.subject, sha256=row.sha256, rows=row.rows, params=row.params, created_at=row.created_at
        )

    def ensure_profile(
        self, model: str, version: int, config: EndpointConfig | None = None, *, endpoint: str | None = None
    ) -> ProfileInfo:
        """The reference profile of a model version for ``config`` (or ``endpoint``'s settings): the stored one,
        or computed and stored now."""
        if config is None and endpoint is not None:
            config = self.endpoint_config(endpoint)
        return self._reference(model, version, config or EndpointConfig())[1]

    def reference_profile(self, model: str, version: int, config: EndpointConfig | None = None) -> Profile:
        """The reference :class:`~mlpilot.monitor.profiles.Profile` itself (computed once, then cached)."""
        return self._reference(model, version, config or EndpointConfig())[0]

    def _reference(self, model: str, version: int, config: EndpointConfig) -> tuple[Profile, ProfileInfo]:
        from mlpilot.monitor.profiles import profile

        row = self._version(model, version)
        prediction = config.prediction or main_output(row.signature)
        params = profile_params(config, prediction)
        subject = f"models/{model}/{version}"
        stored = self._stored_profile(subject, params_digest(params))
        if stored is not None:
            return self._cached(stored.sha256), stored
        sample = load_sample(self.artifacts, row.sample_sha256, f"model {model!r} version {version}")
        notes: list[str] = []
        table = reference_table(
            sample,
            model=model,
            version=version,
            prediction=prediction,
            config=config,
            loader=self.model_loader,
            notes=notes,
        )
        names = table.column_names
        built = profile(
            table,
            prediction=prediction if prediction in names else None,
            target=config.label if config.label in names else None,
            score=config.score if config.score is not None and config.score in names else None,
            segments=[s for s in config.segments if s in names],
            task=config.task,
            positive_label=config.positive_label,
        )
        info = self._save_profile(subject, params_digest(params), {**params, "notes": notes}, built)
        logger.info("reference profile of %s v%s stored as %s (%d rows)", model, version, info.sha256[:12], built.rows)
        return self._cached(info.sha256), info

    def store_dataset_profile(self, name: str, profile: Profile) -> ProfileInfo:
        """Store the profile of any dataset as ``datasets/<name>`` (on demand, e.g. from a notebook or CI); the
        newest one stored under a name is what :meth:`dataset_profile` returns."""
        check_endpoint(name, field="name")
        content = hashlib.sha256(json.dumps(jsonable(profile.to_dict()), sort_keys=True).encode()).hexdigest()
        params = {"content": content, "rows": profile.rows, "segments": list(profile.segments)}
        return self._save_profile(f"datasets/{name}", params_digest(params), params, profile)

    def dataset_profile(self, name: str) -> Profile:
        check_endpoint(name, field="name")
        with self.store.read() as session:
            row = session.scalars(
                select(MonitorProfile)
                .where(MonitorProfile.subject == f"datasets/{name}")
                .order_by(MonitorProfile.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"name: no stored profile of dataset {name!r}", field="name")
        return self._cached(row.sha256)

    def sync_profiles(self, *, limit: int = 10) -> list[ProfileInfo]:
        """Profile versions registered since the last call (the ``model.registered`` events): at most ``limit``
        new profiles per call, so the scheduler's tick stays short."""
        computed: list[ProfileInfo] = []
        while len(computed) < limit:
            with self.store.read() as session:
                events = list_events(session, kind="model.registered", after_id=self._event_cursor, limit=100)
                configured = list(session.scalars(select(MonitorEndpoint)))
            if not events:
                break
            for event in events:
                self._event_cursor = event.id
                model = event.subject.removeprefix("models/")
                version = event.payload.get("version")
                if not isinstance(version, int):
                    continue
                configs = [EndpointConfig.model_validate(r.config) for r in configured if r.model_name == model]
                for config in configs or [EndpointConfig()]:
                    try:
                        info = self.ensure_profile(model, version, config)
                    except (NotFoundError, InvalidInputError, ConflictError) as exc:
                        logger.debug("no reference profile for %s v%s: %s", model, version, exc)
                        continue
                    except Exception as exc:  # a bad sample must not stop the loop for other versions
                        logger.warning("reference profile of %s v%s failed: %s", model, version, exc)
                        continue
                    if info.computed:
                        computed.append(info)
                if len(computed) >= limit:
                    break
        return computed

    # -- windows and checks ----------------------------------------------------------------------------------

    def default_window(self, config: EndpointConfig, *, now: int | None = None) -> WindowSpec:
        since = None
        if config.window_minutes is not None:
            since = (now or now_ms()) - int(config.window_minutes * 60_000)
        return WindowSpec(last_rows=config.window_rows, since_ms=since)

    def window(self, endpoint: str, spec: WindowSpec | None = None) -> Window:
        """Rows of ``endpoint``'s log (default: its configured window) with their labels."""
        config = self.endpoint_config(endpoint)
        return read_window(
            self.location, endpoint, spec or self.default_window(config), segments=config.segments, label=config.label
        )

    def check(
        self,
        endpoint: str,
        window: WindowSpec | None = None,
        *,
        labels: LabelBatch | None = None,
        html: str | Path | None = None,
        save: bool = True,
        actor: str = "local",
        reuse_unchanged: bool = False,
    ) -> CheckResult:
        """Compare a window of ``endpoint`` with its version's reference; store the result unless ``save=False``.

        ``labels`` (late ground truth) are joined to the log first. The result names the drifted features and
        the segment whose performance fell most (``result.worst_segment``); ``html`` also writes the
        self-contained report there. ``reuse_unchanged`` returns the latest stored result instead when it
        covered the same rows and labels with the same settings (what scheduled rounds do)::

            result = monitor.check("churn", WindowSpec(last_rows=5000), labels=batch, html="churn.html")
            result.drifted_features, result.worst_segment, result.html_path
        """
        from mlpilot.monitor.checks import run_check

        if labels is not None:
            self.log_labels(labels, actor=actor)
        return run_check(self, endpoint, window, html=html, save=save, actor=actor, reuse_unchanged=reuse_unchanged)

    def run_check(self, endpoint: str, window: WindowSpec | None = None, *, actor: str = "local") -> CheckSummary:
        return self.check(endpoint, window, actor=actor).summary

    def _result_summary(self, row: MonitorResult) -> CheckSummary:
        return CheckSummary.model_validate({**row.summary, "id": row.id, "report_sha256": row.report_sha256})

    def latest_check(self, endpoint: str) -> CheckSummary:
        check_endpoint(endpoint)
        with self.store.read() as session:
            row = session.scalars(
                select(MonitorResult)
                .where(MonitorResult.endpoint == endpoint)
                .order_by(MonitorResult.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"endpoint: no monitoring results for {endpoint!r} yet", field="endpoint")
        return self._result_summary(row)

    def list_checks(self, endpoint: str, *, limit: int = 50) -> list[CheckSummary]:
        """Stored results of ``endpoint``, newest first."""
        check_endpoint(endpoint)
        with self.store.read() as session:
            rows = list(
                session.scalars(
                    select(MonitorResult)
                    .where(MonitorResult.endpoint == endpoint)
                    .order_by(MonitorResult.id.desc())
                    .limit(max(1, min(limit, 1000)))
                )
            )
        return [self._result_summary(r) for r in rows]

    def latest_checks(self) -> list[CheckSummary]:
        """The newest result of every endpoint that has one (what the Prometheus gauges show)."""
        with self.store.read() as session:
            names = list(session.scalars(select(MonitorResult.endpoint).distinct()))
        out: list[CheckSummary] = []
        for name in sorted(names):
            try:
                out.append(self.latest_check(name))
            except NotFoundError:
                continue  # pruned between the two reads
        return out

    def check_report(self, endpoint: str, check_id: int | None = None) -> dict[str, Any]:
        summary = self.latest_check(endpoint) if check_id is None else self._check_by_id(endpoint, check_id)
        if summary.report_sha256 is None:
            raise NotFoundError(f"check {summary.id} of {endpoint!r} has no stored report", field="check_id")
        data: dict[str, Any] = json.loads(self.artifacts.get_bytes(summary.report_sha256))
        return data

    def _check_by_id(self, endpoint: str, check_id: int) -> CheckSummary:
        with self.store.read() as session:
            row = session.get(MonitorResult, check_id)
        if row is None or row.endpoint != endpoint:
            raise NotFoundError(f"check_id: no check {check_id} of endpoint {endpoint!r}", field="check_id")
        return self._result_summary(row)

    def _store_result(self, summary: CheckSummary, report: DriftReport, *, actor: str) -> CheckSummary:
        blob = json.dumps(jsonable(report.to_dict()), separators=(",", ":")).encode()
        sha = self.artifacts.put_bytes(blob)
        data = summary.model_dump(mode="json", exclude={"id", "report_sha256"})
        with self.store.write() as session:
            previous = session.scalars(
                select(MonitorResult.drifted)
                .where(MonitorResult.endpoint == summary.endpoint)
                .order_by(MonitorResult.id.desc())
                .limit(1)
            ).one_or_none()
            row = MonitorResult(
                endpoint=summary.endpoint,
                model_name=summary.model,
                version=summary.version,
                time=summary.time,
                window_start=summary.window_start,
                window_end=summary.window_end,
                rows=summary.rows,
                labeled_rows=summary.labeled_rows,
                drifted=summary.drifted,
                summary=data,
                report_sha256=sha,
            )
            session.add(row)
            session.flush()
            if summary.drifted and not previous:
                # The event pipelines trigger on (drift -> retrain): once when drift appears, not every check.
                record_event(
                    session,
                    kind="drift.detected",
                    subject=_subject(summary.endpoint),
                    actor=actor,
                    payload={
                        "check_id": row.id,
                        "model": summary.model,
                        "version": summary.version,
                        "drifted_features": summary.drifted_features,
                        "worst_segment": summary.worst_segment,
                    },
                )
            cutoff = session.scalars(
                select(MonitorResult.id)
                .where(MonitorResult.endpoint == summary.endpoint)
                .order_by(MonitorResult.id.desc())
                .offset(self.keep_results)
                .limit(1)
            ).one_or_none()
            if cutoff is not None:
                session.execute(
                    delete(MonitorResult).where(MonitorResult.endpoint == summary.endpoint, MonitorResult.id <= cutoff)
                )
        return summary.model_copy(update={"id": row.id, "report_sha256": sha})

    # -- labels ----------------------------------------------------------------------------------------------

    def log_labels(self, batch: LabelBatch, *, actor: str = "local") -> LabelReceipt:
        """Join late labels to logged predictions (see :mod:`mlpilot.monitor.labels`); all or nothing."""
        receipt = store_labels(self.location, batch, actor=actor)
        with self.store.write() as session:
            for endpoint, count in receipt.endpoints.items():
                record_event(
                    session,
                    kind="monitor.labels_logged",
                    subject=_subject(endpoint),
                    actor=actor,
                    payload={"count": count},
                )
        return receipt

    # -- schedule --------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One scheduler round: profile newly registered versions, check monitored endpoints, evaluate alerts."""
        try:
            self.sync_profiles()
        except Exception:
            logger.exception("monitor: profiling new model versions failed")
        self.alerts.evaluate(run_checks=True)

    def scheduler(self) -> Scheduler:
        from mlpilot.monitor.scheduler import Scheduler

        return Scheduler(self.tick, self.interval)
