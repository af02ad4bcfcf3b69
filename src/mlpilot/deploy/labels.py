"""Labels logged through monitoring, turned into the online accuracy of a rollout's variants.

Ground truth arrives once, late and in batches, through the monitoring API (``POST /v1/labels``,
``mlpilot.log_labels``, ``mlpilot monitor labels``), keyed by request id or by entity and time; the monitor
stores it next to the prediction log (:mod:`mlpilot.monitor.labels`). The model server logs every routed
prediction under the deployment's name with the version that answered, so a label names its variant without
anyone saying so. :class:`LabelFeed` joins the two for every deployment whose analysis uses labels (a canary,
paused or not, and an A/B test on ``accuracy``) and gives each live variant its share of right predictions
as the rollout's outcomes.

It recomputes instead of adding up: each time, the rollout's labelled predictions are counted again from the
log and the labels (the newest label of a prediction wins) and the result *replaces* the previous one. So a
label posted twice counts once, a corrected label replaces the old verdict, and a feed that missed a round
loses nothing. The work is bounded: only the rollout's predictions are read (the log's version and date
partitions, then its start time), only labels stored since the rollout began (row-group statistics skip older
label segments), and only the counts cross into Python.

The rollout controller drives it: every round it reads the ``monitor.labels_logged`` events (the audit
trail is the outbox) and recomputes the deployments they name, a few per round; every ``resync_seconds`` it
recomputes every deployment that uses labels, in case an event was missed::

    feed = LabelFeed(deployments, monitor)  # doctest: +SKIP
    Controller(deployments, labels=feed).start()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from mlpilot.deploy.observations import Moments
from mlpilot.errors import NotFoundError
from mlpilot.monitor._logfs import LogLocation, quote, sql_string
from mlpilot.monitor.references import main_output
from mlpilot.store.audit import list_events
from mlpilot.store.schema import AuditEvent

if TYPE_CHECKING:
    from mlpilot.deploy.entities import DeploymentSpec
    from mlpilot.deploy.service import Deployments
    from mlpilot.monitor.service import Monitor

__all__ = ["LABELS_EVENT", "LabelCounts", "LabelFeed", "count_correct", "uses_labels"]

logger = logging.getLogger("mlpilot.deploy")

#: The audit event the monitor writes for every stored label batch (subject ``endpoints/<name>``).
LABELS_EVENT = "monitor.labels_logged"
#: Labels may be stored this much earlier than the rollout began by the control plane's clock (several
#: control-plane replicas): only used to skip old label segments, the join itself is exact.
_LABEL_CLOCK_SLACK_MS = 60_000
#: More distinct numeric labels than this means a continuous target, as the monitor infers it.
_MAX_CLASSES = 20


def uses_labels(spec: DeploymentSpec) -> bool:
    """Whether the analysis of ``spec`` reads labels: a canary (also paused) or an A/B test on accuracy."""
    if spec.state in ("canary", "paused"):
        return spec.candidate is not None and spec.candidate.role == "canary"
    return spec.state == "ab_testing" and spec.ab is not None and spec.ab.metric == "accuracy"


@dataclass(frozen=True)
class LabelCounts:
    """The labelled predictions of one version: how many, how many right, and what the labels look like."""

    labeled: int = 0
    correct: int = 0
    #: labels that are text (not numbers or booleans)
    text: int = 0
    #: numeric labels with a fractional part
    fractional: int = 0
    classes: int = 0

    def outcome(self) -> Moments:
        return Moments.bernoulli(float(self.correct), float(self.labeled))


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _output_fields(con: Any, source: str) -> list[str]:
    described = con.execute(f"DESCRIBE SELECT outputs FROM {source}").fetchall()
    if not described or not str(described[0][1]).startswith("STRUCT("):
        return []
    return [str(d[0]) for d in con.execute(f"SELECT outputs.* FROM {source} LIMIT 0").description]


def count_correct(
    location: LogLocation, endpoint: str, version: int, prediction: str, *, since_ms: int
) -> LabelCounts | None:
    """Count ``version``'s predictions on ``endpoint`` made at or after ``since_ms`` that have a label, and how
    many of them were right; None when the version logged no ``prediction`` output.

    A prediction is right when it equals its label as a number (``1``, ``1.0`` and ``True`` are the same) or
    else as text, the way the monitor compares classes.
    """
    version_dir = f"{location.endpoint_dir(endpoint)}/version={int(version)}"
    if not location.has_segments(version_dir) or not location.has_segments(location.labels_dir(endpoint)):
        return LabelCounts()
    glob = sql_string(location.endpoint_glob(endpoint, version))
    log = f"read_parquet({glob}, hive_partitioning = true, union_by_name = true)"
    labels = f"read_parquet({sql_string(location.labels_glob(endpoint))}, union_by_name = true)"
    row = quote("row")
    since_ns = (since_ms - _LABEL_CLOCK_SLACK_MS) * 1_000_000
    right = (
        "coalesce(TRY_CAST(pred AS DOUBLE) = coalesce(label_value, TRY_CAST(label AS DOUBLE)), "
        "CAST(pred AS VARCHAR) = label)"
    )
    with location.query() as con:
        if prediction not in _output_fields(con, log):
            return None
        sql = (
            f"WITH p AS (SELECT request_id, {row}, outputs.{quote(prediction)} AS pred FROM {log} "
            f"WHERE date >= DATE {sql_string(_day(since_ms))} "
            f"AND time >= make_timestamptz({int(since_ms) * 1000}::BIGINT)), "
            f"l AS (SELECT request_id, {row}, arg_max(label, labeled_at) AS label, "
            f"arg_max(label_value, labeled_at) AS label_value FROM {labels} "
            f"WHERE labeled_at >= {int(since_ns)} GROUP BY ALL), "
            f"j AS (SELECT p.pred, l.label, l.label_value FROM p JOIN l USING (request_id, {row}) "
            f"WHERE p.pred IS NOT NULL) "
            f"SELECT count(*), count(*) FILTER (WHERE {right}), count(*) FILTER (WHERE label_value IS NULL), "
            f"count(*) FILTER (WHERE label_value <> round(label_value)), count(DISTINCT label) FROM j"
        )
        found = con.execute(sql).fetchone()
    if found is None:
        return LabelCounts()
    labeled, correct, text, fractional, classes = (int(x or 0) for x in found)
    return LabelCounts(labeled, correct, text, fractional, classes)


def _continuous(counts: list[LabelCounts]) -> bool:
    """Numeric labels that are not classes (fractions, or many distinct values): nothing to be right about."""
    labeled = sum(c.labeled for c in counts)
    if not labeled or any(c.text for c in counts):
        return False
    return any(c.fractional for c in counts) or max(c.classes for c in counts) > _MAX_CLASSES


class LabelFeed:
    """Feeds labels logged through ``monitor`` into the rollout analysis of ``deployments`` (see the module
    docstring); :meth:`sync` is one round, called by the :class:`~mlpilot.deploy.controller.Controller`.

    ``max_per_round`` bounds the deployments recomputed per round (the rest wait for the next one);
    ``resync_seconds`` is how often every deployment that uses labels is recomputed whether or not an event
    named it.
    """

    def __init__(
        self,
        deployments: Deployments,
        monitor: Monitor,
        *,
        max_per_round: int = 4,
        resync_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_per_round < 1:
            raise ValueError("max_per_round must be at least 1")
        self.deployments = deployments
        self.monitor = monitor
        self.max_per_round = max_per_round
        self.resync_seconds = resync_seconds
        self.clock = clock
        #: the id of the last ``monitor.labels_logged`` event read
        self.cursor: int | None = None
        self._dirty: dict[str, None] = {}
        self._next_resync = 0.0

    def _collect(self) -> None:
        store = self.deployments.store
        now = self.clock()
        with store.read() as session:
            if self.cursor is None:
                last = session.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.kind == LABELS_EVENT))
                self.cursor = int(last or 0)
            events = list_events(session, kind=LABELS_EVENT, after_id=self.cursor, limit=1000)
        if events:
            self.cursor = events[-1].id
        resync = now >= self._next_resync
        if not events and not resync:
            return
        if resync:
            self._next_resync = now + self.resync_seconds
        named = {event.subject.removeprefix("endpoints/") for event in events}
        # Labels of endpoints that are not deployments using labels take no slot of a round.
        for info in self.deployments.list_deployments():
            if uses_labels(info.spec) and (resync or info.name in named):
                self._dirty.setdefault(info.name, None)

    def sync(self) -> dict[str, dict[str, Moments]]:
        """One round: note the label batches stored since the last round, and recompute up to
        ``max_per_round`` of the deployments they name; returns what was recorded, by deployment."""
        self._collect()
        done: dict[str, dict[str, Moments]] = {}
        for name in list(self._dirty)[: self.max_per_round]:
            del self._dirty[name]
            try:
                recorded = self.recompute(name)
            except NotFoundError:
                continue  # labels of an endpoint that is not a deployment (or no longer is)
            except Exception:  # one unreadable log must not starve the others; the resync retries it
                logger.exception("deployment %s: feeding labels to the analysis failed", name)
                continue
            if recorded is not None:
                done[name] = recorded
        return done

    def pending(self) -> list[str]:
        """Deployments waiting for a recomputation."""
        return list(self._dirty)

    def recompute(self, name: str) -> dict[str, Moments] | None:
        """Count the labelled predictions of ``name``'s current rollout per live variant and record them; None
        when its analysis does not use labels (or it moved to another rollout meanwhile)."""
        info = self.deployments.get(name)
        spec = info.spec
        if not uses_labels(spec) or spec.base_revision is None:
            return None
        first = self.deployments.history(name, after_revision=spec.base_revision, limit=1)
        if not first:
            return None
        since_ms = first[0].time
        config = self.monitor.endpoint_config(name)
        if config.task == "regression":
            return None
        counts: dict[str, LabelCounts] = {}
        for variant in spec.variants:
            if variant.role not in ("primary", "canary"):
                continue
            column = config.prediction or self._prediction_column(spec.model, variant.version)
            found = count_correct(self.monitor.location, name, variant.version, column, since_ms=since_ms)
            if found is None:
                logger.warning(
                    "deployment %s: v%s logs no output %r: its labels cannot be scored", name, variant.version, column
                )
                continue
            counts[variant.name] = found
        if config.task is None and _continuous(list(counts.values())):
            logger.info("deployment %s: labels are continuous (regression): no online accuracy from them", name)
            return None
        outcomes = {variant: c.outcome() for variant, c in counts.items()}
        if not self.deployments.set_label_outcomes(name, rollout=spec.rollout, outcomes=outcomes):
            return None
        return outcomes

    def _prediction_column(self, model: str, version: int) -> str:
        signature = self.deployments.registry.get_model_version(model, version).signature
        return main_output(signature.model_dump(mode="json") if signature is not None else None)
