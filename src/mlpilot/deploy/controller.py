"""The rollout controller: analyses every active deployment and acts on the decision.

One :func:`reconcile` call is one look: a canary whose step passed advances (or is promoted after its last
step), one that harms is rolled back, one starved of traffic pauses; A/B tests roll back on a failed
guardrail and pause on a sample-ratio mismatch; standbys are released when their retention window ends. Each
action names the revision it judged, so a human acting at the same moment wins and the controller simply
looks again next time.

:class:`Controller` runs it in a background thread of the control plane::

    controller = Controller(services.deployments, interval=1.0).start()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpilot.errors import ConflictError, MlpilotError

if TYPE_CHECKING:
    from mlpilot.deploy.backend import DeploymentsBackend
    from mlpilot.deploy.entities import DeploymentInfo
    from mlpilot.deploy.labels import LabelFeed

__all__ = ["ACTOR", "Controller", "StepOutcome", "reconcile"]

logger = logging.getLogger("mlpilot.deploy")

#: Who the audit trail says acted when the controller did.
ACTOR = "controller"


@dataclass(frozen=True)
class StepOutcome:
    """What one look at a deployment did: ``action`` is ``advance``, ``promote``, ``rollback``, ``pause``,
    ``release_standby`` or ``none``."""

    name: str
    action: str
    reason: str
    revision: int


def reconcile(backend: DeploymentsBackend, name: str) -> StepOutcome:
    """Analyse ``name`` once and apply the decision."""
    info = backend.get(name)
    spec = info.spec
    if spec.state == "stable":
        released = backend.release_standby(name, actor=ACTOR) if spec.standby_until is not None else None
        if released is not None:
            return StepOutcome(name, "release_standby", "retention window ended", released.revision)
        return StepOutcome(name, "none", "stable", info.revision)
    if spec.state not in ("canary", "paused", "ab_testing"):
        return StepOutcome(name, "none", f"{spec.state}: waits for a human", info.revision)
    report = backend.analyze(name)
    if report.revision != info.revision:
        return StepOutcome(name, "none", "changed while it was analysed", report.revision)
    rev = report.revision
    try:
        after: DeploymentInfo
        if report.action == "rollback":
            after = backend.rollback(name, actor=ACTOR, reason=report.reason, if_revision=rev)
            return StepOutcome(name, "rollback", report.reason, after.revision)
        if report.action == "pause" and spec.state != "paused":
            if spec.state == "canary":
                after = backend.pause(name, actor=ACTOR, reason=report.reason, if_revision=rev)
                return StepOutcome(name, "pause", report.reason, after.revision)
            return StepOutcome(name, "none", report.reason, rev)
        if report.action == "promote" and spec.state == "canary":
            after = backend.advance(
                name,
                actor=ACTOR,
                reason=report.reason,
                if_revision=rev,
                latency_threshold_ms=report.latency_threshold_ms,
            )
            action = "promote" if after.spec.state == "stable" else "advance"
            return StepOutcome(name, action, report.reason, after.revision)
    except ConflictError as exc:  # a human (or another controller) changed it first: look again next time
        return StepOutcome(name, "none", f"skipped: {exc.message}", rev)
    return StepOutcome(name, "none", report.reason, rev)


class Controller:
    """Calls :func:`reconcile` for every deployment every ``interval`` seconds in a daemon thread.

    With ``labels`` (a :class:`~mlpilot.deploy.labels.LabelFeed`, on the control plane), each round first turns
    the labels logged through monitoring since the last round into the rollouts' online accuracy, so the
    analysis that follows sees them.
    """

    def __init__(self, backend: DeploymentsBackend, *, interval: float = 1.0, labels: LabelFeed | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.backend = backend
        self.interval = interval
        self.labels = labels
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[StepOutcome]:
        if self.labels is not None:
            try:
                self.labels.sync()
            except Exception:  # labels are one input of the analysis: the guardrails must still be watched
                logger.exception("feeding labels to the rollout analysis failed; retrying next round")
        outcomes = []
        for info in self.backend.list_deployments():
            try:
                outcome = reconcile(self.backend, info.name)
            except MlpilotError as exc:
                logger.error("deployment %s: analysis failed: %s", info.name, exc.message)
                continue
            if outcome.action != "none":
                logger.info("deployment %s: %s (%s)", outcome.name, outcome.action, outcome.reason)
            outcomes.append(outcome)
        return outcomes

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the loop must outlive a bad look (e.g. the database restarting)
                logger.exception("the rollout controller failed; retrying")

    def start(self) -> Controller:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="mlpilot-rollouts", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
