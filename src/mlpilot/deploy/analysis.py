"""Canary analysis, A/B reports and shadow reports from per-variant statistics.

The canary analysis compares the candidate with the primary on four things, each with a sequential test
(:mod:`mlpilot.deploy.sequential`) so that looking at it every second is as safe as looking once:

- **error rate**: the share of the variant's requests answered with a server error (5xx);
- **latency p99**: the share of requests slower than a threshold (the primary's p99 times ``1 +
  latency_tolerance``, frozen for the rollout); a canary whose p99 is worse makes that share grow;
- **online accuracy**, once labels arrive: the share of labelled predictions that were right;
- **prediction distribution**: whether the canary's predictions are distributed like the primary's.

The decision is never blind: with too little traffic or no labels yet, it is *continue* (or *pause* once a
step has waited too long); *rollback* needs significant evidence of harm; *promote* needs the step's minimum
duration and request count and no check failing.

>>> from mlpilot.deploy.observations import VariantStats
>>> spec = DeploymentSpec(model="m", strategy="canary", state="canary", variants=[
...     Variant(version=1, role="primary", weight=95), Variant(version=2, role="canary", weight=5)])
>>> analyze_canary(spec, RolloutData.empty(spec), now_ms=spec.step_started_at).action
'continue'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlpilot.deploy.entities import DeploymentSpec, Variant
from mlpilot.deploy.observations import Moments, VariantStats
from mlpilot.deploy.sequential import SequentialResult, compare_means, homogeneity_test, sample_ratio_test

__all__ = [
    "ABReport",
    "Check",
    "Decision",
    "RolloutData",
    "ShadowReport",
    "analyze_ab",
    "analyze_canary",
    "shadow_report",
]

Action = Literal["promote", "continue", "pause", "rollback"]
Status = Literal["pass", "fail", "inconclusive", "insufficient_data"]
#: SRM is flagged at a stricter level than the metrics: a false alarm stops a healthy test.
SRM_ALPHA = 0.001
#: Failed checks that say something is off without showing the candidate harms: they pause, never roll back.
_NOT_HARM = frozenset({"prediction_distribution", "sample_ratio"})


@dataclass(frozen=True)
class Check:
    """One comparison of the candidate with the primary."""

    metric: str
    status: Status
    detail: str
    primary: float | None = None
    candidate: float | None = None
    test: SequentialResult | None = None
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "status": self.status,
            "detail": self.detail,
            "primary": self.primary,
            "candidate": self.candidate,
            "p_value": self.p_value if self.test is None else self.test.p_value,
            "test": self.test.to_dict() if self.test is not None else None,
        }


@dataclass(frozen=True)
class Decision:
    """What the analysis says to do now, why, and the checks behind it."""

    action: Action
    reason: str
    checks: list[Check] = field(default_factory=list)
    #: the latency threshold the analysis used (ms), to freeze for the rest of the rollout
    latency_threshold_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
            "latency_threshold_ms": self.latency_threshold_ms,
        }


@dataclass
class RolloutData:
    """The statistics of one rollout: summed over it (``total``), over the current step (``step``), and per
    revision with the candidate's share of live traffic at that revision (``strata``)."""

    total: dict[str, VariantStats]
    step: dict[str, VariantStats]
    strata: list[tuple[float, dict[str, VariantStats]]]

    @classmethod
    def empty(cls, spec: DeploymentSpec) -> RolloutData:
        return cls({v.name: VariantStats() for v in spec.variants}, {v.name: VariantStats() for v in spec.variants}, [])

    def of(self, variant: Variant | None, *, step: bool = False) -> VariantStats:
        if variant is None:
            return VariantStats()
        source = self.step if step else self.total
        return source.get(variant.name) or VariantStats()


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}%"


def _worse_check(
    metric: str,
    primary: Moments,
    candidate: Moments,
    *,
    alpha: float,
    min_samples: int,
    margin: float,
    higher_is_worse: bool,
    unit: str = "rate",
) -> Check:
    """Fails when the candidate is significantly worse than the primary by more than ``margin``."""
    if primary.n < min_samples or candidate.n < min_samples:
        return Check(
            metric,
            "insufficient_data",
            f"{int(candidate.n)} candidate and {int(primary.n)} primary {unit}s of {min_samples} needed each",
            primary.mean if primary.n else None,
            candidate.mean if candidate.n else None,
        )
    test = compare_means(primary, candidate, alpha=alpha, bernoulli=True)
    harm = test.low if higher_is_worse else -test.high  # the smallest harm the data allow
    both = f"{_pct(test.mean_b)} vs {_pct(test.mean_a)}"
    if test.significant and harm > margin:
        return Check(metric, "fail", f"candidate worse: {both} (p={test.p_value:.2g})", test.mean_a, test.mean_b, test)
    worst = test.high if higher_is_worse else -test.low
    if worst <= margin:
        return Check(metric, "pass", f"no worse than allowed: {both}", test.mean_a, test.mean_b, test)
    return Check(metric, "inconclusive", f"no evidence of harm yet: {both}", test.mean_a, test.mean_b, test)


def _error_check(spec: DeploymentSpec, primary: VariantStats, cand: VariantStats) -> Check:
    a = spec.analysis
    return _worse_check(
        "error_rate",
        Moments.bernoulli(primary.errors, primary.answered),
        Moments.bernoulli(cand.errors, cand.answered),
        alpha=a.alpha,
        min_samples=a.min_samples,
        margin=a.error_rate_margin,
        higher_is_worse=True,
        unit="request",
    )


def _latency_check(spec: DeploymentSpec, primary: VariantStats, cand: VariantStats) -> tuple[Check, float | None]:
    a = spec.analysis
    threshold = spec.latency_threshold_ms
    if threshold is None:
        p99 = primary.quantile_ms(0.99) if primary.requests >= a.min_samples else None
        if p99 is None:
            n = primary.requests
            return Check("latency_p99", "insufficient_data", f"{n} primary requests of {a.min_samples}"), None
        threshold = p99 * (1.0 + a.latency_tolerance)
    check = _worse_check(
        "latency_p99",
        Moments.bernoulli(primary.slower_than(threshold), primary.requests),
        Moments.bernoulli(cand.slower_than(threshold), cand.requests),
        alpha=a.alpha,
        min_samples=a.min_samples,
        margin=0.0,
        higher_is_worse=True,
        unit="request",
    )
    p_p99, c_p99 = primary.quantile_ms(0.99), cand.quantile_ms(0.99)
    detail = f"p99 {c_p99 or math.nan:.2f} ms vs {p_p99 or math.nan:.2f} ms; slower than {threshold:.2f} ms: "
    return (
        Check("latency_p99", check.status, detail + check.detail, p_p99, c_p99, check.test),
        threshold,
    )


def _accuracy_check(spec: DeploymentSpec, primary: VariantStats, cand: VariantStats) -> Check:
    a = spec.analysis
    check = _worse_check(
        "accuracy",
        primary.outcomes,
        cand.outcomes,
        alpha=a.alpha,
        min_samples=a.min_labels,
        margin=a.accuracy_margin,
        higher_is_worse=False,
        unit="label",
    )
    if check.status == "insufficient_data" and not a.require_labels:
        return Check("accuracy", "insufficient_data", check.detail + " (labels not required)")
    return check


def _shift_check(spec: DeploymentSpec, data: RolloutData, primary: Variant, cand: Variant) -> Check:
    strata = []
    seen = 0
    for share, stats in data.strata:
        c, p = stats.get(cand.name), stats.get(primary.name)
        if c is None or p is None:
            continue
        seen += min(sum(c.prediction_bins.values()), sum(p.prediction_bins.values()))
        strata.append((share, {k: float(v) for k, v in c.prediction_bins.items()}, p.prediction_bins))
    if seen < spec.analysis.min_samples:
        return Check("prediction_distribution", "insufficient_data", f"{seen} predictions per arm compared")
    p_value = homogeneity_test([(s, c, {k: float(v) for k, v in p.items()}) for s, c, p in strata])
    js = _js_divergence(data.of(primary).prediction_bins, data.of(cand).prediction_bins)
    if p_value <= spec.analysis.alpha:
        return Check(
            "prediction_distribution", "fail", f"predictions shifted (JS {js:.3f}, p={p_value:.2g})", p_value=p_value
        )
    return Check("prediction_distribution", "pass", f"no significant shift (JS {js:.3f})", p_value=p_value)


def _ratio_check(spec: DeploymentSpec, data: RolloutData, primary: Variant, cand: Variant) -> Check:
    """Whether each revision's requests were split as the router was told (a broken split voids the rest)."""
    strata = []
    seen = 0
    for share, stats in data.strata:
        c, p = stats.get(cand.name), stats.get(primary.name)
        n_c, n_p = (c.requests if c else 0), (p.requests if p else 0)
        seen += n_c + n_p
        strata.append((share, {"requests": float(n_c)}, {"requests": float(n_p)}))
    if seen < 2 * spec.analysis.min_samples:
        return Check("sample_ratio", "insufficient_data", f"{seen} requests split so far")
    p_value = homogeneity_test(strata)
    c_n, p_n = data.of(cand).requests, data.of(primary).requests
    status: Status = "fail" if p_value <= SRM_ALPHA else "pass"
    detail = f"{c_n} candidate vs {p_n} primary requests (p={p_value:.2g})"
    return Check("sample_ratio", status, detail, p_value=p_value)


def _js_divergence(p: Mapping[str, int], q: Mapping[str, int]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two binned distributions."""
    tp, tq = sum(p.values()), sum(q.values())
    if not tp or not tq:
        return math.nan
    out = 0.0
    for key in set(p) | set(q):
        a, b = p.get(key, 0) / tp, q.get(key, 0) / tq
        m = (a + b) / 2
        out += (a * math.log2(a / m) if a else 0.0) + (b * math.log2(b / m) if b else 0.0)
    return out / 2


def _guardrails(
    spec: DeploymentSpec, data: RolloutData, primary: Variant, cand: Variant
) -> tuple[list[Check], float | None]:
    p, c = data.of(primary), data.of(cand)
    latency, threshold = _latency_check(spec, p, c)
    checks = [_error_check(spec, p, c), latency, _accuracy_check(spec, p, c)]
    return checks, threshold


def _failure(spec: DeploymentSpec, checks: list[Check], threshold: float | None) -> Decision | None:
    """Rollback (or pause) when a guardrail failed, or on a prediction shift when so configured."""
    failed = [c for c in checks if c.status == "fail" and c.metric not in _NOT_HARM]
    if failed:
        action: Action = "rollback" if spec.analysis.auto_rollback else "pause"
        return Decision(action, "; ".join(f"{c.metric}: {c.detail}" for c in failed), checks, threshold)
    shift = next((c for c in checks if c.metric == "prediction_distribution" and c.status == "fail"), None)
    if shift is not None and spec.analysis.on_prediction_shift != "ignore":
        return Decision(
            spec.analysis.on_prediction_shift, f"prediction_distribution: {shift.detail}", checks, threshold
        )
    return None


def analyze_canary(spec: DeploymentSpec, data: RolloutData, *, now_ms: int) -> Decision:
    """The decision for a canary (or a paused canary) now."""
    primary, cand = spec.primary, spec.candidate
    if cand is None or cand.role != "canary":
        return Decision("continue", "no canary to analyse")
    checks, threshold = _guardrails(spec, data, primary, cand)
    ratio = _ratio_check(spec, data, primary, cand)
    checks.append(ratio)
    if ratio.status != "fail":  # with a broken split the distribution test would only see the imbalance
        checks.append(_shift_check(spec, data, primary, cand))
    failure = _failure(spec, checks, threshold)
    if failure is not None:
        return failure
    if ratio.status == "fail":
        return Decision("pause", f"sample ratio mismatch: {ratio.detail}: traffic is not split as configured", checks)
    if spec.state == "paused":
        return Decision("continue", "paused: waiting for a human (resume, promote or rollback)", checks, threshold)
    canary = spec.canary
    elapsed = max(0.0, (now_ms - spec.step_started_at) / 1000.0)
    # A step short of traffic or labels waits this long before asking a human (pause).
    patience = canary.max_step_seconds or max(4 * canary.min_step_seconds, 60.0)
    step_requests = data.of(cand, step=True).answered
    label = f"step {spec.step + 1} of {len(canary.steps) - 1} ({cand.weight:g}%)"
    if elapsed < canary.min_step_seconds:
        return Decision(
            "continue", f"{label}: {elapsed:.0f} s of {canary.min_step_seconds:g} s minimum", checks, threshold
        )
    if step_requests < canary.min_step_requests:
        note = f"{label}: low traffic, {step_requests} of {canary.min_step_requests} canary requests in {elapsed:.0f} s"
        return Decision("pause" if elapsed >= patience else "continue", note, checks, threshold)
    waiting = [c for c in checks if c.status == "insufficient_data" and c.metric != "prediction_distribution"]
    waiting = [c for c in waiting if c.metric != "accuracy" or spec.analysis.require_labels]
    if waiting:
        note = f"{label}: not enough data yet: " + "; ".join(f"{c.metric}: {c.detail}" for c in waiting)
        return Decision("pause" if elapsed >= patience else "continue", note, checks, threshold)
    return Decision("promote", f"{label}: {step_requests} canary requests, no check failed", checks, threshold)


@dataclass(frozen=True)
class ABReport:
    """Where an A/B test stands: the sample-ratio check, the winner (if any) with its confidence, and the
    effect of B over A with its always-valid interval."""

    decision: Decision
    arms: dict[str, dict[str, float]]
    srm_p_value: float | None
    metric: str
    winner: str | None
    confidence: float | None
    effect: float | None
    effect_low: float | None
    effect_high: float | None
    relative_effect: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "arms": self.arms,
            "srm_p_value": self.srm_p_value,
            "metric": self.metric,
            "winner": self.winner,
            "confidence": self.confidence,
            "effect": self.effect,
            "effect_low": self.effect_low,
            "effect_high": self.effect_high,
            "relative_effect": self.relative_effect,
        }


def analyze_ab(spec: DeploymentSpec, data: RolloutData) -> ABReport:
    """The A/B report; the decision rolls back on a failed guardrail, pauses on SRM, else continues (the
    winner is for a human to act on: ``promote`` or ``rollback``)."""
    a_arm, b_arm = spec.primary, spec.candidate
    ab = spec.ab
    if b_arm is None or ab is None:
        raise ValueError("analyze_ab needs an A/B deployment")
    sa, sb = data.of(a_arm), data.of(b_arm)
    arms = {
        a_arm.name: {"requests": sa.requests, "errors": sa.errors, "outcomes": sa.outcomes.n, "mean": sa.outcomes.mean},
        b_arm.name: {"requests": sb.requests, "errors": sb.errors, "outcomes": sb.outcomes.n, "mean": sb.outcomes.mean},
    }
    checks, threshold = _guardrails(spec, data, a_arm, b_arm)
    srm_p: float | None = None
    if sa.requests + sb.requests >= 2 * spec.analysis.min_samples:
        srm_p = sample_ratio_test(
            {"a": float(sa.requests), "b": float(sb.requests)}, {"a": a_arm.weight, "b": b_arm.weight}
        )
        status: Status = "fail" if srm_p <= SRM_ALPHA else "pass"
        checks.append(Check("sample_ratio", status, f"{sb.requests} B vs {sa.requests} A requests", p_value=srm_p))
    metric = "accuracy" if ab.metric == "accuracy" else "outcome"
    winner = confidence = effect = low = high = rel = None
    if sa.outcomes.n >= ab.min_samples and sb.outcomes.n >= ab.min_samples:
        test = compare_means(sa.outcomes, sb.outcomes, alpha=spec.analysis.alpha, bernoulli=metric == "accuracy")
        effect, low, high = test.estimate, test.low, test.high
        rel = effect / abs(test.mean_a) if test.mean_a else None
        confidence = 1.0 - test.p_value
        if test.significant:
            b_better = (effect > 0) == ab.higher_is_better
            winner = b_arm.name if b_better else a_arm.name
    # When B is judged on accuracy, a worse B is the test's answer (A wins), not a guardrail to act on alone.
    guardrails = [c for c in checks if not (c.metric == "accuracy" and metric == "accuracy")]
    failure = _failure(spec, guardrails, threshold)
    if failure is not None:
        decision = failure
    elif srm_p is not None and srm_p <= SRM_ALPHA:
        decision = Decision("pause", f"sample ratio mismatch (p={srm_p:.2g}): assignment is broken", checks, threshold)
    elif winner is not None:
        decision = Decision(
            "continue", f"{winner} wins on {metric} with confidence {confidence:.3f}", checks, threshold
        )
    else:
        n = f"{int(sb.outcomes.n)} B and {int(sa.outcomes.n)} A outcomes"
        decision = Decision("continue", f"no winner yet ({n})", checks, threshold)
    return ABReport(decision, arms, srm_p, metric, winner, confidence, effect, low, high, rel)


@dataclass(frozen=True)
class ShadowReport:
    """How a shadow compares with the primary on the same requests.

    ``mirrored`` counts the mirrored requests the shadow answered; ``skipped`` those that never ran (shed so that
    live traffic went first). Agreement and latency are computed on what ran.
    """

    mirrored: int
    skipped: int
    paired: int
    agreement: float | None
    agreement_low: float | None
    agreement_high: float | None
    prediction_js: float | None
    primary_p50_ms: float | None
    primary_p99_ms: float | None
    shadow_p50_ms: float | None
    shadow_p99_ms: float | None
    shadow_error_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _wilson(successes: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def shadow_report(spec: DeploymentSpec, data: RolloutData) -> ShadowReport:
    """Agreement rate (with a 95% Wilson interval), the prediction distributions' Jensen-Shannon divergence,
    and both sides' latency."""
    shadow = spec.candidate
    sp, ss = data.of(spec.primary), data.of(shadow)
    agreement = ss.agreed / ss.paired if ss.paired else None
    low, high = _wilson(ss.agreed, ss.paired) if ss.paired else (None, None)
    js = _js_divergence(sp.prediction_bins, ss.prediction_bins)
    return ShadowReport(
        mirrored=ss.requests,
        skipped=ss.dropped,
        paired=ss.paired,
        agreement=agreement,
        agreement_low=low,
        agreement_high=high,
        prediction_js=None if math.isnan(js) else js,
        primary_p50_ms=sp.quantile_ms(0.5),
        primary_p99_ms=sp.quantile_ms(0.99),
        shadow_p50_ms=ss.quantile_ms(0.5),
        shadow_p99_ms=ss.quantile_ms(0.99),
        shadow_error_rate=ss.errors / ss.requests if ss.requests else None,
    )
