"""Alert rules: stored, evaluated on a schedule, fired and resolved with events, webhooks and log lines.

One evaluation reads each rule's value (from a fresh check of its endpoint, or from the model server's
metrics) and moves its state:

- ``ok`` -> ``firing`` when the condition held ``consecutive`` evaluations in a row and the rule's
  ``cooldown_s`` has passed since it last fired: an ``alert.fired`` audit event is written in the same
  transaction as the state change, then the webhook is POSTed (with retries) and a warning logged;
- ``firing`` stays ``firing`` while the condition holds: no new event, no new webhook (de-duplication);
- ``firing`` -> ``ok`` when the condition clears: ``alert.resolved``, webhook, log line;
- a value that cannot be read (no traffic, too few labeled rows) changes nothing.

The state change is a compare-and-set on the rule's row, so two evaluators (the scheduler and an API call,
or two control-plane replicas) never fire the same alert twice.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from mlpilot.errors import AlreadyExistsError, MlpilotError, NotFoundError
from mlpilot.monitor.entities import AlertRule, AlertRuleInfo, AlertTransition, CheckSummary
from mlpilot.monitor.health import HealthReading, HealthScraper
from mlpilot.monitor.webhooks import deliver
from mlpilot.store import now_ms
from mlpilot.store.audit import record_event
from mlpilot.store.schema import MonitorAlertRule

if TYPE_CHECKING:
    from mlpilot.monitor.service import Monitor

__all__ = ["AlertManager", "rule_value"]

logger = logging.getLogger("mlpilot.monitor.alerts")

_OPS = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}


def rule_value(rule: AlertRule, summary: CheckSummary) -> float | None:
    """The quantity a drift or performance rule watches in a check result (None: nothing to judge yet)."""
    if rule.kind == "drift":
        if summary.rows < rule.min_rows:
            return None
        scores = dict(summary.features)
        if summary.prediction is not None:
            scores.setdefault("prediction", summary.prediction)
        if rule.metric == "drift_score":
            found = scores.get(rule.feature or "")
            return None if found is None else found.effect_size
        if rule.feature is not None:
            found = scores.get(rule.feature)
            return None if found is None else float(found.drifted)
        return float(sum(1 for s in scores.values() if s.drifted))
    segment = rule.segment or ""
    metrics = summary.performance.get(segment)
    if metrics is None or summary.performance_rows.get(segment, 0) < max(rule.min_rows, 1):
        return None
    return metrics.get(rule.metric or "")


def _info(row: MonitorAlertRule) -> AlertRuleInfo:
    rule = AlertRule.model_validate(
        {
            **row.spec,
            "name": row.name,
            "endpoint": row.endpoint,
            "kind": row.kind,
            "webhook_url": row.webhook_url,
            "cooldown_s": row.cooldown_s,
            "enabled": row.enabled,
        }
    )
    return AlertRuleInfo(
        rule=rule,
        state="firing" if row.state == "firing" else "ok",
        streak=row.streak,
        value=row.value,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        evaluated_at=row.evaluated_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _describe(rule: AlertRule, value: float | None) -> str:
    what = {
        "drift": f"{rule.metric}{f' of {rule.feature}' if rule.feature else ''}",
        "performance": f"{rule.metric}{f' for {rule.segment}' if rule.segment else ''}",
        "latency_p99": "latency p99 (s)",
        "error_rate": "error rate",
    }[rule.kind]
    shown = "n/a" if value is None else f"{value:.4g}"
    return f"{rule.endpoint}: {what} is {shown} ({rule.op} {rule.threshold:g} fires)"


class AlertManager:
    """Rules and their evaluation; reached as ``monitor.alerts``."""

    def __init__(self, monitor: Monitor, *, retries: int, backoff: float, timeout: float) -> None:
        self.monitor = monitor
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.health = HealthScraper(timeout=timeout)
        self._evaluating = threading.Lock()

    # -- rules -----------------------------------------------------------------------------------------------

    def set_rule(self, rule: AlertRule, *, actor: str = "local", replace: bool = True) -> AlertRuleInfo:
        """Create or (with ``replace``) update a rule; an updated rule keeps its state."""
        store = self.monitor.store
        now = now_ms()
        spec = rule.model_dump(
            mode="json", exclude={"name", "endpoint", "kind", "webhook_url", "cooldown_s", "enabled"}
        )
        try:
            with store.write() as session:
                row = session.scalars(select(MonitorAlertRule).where(MonitorAlertRule.name == rule.name)).one_or_none()
                if row is not None and not replace:
                    raise AlreadyExistsError(f"name: alert {rule.name!r} already exists", field="name")
                if row is None:
                    row = MonitorAlertRule(name=rule.name, created_at=now, state="ok", streak=0)
                    session.add(row)
                row.endpoint = rule.endpoint
                row.kind = rule.kind
                row.spec = spec
                row.webhook_url = rule.webhook_url
                row.cooldown_s = rule.cooldown_s
                row.enabled = rule.enabled
                row.updated_at = now
                row.updated_by = actor
                record_event(
                    session,
                    kind="monitor.alert_set",
                    subject=f"endpoints/{rule.endpoint}",
                    actor=actor,
                    payload=rule.model_dump(mode="json"),
                )
                session.flush()
                return _info(row)
        except SAIntegrityError as exc:
            raise AlreadyExistsError(f"name: alert {rule.name!r} already exists", field="name") from exc

    def get_rule(self, name: str) -> AlertRuleInfo:
        with self.monitor.store.read() as session:
            row = session.scalars(select(MonitorAlertRule).where(MonitorAlertRule.name == name)).one_or_none()
        if row is None:
            raise NotFoundError(f"name: no alert rule {name!r}", field="name")
        return _info(row)

    def list_rules(self, endpoint: str | None = None) -> list[AlertRuleInfo]:
        query = select(MonitorAlertRule).order_by(MonitorAlertRule.name)
        if endpoint is not None:
            query = query.where(MonitorAlertRule.endpoint == endpoint)
        with self.monitor.store.read() as session:
            return [_info(r) for r in session.scalars(query)]

    def delete_rule(self, name: str, *, actor: str = "local") -> None:
        with self.monitor.store.write() as session:
            row = session.scalars(select(MonitorAlertRule).where(MonitorAlertRule.name == name)).one_or_none()
            if row is None:
                raise NotFoundError(f"name: no alert rule {name!r}", field="name")
            record_event(
                session, kind="monitor.alert_deleted", subject=f"endpoints/{row.endpoint}", actor=actor,
                payload={"name": name},
            )  # fmt: skip
            session.delete(row)

    # -- evaluation ------------------------------------------------------------------------------------------

    def evaluate(self, *, run_checks: bool = True, now: int | None = None) -> list[AlertTransition]:
        """Evaluate every enabled rule once; return the rules that fired or resolved (webhooks already sent).

        With ``run_checks`` every monitored endpoint (configured, or watched by a drift or performance rule)
        is checked first, which also refreshes the stored results and the Prometheus gauges; otherwise rules
        read each endpoint's latest stored result.
        """
        with self._evaluating:
            rules = [r.rule for r in self.list_rules() if r.rule.enabled]
            summaries = self._summaries(rules, run_checks)
            # One scrape per (metrics URL, endpoint) per evaluation: readings are differences between scrapes,
            # so a second rule on the same server must see the same reading, not an empty difference.
            readings: dict[tuple[str, str], HealthReading | None] = {}
            transitions: list[AlertTransition] = []
            for rule in rules:
                value, readable = self._read(rule, summaries, readings)
                found = self._transition(rule, value, readable, now or now_ms())
                if found is not None:
                    transitions.append(self._notify(rule, found))
            return transitions

    def _summaries(self, rules: list[AlertRule], run_checks: bool) -> dict[str, CheckSummary]:
        watched = {r.endpoint for r in rules if r.kind in ("drift", "performance")}
        out: dict[str, CheckSummary] = {}
        endpoints = set(watched)
        if run_checks:
            endpoints |= set(self.monitor.list_endpoints())
        for endpoint in sorted(endpoints):
            try:
                out[endpoint] = (
                    self.monitor.check(endpoint, actor="scheduler", reuse_unchanged=True).summary
                    if run_checks
                    else self.monitor.latest_check(endpoint)
                )
            except NotFoundError as exc:
                logger.debug("monitor: nothing to check for %s: %s", endpoint, exc)
            except Exception:
                logger.exception("monitor: the check of %s failed", endpoint)
        return out

    def _read(
        self,
        rule: AlertRule,
        summaries: dict[str, CheckSummary],
        readings: dict[tuple[str, str], HealthReading | None],
    ) -> tuple[float | None, bool]:
        if rule.kind in ("drift", "performance"):
            summary = summaries.get(rule.endpoint)
            value = rule_value(rule, summary) if summary is not None else None
            return value, value is not None and math.isfinite(value)
        assert rule.metrics_url is not None
        key = (rule.metrics_url, rule.endpoint)
        if key not in readings:
            try:
                readings[key] = self.health.read(rule.metrics_url, rule.endpoint)
            except MlpilotError as exc:
                logger.warning("alert %s: %s", rule.name, exc.message)
                readings[key] = None
        reading = readings[key]
        if reading is None:
            return None, False
        value = reading.latency_p99 if rule.kind == "latency_p99" else reading.error_rate
        return value, value is not None

    def _transition(self, rule: AlertRule, value: float | None, readable: bool, now: int) -> AlertTransition | None:
        assert rule.op is not None
        with self.monitor.store.write() as session:
            row = session.scalars(
                select(MonitorAlertRule).where(MonitorAlertRule.name == rule.name).with_for_update()
            ).one_or_none()
            if row is None:
                return None  # deleted while we evaluated
            row.evaluated_at = now
            if not readable:
                return None
            assert value is not None
            row.value = value
            holds = _OPS[rule.op](value, rule.threshold)
            row.streak = row.streak + 1 if holds else 0
            event: str | None = None
            if row.state == "ok" and holds and row.streak >= rule.consecutive:
                cooling = row.fired_at is not None and now - row.fired_at < rule.cooldown_s * 1000
                if cooling:
                    logger.info("alert %s holds but is cooling down since %s", rule.name, row.fired_at)
                else:
                    row.state, row.fired_at, event = "firing", now, "alert.fired"
            elif row.state == "firing" and not holds:
                row.state, row.resolved_at, event = "ok", now, "alert.resolved"
            if event is None:
                return None
            description = _describe(rule, value)
            record_event(
                session,
                kind=event,
                subject=f"endpoints/{rule.endpoint}",
                actor="monitor",
                payload={
                    "alert": rule.name,
                    "kind": rule.kind,
                    "value": value,
                    "threshold": rule.threshold,
                    "op": rule.op,
                    "description": description,
                },
            )
        return AlertTransition(
            event=event,  # type: ignore[arg-type]
            alert=rule.name,
            endpoint=rule.endpoint,
            kind=rule.kind,
            value=value,
            threshold=rule.threshold,
            op=rule.op,
            time=now,
            description=description,
        )

    def _notify(self, rule: AlertRule, transition: AlertTransition) -> AlertTransition:
        verb = "FIRED" if transition.event == "alert.fired" else "resolved"
        log = logger.warning if transition.event == "alert.fired" else logger.info
        log("alert %s %s: %s", rule.name, verb, transition.description)
        if rule.webhook_url is None:
            return transition
        payload: dict[str, Any] = {
            "event": transition.event,
            **transition.model_dump(exclude={"event", "delivered", "attempts"}),
        }
        result = deliver(rule.webhook_url, payload, retries=self.retries, backoff=self.backoff, timeout=self.timeout)
        if not result.delivered:
            logger.error(
                "alert %s: webhook %s not delivered after %d attempt(s): %s",
                rule.name,
                rule.webhook_url,
                result.attempts,
                result.error,
            )
            with self.monitor.store.write() as session:
                record_event(
                    session,
                    kind="alert.webhook_failed",
                    subject=f"endpoints/{rule.endpoint}",
                    actor="monitor",
                    payload={"alert": rule.name, "event": transition.event, "attempts": result.attempts,
                             "error": result.error},
                )  # fmt: skip
        return transition.model_copy(update={"delivered": result.delivered, "attempts": result.attempts})
