"""The sequential tests keep their level under continuous monitoring and find planted differences.

Each false-positive test simulates many A/A streams, looks at every one after each batch of traffic, and
counts the streams that were *ever* declared significant: with a fixed-sample test this share would be
several times the level; with an always-valid test it stays below it. Streams are seeded, so the figures are
reproducible; the bound allows three Monte Carlo standard errors above the level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpilot.deploy import Moments, compare_means, homogeneity_test, sample_ratio_test

ALPHA = 0.05
STREAMS = 300
LOOKS = 60
BATCH = 200


def _bound(alpha: float, streams: int) -> float:
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / streams)


@pytest.mark.parametrize(("rate", "share"), [(0.01, 0.05), (0.05, 0.25), (0.5, 0.5)])
def test_mean_test_false_positive_rate_under_continuous_monitoring(rate: float, share: float) -> None:
    rng = np.random.default_rng(7)
    ever = 0
    naive = 0  # a fixed-sample z-test consulted at every look, for contrast
    for _ in range(STREAMS):
        n_b = rng.binomial(BATCH, share, LOOKS).cumsum()
        n_a = np.arange(1, LOOKS + 1) * BATCH - n_b
        x_b = rng.binomial(np.diff(n_b, prepend=0), rate).cumsum()
        x_a = rng.binomial(np.diff(n_a, prepend=0), rate).cumsum()
        hit = z_hit = False
        for i in range(LOOKS):
            if min(n_a[i], n_b[i]) < 200:
                continue
            a, b = Moments.bernoulli(float(x_a[i]), float(n_a[i])), Moments.bernoulli(float(x_b[i]), float(n_b[i]))
            result = compare_means(a, b, alpha=ALPHA, bernoulli=True)
            hit = hit or result.significant
            pooled = (a.total + b.total) / (a.n + b.n)
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / a.n + 1 / b.n))
            z_hit = z_hit or abs(b.mean - a.mean) / se > 1.96
        ever += hit
        naive += z_hit
    assert ever / STREAMS <= _bound(ALPHA, STREAMS)
    assert naive / STREAMS > ever / STREAMS  # peeking breaks the fixed-sample test, not this one


def test_confidence_sequence_covers_the_true_difference_at_every_look() -> None:
    rng = np.random.default_rng(11)
    missed = 0
    for _ in range(STREAMS):
        xa = rng.binomial(1, 0.10, LOOKS * BATCH).cumsum()
        xb = rng.binomial(1, 0.13, LOOKS * BATCH).cumsum()
        for i in range(1, LOOKS + 1):
            n = i * BATCH
            r = compare_means(Moments.bernoulli(float(xa[n - 1]), n), Moments.bernoulli(float(xb[n - 1]), n))
            if not r.low <= 0.03 <= r.high:
                missed += 1
                break
    assert missed / STREAMS <= _bound(ALPHA, STREAMS)


def test_planted_differences_are_found() -> None:
    worse = compare_means(Moments.bernoulli(20, 2000), Moments.bernoulli(60, 2000), bernoulli=True)
    assert worse.significant
    assert worse.low > 0
    same = compare_means(Moments.bernoulli(20, 2000), Moments.bernoulli(22, 2000), bernoulli=True)
    assert not same.significant
    assert same.low < 0 < same.high
    # continuous outcomes (revenue per user): B is one standard deviation better
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, 500), rng.normal(12, 2, 500)
    r = compare_means(Moments(500, a.sum(), (a * a).sum()), Moments(500, b.sum(), (b * b).sum()))
    assert r.significant
    assert r.low < 2 < r.high


def test_sample_ratio_and_homogeneity_tests_keep_their_level() -> None:
    rng = np.random.default_rng(5)
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    srm = shift = 0
    for _ in range(STREAMS):
        cand, prim = np.zeros(4), np.zeros(4)
        srm_hit = shift_hit = False
        for _ in range(40):
            bins = rng.multinomial(BATCH, probs)
            c = rng.binomial(bins, 0.2)
            cand += c
            prim += bins - c
            shares = {"c": float(cand.sum()), "p": float(prim.sum())}
            srm_hit = srm_hit or sample_ratio_test(shares, {"c": 20, "p": 80}) <= ALPHA
            strata = [(0.2, dict(enumerate(cand.tolist())), dict(enumerate(prim.tolist())))]
            shift_hit = shift_hit or homogeneity_test(strata) <= ALPHA  # type: ignore[arg-type]
        srm += srm_hit
        shift += shift_hit
    assert srm / STREAMS <= _bound(ALPHA, STREAMS)
    assert shift / STREAMS <= _bound(ALPHA, STREAMS)


def test_sample_ratio_mismatch_and_shift_are_detected() -> None:
    assert sample_ratio_test({"a": 5200, "b": 4800}, {"a": 50, "b": 50}) < 0.01
    assert sample_ratio_test({"a": 5020, "b": 4980}, {"a": 50, "b": 50}) > 0.5
    # the candidate predicts class 1 far more often than the primary, at a 10% split
    shifted = [(0.1, {"0": 100.0, "1": 200.0}, {"0": 1800.0, "1": 900.0})]
    assert homogeneity_test(shifted) < 1e-6
