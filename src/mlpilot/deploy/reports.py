"""Reading a rollout's statistics back and turning them into a report: the canary decision, the A/B result,
the shadow comparison, and a per-variant summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlpilot.deploy.analysis import Decision, RolloutData, analyze_ab, analyze_canary, shadow_report
from mlpilot.deploy.entities import DeploymentInfo, DeploymentSpec
from mlpilot.deploy.observations import VariantStats
from mlpilot.errors import InvalidInputError
from mlpilot.store.schema import DeploymentRevision, DeploymentStat

__all__ = ["AnalysisReport", "Outcome", "build_report", "parse_outcomes", "rollout_data"]


class Outcome(BaseModel):
    """A label or business outcome for one earlier request.

    Give the ``variant`` that answered (the data plane returns it as ``x-mlpilot-variant``) or the assignment
    ``key`` (the sticky key, else the request id), and either ``value`` (a conversion, revenue, 1/0) or a
    ``prediction`` with its true ``label`` (counted as 1 when they match, for online accuracy).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str | None = Field(default=None, min_length=1, max_length=256)
    variant: str | None = Field(default=None, pattern=r"^v[0-9]{1,9}$")
    value: float | None = Field(default=None, allow_inf_nan=False)
    prediction: Any = None
    label: Any = None

    @model_validator(mode="after")
    def _complete(self) -> Outcome:
        if self.key is None and self.variant is None:
            raise ValueError("give the variant or the assignment key")
        if self.value is None and self.label is None:
            raise ValueError("give a value, or a prediction and its label")
        return self

    def numeric(self) -> float:
        if self.value is not None:
            return self.value
        return 1.0 if str(self.prediction) == str(self.label) else 0.0


def parse_outcomes(records: Sequence[Any], *, field: str = "outcomes") -> list[Outcome]:
    """Outcomes from records read from a file (JSON objects, CSV rows); a bad one names its index and field.

    >>> parse_outcomes([{"key": 42, "value": 1}])[0].key
    '42'
    """
    outcomes = []
    for i, record in enumerate(records):
        if isinstance(record, dict):
            # A CSV cell or a JSON number may hold a key: keys are text.
            record = {k: str(v) if k in ("key", "variant") and v is not None else v for k, v in record.items()}
        try:
            outcomes.append(Outcome.model_validate(record))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join([f"{field}[{i}]", *(str(p) for p in first["loc"])])
            raise InvalidInputError(f"{where}: {first['msg']}", field=where) from exc
    return outcomes


class AnalysisReport(BaseModel):
    """Where a deployment's rollout stands now."""

    model_config = ConfigDict(frozen=True)

    name: str
    revision: int
    strategy: str
    state: str
    action: str
    reason: str
    checks: list[dict[str, Any]]
    variants: dict[str, dict[str, Any]]
    latency_threshold_ms: float | None = None
    ab: dict[str, Any] | None = None
    shadow: dict[str, Any] | None = None


def rollout_data(session: Session, deployment_id: int, spec: DeploymentSpec) -> RolloutData:
    """Sum the current rollout's statistics: in total, in the current step, and per revision (stratum)."""
    rows = session.scalars(
        select(DeploymentStat).where(
            DeploymentStat.deployment_id == deployment_id, DeploymentStat.rollout == spec.rollout
        )
    ).all()
    total: dict[str, VariantStats] = {}
    step: dict[str, VariantStats] = {}
    by_revision: dict[int, dict[str, VariantStats]] = {}
    for r in rows:
        stats = VariantStats.from_dict(r.stats)
        total.setdefault(r.variant, VariantStats()).merge(stats)
        by_revision.setdefault(r.revision, {}).setdefault(r.variant, VariantStats()).merge(stats)
        if r.revision >= spec.step_revision:
            step.setdefault(r.variant, VariantStats()).merge(stats)
    strata: list[tuple[float, dict[str, VariantStats]]] = []
    if by_revision:
        specs = session.execute(
            select(DeploymentRevision.revision, DeploymentRevision.spec).where(
                DeploymentRevision.deployment_id == deployment_id,
                DeploymentRevision.revision.in_(list(by_revision)),
            )
        ).all()
        for revision, raw in sorted(specs, key=lambda t: t[0]):
            at = DeploymentSpec.model_validate(raw)
            share = sum(v.weight for v in at.variants if v.role == "canary") / 100.0
            strata.append((share, by_revision[revision]))
    return RolloutData(total, step, strata)


def _summary(stats: VariantStats) -> dict[str, Any]:
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "rejected": stats.rejected,
        "error_rate": stats.errors / stats.answered if stats.answered else None,
        "p50_ms": stats.quantile_ms(0.5),
        "p99_ms": stats.quantile_ms(0.99),
        "outcomes": stats.outcomes.n,
        "outcome_mean": stats.outcomes.mean if stats.outcomes.n else None,
        "predictions": dict(sorted(stats.prediction_bins.items(), key=lambda kv: -kv[1])[:10]),
    }


def build_report(info: DeploymentInfo, data: RolloutData, *, now_ms: int) -> AnalysisReport:
    """The report for ``info`` over ``data``: canary and paused deployments get the canary decision, A/B
    tests their report, shadows theirs; other states have nothing to decide."""
    spec = info.spec
    ab = shadow = None
    if spec.state in ("canary", "paused"):
        decision = analyze_canary(spec, data, now_ms=now_ms)
    elif spec.state == "ab_testing":
        report = analyze_ab(spec, data)
        decision, ab = report.decision, report.to_dict()
    elif spec.state == "shadowing":
        shadow = shadow_report(spec, data).to_dict()
        decision = Decision("continue", "shadowing: promote or roll back when the report satisfies you")
    elif spec.state == "preview":
        verification = spec.verification
        if verification is None or verification.rollout != spec.rollout:
            why = "blue-green preview: verify the preview route (`mlpilot deploy verify`), then promote"
        elif verification.passed:
            why = f"blue-green preview: v{verification.version} passed its verification: promote when ready"
        else:
            why = f"blue-green preview: {spec.message}"
        decision = Decision("continue", why)
    else:
        decision = Decision("continue", "stable: no rollout under way")
    return AnalysisReport(
        name=info.name,
        revision=info.revision,
        strategy=spec.strategy,
        state=spec.state,
        action=decision.action,
        reason=decision.reason,
        checks=[c.to_dict() for c in decision.checks],
        variants={v.name: {"role": v.role, "weight": v.weight, **_summary(data.of(v))} for v in spec.variants},
        latency_threshold_ms=decision.latency_threshold_ms,
        ab=ab,
        shadow=shadow,
    )
