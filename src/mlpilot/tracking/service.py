"""TrackingService: experiments, runs and everything logged to them, over the metadata store.

Each method is one short transaction. ``log_batch`` writes a whole batch of metric points with one executemany
and moves each metric's latest value (what search filters and sorts on) in the same transaction, so a reader
never sees points without their latest value, even when the writer is killed mid-batch.

>>> from mlpilot.store import Store
>>> svc = TrackingService(Store("sqlite:///:memory:"))
>>> info = svc.create_run(RunSpec(experiment="churn"))
>>> svc.log_batch(info.id, metrics=[("loss", 0.5, 0, 1_700_000_000_000)], params={"lr": "0.1"})
>>> svc.get_run(info.id).metrics
{'loss': 0.5}
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError
from mlpilot.store import Store, now_ms
from mlpilot.store.audit import record_event
from mlpilot.store.schema import (
    Dataset,
    Experiment,
    LatestMetric,
    Metric,
    Param,
    Run,
    RunArtifact,
    RunInput,
    Tag,
)
from mlpilot.tracking import models as m
from mlpilot.tracking import search as _search
from mlpilot.tracking.models import (
    ArtifactRef,
    DatasetInfo,
    MetricPoint,
    RunInfo,
    RunPage,
    RunSpec,
    RunStatus,
)

__all__ = ["MAX_KEY_LENGTH", "MAX_PARAM_LENGTH", "MetricRow", "TrackingService", "numeric_value"]

MAX_KEY_LENGTH = 256
MAX_PARAM_LENGTH = 65_535
MAX_CONTEXT_LENGTH = 64
#: A metric point as the writer batches it: (key, value, step, timestamp in ms).
MetricRow = tuple[str, float, int, int]

_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def numeric_value(value: str) -> float | None:
    """The numeric view of a param value (``"8"`` -> 8.0), None when it is not a finite number."""
    text = value.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _check_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"{what} key must be a non-empty string of at most {MAX_KEY_LENGTH} characters, got {str(key)[:80]!r}",
            field=what,
        )
    return key


def _check_str_map(values: Mapping[str, str] | None, what: str, limit: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        _check_key(key, what)
        if not isinstance(value, str):
            raise InvalidInputError(f"{what} {key!r}: value must be a string, got {type(value).__name__}", field=what)
        if len(value) > limit:
            raise InvalidInputError(f"{what} {key!r}: value is longer than {limit} characters", field=what)
        out[key] = value
    return out


class TrackingService:
    """Experiments and runs over a :class:`~mlpilot.store.Store`; implements :class:`TrackingBackend`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert

    # -- experiments -----------------------------------------------------------------------------------------

    def _experiment_id(self, session: Session, name: str, actor: str) -> int:
        found = session.scalar(select(Experiment.id).where(Experiment.name == name))
        if found is not None:
            return found
        # ON CONFLICT DO NOTHING: another process may create the same experiment at the same moment.
        stmt = self._insert(Experiment).values(name=name, created_at=now_ms(), tags={})
        result = session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        if getattr(result, "rowcount", 0):
            record_event(session, kind="experiment.created", subject=f"experiments/{name}", actor=actor)
        exp_id = session.scalar(select(Experiment.id).where(Experiment.name == name))
        assert exp_id is not None
        return exp_id

    def get_or_create_experiment(self, name: str, *, actor: str = "local") -> m.Experiment:
        """The experiment called ``name``, created if missing."""
        _check_key(name, "experiment")
        with self.store.write() as session:
            self._experiment_id(session, name, actor)
        return self.get_experiment(name)

    def get_experiment(self, name: str) -> m.Experiment:
        with self.store.read() as session:
            row = session.execute(select(Experiment).where(Experiment.name == name)).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"experiment {name!r} does not exist", field="experiment")
            return m.Experiment(id=row.id, name=row.name, created_at=row.created_at, tags=row.tags or {})

    def list_experiments(self) -> list[m.Experiment]:
        with self.store.read() as session:
            rows = session.execute(select(Experiment).order_by(Experiment.id)).scalars().all()
            return [m.Experiment(id=r.id, name=r.name, created_at=r.created_at, tags=r.tags or {}) for r in rows]

    # -- runs ------------------------------------------------------------------------------------------------

    def create_run(self, spec: RunSpec, *, actor: str = "local") -> RunInfo:
        """Start a run (status RUNNING) in ``spec.experiment``, creating the experiment if needed."""
        _check_key(spec.experiment, "experiment")
        tags = _check_str_map(spec.tags, "tag", MAX_PARAM_LENGTH)
        run_id = uuid.uuid4().hex
        start = spec.start_time if spec.start_time is not None else now_ms()
        name = spec.name or f"run-{run_id[:8]}"
        with self.store.write() as session:
            if spec.parent_id is not None and session.get(Run, spec.parent_id) is None:
                raise NotFoundError(f"parent run {spec.parent_id!r} does not exist", field="parent_id")
            exp_id = self._experiment_id(session, spec.experiment, actor)
            session.execute(
                self._insert(Run).values(
                    id=run_id,
                    experiment_id=exp_id,
                    parent_id=spec.parent_id,
                    name=name,
                    status=RunStatus.RUNNING.value,
                    start_time=start,
                    user=spec.user,
                    source=spec.source,
                    git_commit=spec.git_commit,
                    git_dirty=spec.git_dirty,
                    environment=spec.environment,
                )
            )
            if tags:
                session.execute(self._insert(Tag), [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()])
            record_event(
                session,
                kind="run.created",
                subject=f"runs/{run_id}",
                actor=actor,
                payload={"experiment": spec.experiment, "name": name, "parent_id": spec.parent_id},
            )
        return RunInfo(
            id=run_id,
            experiment_id=exp_id,
            experiment=spec.experiment,
            name=name,
            parent_id=spec.parent_id,
            status=RunStatus.RUNNING,
            start_time=start,
            user=spec.user,
            source=spec.source,
            git_commit=spec.git_commit,
            git_dirty=spec.git_dirty,
        )

    def _require_run(self, session: Session, run_id: str) -> str:
        """The run's status, or NotFoundError."""
        if not isinstance(run_id, str):
            raise InvalidInputError(f"run_id must be a string, got {type(run_id).__name__}", field="run_id")
        status = session.scalar(select(Run.status).where(Run.id == run_id))
        if status is None:
            raise NotFoundError(f"run {run_id!r} does not exist", field="run_id")
        return status

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        *,
        end_time: int | None = None,
        metrics: Sequence[MetricRow] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> RunInfo:
        """Mark a RUNNING run FINISHED, FAILED or KILLED; ending a run twice is a ConflictError.

        ``metrics``, ``params`` and ``tags`` (as in :meth:`log_batch`) are written in the same transaction, so
        a run's last points and its final status become visible together.
        """
        try:
            final = RunStatus(str(status).upper())
        except ValueError as exc:
            raise InvalidInputError(
                f"status must be one of FINISHED, FAILED, KILLED, got {status!r}", field="status"
            ) from exc
        if final is RunStatus.RUNNING:
            raise InvalidInputError("status must be one of FINISHED, FAILED, KILLED, got 'RUNNING'", field="status")
        batch = self._prepare_batch(run_id, metrics, params, tags)
        with self._conflicts(run_id), self.store.write() as session:
            current = self._require_run(session, run_id)
            if current != RunStatus.RUNNING.value:
                raise ConflictError(f"run {run_id} already ended as {current}", field="status", status=current)
            self._write_batch(session, run_id, *batch)
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status=final.value, end_time=end_time if end_time is not None else now_ms())
            )
            record_event(
                session,
                kind="run.ended",
                subject=f"runs/{run_id}",
                actor=actor,
                payload={"status": final.value},
            )
            row = session.execute(_search.info_query().where(Run.id == run_id)).one()
            return _search.info_from_row(row)

    # -- logging ---------------------------------------------------------------------------------------------

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[MetricRow] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> None:
        """Write metric points, params and tags of one run in one transaction.

        Params are write-once: logging a param again with the same value is a no-op, with another value a
        ConflictError. Tags are overwritten. Each metric's latest value moves only forward (higher step, then
        later or equal timestamp), so batches arriving out of order never move it back.
        """
        batch = self._prepare_batch(run_id, metrics, params, tags)
        if not any(batch):
            with self.store.read() as session:
                self._require_run(session, run_id)
            return
        with self._conflicts(run_id), self.store.write() as session:
            self._require_run(session, run_id)
            self._write_batch(session, run_id, *batch)

    @contextmanager
    def _conflicts(self, run_id: str) -> Iterator[None]:
        try:
            yield
        except SAIntegrityError as exc:
            raise ConflictError(f"run {run_id}: a concurrent write conflicted: {exc.orig}") from exc

    def _prepare_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricRow],
        params: Mapping[str, str] | None,
        tags: Mapping[str, str] | None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str], dict[str, str]]:
        """Validate a batch before any transaction starts: (metric rows, latest rows, params, tags)."""
        rows, latest = self._metric_rows(run_id, metrics)
        param_map = _check_str_map(params, "param", MAX_PARAM_LENGTH)
        tag_map = _check_str_map(tags, "tag", MAX_PARAM_LENGTH)
        return rows, list(latest.values()), param_map, tag_map

    def _write_batch(
        self,
        session: Session,
        run_id: str,
        rows: list[dict[str, Any]],
        latest: list[dict[str, Any]],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        if params:
            self._write_params(session, run_id, params)
        if tags:
            stmt = self._insert(Tag)
            session.execute(
                stmt.on_conflict_do_update(index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}),
                [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
            )
        if rows:
            session.execute(self._insert(Metric), rows)
            self._upsert_latest(session, latest)

    @staticmethod
    def _metric_rows(
        run_id: str, metrics: Sequence[MetricRow]
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        for point in metrics:
            try:
                key, value, step, timestamp = point
                value = float(value)
                if type(step) is not int or type(timestamp) is not int:
                    step, timestamp = int(step), int(timestamp)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"metric point must be (key, number value, int step, int timestamp), got {point!r}",
                    field="metrics",
                ) from exc
            if key not in seen:
                _check_key(key, "metric")
                seen.add(key)
            row = {
                "run_id": run_id,
                "key": key,
                "value": None if value != value else value,  # NaN -> NULL
                "step": step,
                "timestamp": timestamp,
            }
            rows.append(row)
            best = latest.get(key)
            if best is None or (step, timestamp) >= (best["step"], best["timestamp"]):
                latest[key] = row
        return rows, latest

    def _upsert_latest(self, session: Session, rows: list[dict[str, Any]]) -> None:
        table: Table = LatestMetric.__table__  # type: ignore[assignment]
        stmt = self._insert(LatestMetric)
        newer = (stmt.excluded.step > table.c.step) | (
            (stmt.excluded.step == table.c.step) & (stmt.excluded.timestamp >= table.c.timestamp)
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={
                    "value": stmt.excluded.value,
                    "step": stmt.excluded.step,
                    "timestamp": stmt.excluded.timestamp,
                },
                where=newer,
            ),
            rows,
        )

    def _write_params(self, session: Session, run_id: str, params: dict[str, str]) -> None:
        existing = dict(
            session.execute(
                select(Param.key, Param.value).where(Param.run_id == run_id, Param.key.in_(list(params)))
            ).all()
        )
        for key, old in existing.items():
            if old != params[key]:
                raise ConflictError(
                    f"param {key!r} of run {run_id} is already {old!r}; params are write-once (got {params[key]!r})",
                    field="param",
                )
        new = [
            {"run_id": run_id, "key": k, "value": v, "value_num": numeric_value(v)}
            for k, v in params.items()
            if k not in existing
        ]
        if new:
            session.execute(self._insert(Param), new)

    def log_dataset(self, run_id: str, dataset: DatasetInfo, *, context: str = "train", actor: str = "local") -> None:
        """Record that the run used ``dataset`` (identified by content hash and name) as ``context``.

        ``dataset.leakage_report`` is stored with this run's input, not with the shared dataset row; logging the
        same input again with a report replaces it, without one keeps it.
        """
        if not isinstance(context, str) or not context or len(context) > MAX_CONTEXT_LENGTH:
            raise InvalidInputError(
                f"context must be a non-empty string of at most {MAX_CONTEXT_LENGTH} characters, "
                f"got {str(context)[:80]!r}",
                field="context",
            )
        with self.store.write() as session:
            self._require_run(session, run_id)
            stmt = self._insert(Dataset).values(
                digest=dataset.digest,
                name=dataset.name,
                schema=dataset.schema_,
                num_rows=dataset.num_rows,
                source=dataset.source,
                created_at=now_ms(),
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["digest", "name"]))
            dataset_id = session.scalar(
                select(Dataset.id).where(Dataset.digest == dataset.digest, Dataset.name == dataset.name)
            )
            keys = ["run_id", "dataset_id", "context"]
            link = self._insert(RunInput).values(
                run_id=run_id, dataset_id=dataset_id, context=context, leakage_report=dataset.leakage_report
            )
            if dataset.leakage_report is None:
                session.execute(link.on_conflict_do_nothing(index_elements=keys))
            else:
                update_report = {"leakage_report": link.excluded.leakage_report}
                session.execute(link.on_conflict_do_update(index_elements=keys, set_=update_report))

    def log_artifact(self, run_id: str, artifact: ArtifactRef, *, actor: str = "local") -> None:
        """Point the run's logical ``artifact.path`` at a stored blob (re-logging a path replaces it)."""
        from mlpilot.artifacts import safe_name

        path = safe_name(artifact.path)
        with self.store.write() as session:
            self._require_run(session, run_id)
            stmt = self._insert(RunArtifact).values(
                run_id=run_id, path=path, sha256=artifact.sha256, size=artifact.size
            )
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id", "path"],
                    set_={"sha256": stmt.excluded.sha256, "size": stmt.excluded.size},
                )
            )

    # -- reading ---------------------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> m.Run:
        """A run with all its data, including its environment."""
        with self.store.read() as session:
            row = session.execute(_search.info_query().where(Run.id == run_id)).one_or_none()
            if row is None:
                raise NotFoundError(f"run {run_id!r} does not exist", field="run_id")
            return _search.load_runs(session, [_search.info_from_row(row)], with_environment=True)[0]

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every point of metric ``key`` of the run, by step then time (empty if never logged)."""
        with self.store.read() as session:
            self._require_run(session, run_id)
            rows = session.execute(
                select(Metric.step, Metric.timestamp, Metric.value)
                .where(Metric.run_id == run_id, Metric.key == key)
                .order_by(Metric.step, Metric.timestamp, Metric.id)
            )
            return [MetricPoint(step=step, timestamp=ts, value=_search.metric_value(value)) for step, ts, value in rows]

    def search_runs(
        self,
        filter: str | None = None,
        *,
        experiment: str | Iterable[str] | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """Runs matching a filter such as ``metrics.auc > 0.9 and tags.team = 'growth'``, one page at a time.

        ``experiment`` is a name or names (None: every experiment); an unknown name is a NotFoundError.
        ``order_by`` takes clauses like ``["metrics.auc DESC", "attributes.start_time"]``.
        """
        names = [experiment] if isinstance(experiment, str) else list(experiment) if experiment is not None else None
        with self.store.read() as session:
            ids: list[int] | None = None
            if names is not None:
                found = dict(
                    session.execute(select(Experiment.name, Experiment.id).where(Experiment.name.in_(names))).all()
                )
                missing = [n for n in names if n not in found]
                if missing:
                    raise NotFoundError(f"experiment {missing[0]!r} does not exist", field="experiment")
                ids = sorted(found.values())
            return _search.search_runs(
                session,
                self.store.dialect,
                filter_string=filter,
                experiment_ids=ids,
                order_by=order_by,
                max_results=max_results,
                page_token=page_token,
            )
