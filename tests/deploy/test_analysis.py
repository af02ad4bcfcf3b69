"""Canary decisions on planted problems, the low-traffic pause, labels, A/B and shadow reports."""

from __future__ import annotations

import pytest

from mlpilot.deploy import (
    ABConfig,
    AnalysisConfig,
    CanaryConfig,
    Deployments,
    DeploymentSpec,
    Outcome,
    RolloutData,
    Variant,
    VariantStats,
    analyze_canary,
    reconcile,
    shadow_report,
)

from .conftest import FakeClock, traffic

STEPS = CanaryConfig(steps=[20, 50, 100], min_step_seconds=60, min_step_requests=400, max_step_seconds=300)


def _canary(churn: Deployments, clock: FakeClock, **analysis: object) -> None:
    churn.start_canary("churn", 2, canary=STEPS, analysis=AnalysisConfig(**analysis))  # type: ignore[arg-type]
    clock.advance(61)


def test_healthy_canary_is_promoted(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    traffic(churn, "churn", 4000, error_rate={1: 0.01, 2: 0.01})
    report = churn.analyze("churn")
    assert report.action == "promote", report.reason
    assert {c["metric"]: c["status"] for c in report.checks}["error_rate"] in ("pass", "inconclusive")


def test_planted_higher_error_rate_is_rolled_back(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    traffic(churn, "churn", 4000, error_rate={1: 0.01, 2: 0.05})
    outcome = reconcile(churn, "churn")
    assert outcome.action == "rollback"
    assert "error_rate" in outcome.reason
    info = churn.get("churn")
    assert [v.version for v in info.spec.variants] == [1]
    assert churn.history("churn")[-1].actor == "controller"


def test_planted_slower_latency_is_rolled_back(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    traffic(churn, "churn", 4000, latency_ms={1: 5.0, 2: 8.0})
    outcome = reconcile(churn, "churn")
    assert outcome.action == "rollback"
    assert "latency_p99" in outcome.reason


def test_planted_worse_accuracy_is_rolled_back(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock, require_labels=True)
    traffic(churn, "churn", 4000)
    correct = {"v1": 0.90, "v2": 0.80}
    outcomes = [
        Outcome(variant=v, prediction=1, label=1 if i < share * 600 else 0)
        for v, share in correct.items()
        for i in range(600)
    ]
    churn.record_outcomes("churn", outcomes)
    outcome = reconcile(churn, "churn")
    assert outcome.action == "rollback"
    assert "accuracy" in outcome.reason


def test_slightly_different_but_healthy_canaries_are_not_rolled_back(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    traffic(churn, "churn", 4000, error_rate={1: 0.010, 2: 0.0125}, latency_ms={1: 5.0, 2: 5.1})
    assert churn.analyze("churn").action == "promote"


def test_low_traffic_continues_then_pauses_never_promotes(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    traffic(churn, "churn", 1000)  # 200 canary requests of the 400 a step needs
    report = churn.analyze("churn")
    assert report.action == "continue"
    assert "low traffic" in report.reason
    clock.advance(300)
    outcome = reconcile(churn, "churn")
    assert outcome.action == "pause"
    assert churn.get("churn").spec.state == "paused"
    # paused, more traffic does not promote it: a human resumes
    traffic(churn, "churn", 4000)
    assert reconcile(churn, "churn").action == "none"
    churn.resume("churn", reason="traffic is back")
    clock.advance(61)
    traffic(churn, "churn", 4000)
    assert reconcile(churn, "churn").action == "advance"


def test_no_labels_yet_means_continue_when_labels_are_required(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock, require_labels=True)
    traffic(churn, "churn", 4000)
    report = churn.analyze("churn")
    assert report.action == "continue"
    assert "accuracy" in report.reason
    churn.record_outcomes(
        "churn", [Outcome(variant=v, value=1.0 if i % 10 else 0.0) for v in ("v1", "v2") for i in range(300)]
    )
    assert churn.analyze("churn").action == "promote"


def test_a_paused_canary_that_harms_is_still_rolled_back(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    churn.pause("churn", reason="holiday")
    traffic(churn, "churn", 4000, error_rate={2: 0.2})
    assert reconcile(churn, "churn").action == "rollback"


def test_prediction_shift_pauses_by_default(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    traffic(churn, "churn", 4000, positive_rate={1: 0.3, 2: 0.6})
    outcome = reconcile(churn, "churn")
    assert outcome.action == "pause"
    assert "prediction_distribution" in outcome.reason


def test_a_broken_split_pauses(churn: Deployments, clock: FakeClock) -> None:
    _canary(churn, clock)
    stats = {"v1": VariantStats(), "v2": VariantStats()}
    for name, n in (("v1", 2000), ("v2", 2000)):  # 50/50 while the router was told 80/20
        for _ in range(n):
            stats[name].record(status=200, latency_ms=5, predictions=[1])
    info = churn.get("churn")
    churn.record_observations("churn", source="r", revision=info.revision, rollout=info.spec.rollout, variants=stats)
    report = churn.analyze("churn")
    assert report.action == "pause"
    assert "sample ratio" in report.reason


def test_analysis_without_rollout_auto_rollback_pauses_instead() -> None:
    spec = DeploymentSpec(
        model="m",
        strategy="canary",
        state="canary",
        variants=[Variant(version=1, role="primary", weight=50), Variant(version=2, role="canary", weight=50)],
        analysis=AnalysisConfig(auto_rollback=False),
    )
    good, bad = VariantStats(), VariantStats()
    for i in range(1000):
        good.record(status=200, latency_ms=5, predictions=[i % 2])
        bad.record(status=500 if i % 5 == 0 else 200, latency_ms=5, predictions=[i % 2])
    data = RolloutData({"v1": good, "v2": bad}, {"v1": good, "v2": bad}, [(0.5, {"v1": good, "v2": bad})])
    assert analyze_canary(spec, data, now_ms=10**13).action == "pause"


def test_ab_report_names_the_winner_with_effect_and_interval(churn: Deployments) -> None:
    churn.start_ab("churn", 2, ab=ABConfig(split=50, metric="outcome", min_samples=200))
    traffic(churn, "churn", 2000)
    conversions = [Outcome(variant="v1", value=1.0 if i % 10 == 0 else 0.0) for i in range(3000)]
    conversions += [Outcome(variant="v2", value=1.0 if i % 10 < 2 else 0.0) for i in range(3000)]
    churn.record_outcomes("churn", conversions)
    report = churn.analyze("churn")
    assert report.ab is not None
    assert report.ab["winner"] == "v2"
    assert report.ab["confidence"] > 0.95
    assert report.ab["effect_low"] < 0.1 < report.ab["effect_high"]
    assert report.ab["effect"] == pytest.approx(0.1)
    assert report.ab["srm_p_value"] > 0.01
    assert report.action == "continue"  # the winner is for a human to act on


def test_ab_sample_ratio_mismatch_pauses(churn: Deployments) -> None:
    churn.start_ab("churn", 2, ab=ABConfig(split=50))
    info = churn.get("churn")
    stats = {"v1": VariantStats(), "v2": VariantStats()}
    for name, n in (("v1", 3000), ("v2", 2500)):
        for _ in range(n):
            stats[name].record(status=200, latency_ms=5, predictions=[1])
    churn.record_observations("churn", source="r", revision=info.revision, rollout=info.spec.rollout, variants=stats)
    report = churn.analyze("churn")
    assert report.action == "pause"
    assert report.ab is not None
    assert report.ab["srm_p_value"] < 0.001


def test_shadow_report() -> None:
    spec = DeploymentSpec(
        model="m",
        strategy="shadow",
        state="shadowing",
        variants=[Variant(version=1, role="primary", weight=100), Variant(version=2, role="shadow", weight=100)],
    )
    primary, shadow = VariantStats(), VariantStats()
    for i in range(1000):
        primary.record(status=200, latency_ms=4, predictions=[i % 2])
        shadow.record(status=200, latency_ms=9, predictions=[1 if i % 10 == 0 else i % 2])
        shadow.record_pair(agreed=not (i % 10 == 0 and i % 2 == 0))
    report = shadow_report(spec, RolloutData({"v1": primary, "v2": shadow}, {}, []))
    assert report.paired == 1000
    assert report.agreement == pytest.approx(0.9)
    assert report.agreement_low is not None
    assert report.agreement_low < 0.9 < (report.agreement_high or 0)
    assert report.prediction_js is not None
    assert report.prediction_js > 0
    assert report.shadow_p99_ms is not None
    assert report.primary_p99_ms is not None
    assert report.shadow_p99_ms > 2 * report.primary_p99_ms
