"""Sequential tests that stay valid when looked at continuously, in pure Python.

A canary is watched all the time: a fixed-sample test consulted after every batch of requests would cry wolf
far more often than its level says. Every test here is a *test martingale* under its null hypothesis (a
likelihood ratio mixed over an alternative), so by Ville's inequality the chance that it *ever* crosses
``1/alpha`` is at most ``alpha``, however often and whenever it is looked at:

- :func:`compare_means`: the mixture sequential probability ratio test (mSPRT) of Johari et al. (2017,
  "Always valid inference") on the difference of two means, with a normal mixing distribution; it also gives
  the matching confidence sequence (Robbins' normal mixture), an interval valid at all times at once.
  Proportions (error rates, accuracy, share of slow requests) are the Bernoulli case.
- :func:`sample_ratio_test`: the Dirichlet-multinomial Bayes factor of Lindon & Malek (2022, "Anytime-valid
  inference for multinomial count data") against the traffic split the router was told to make.
- :func:`homogeneity_test`: whether two arms' prediction distributions differ, as a product over prediction
  bins of beta-binomial Bayes factors on the share of each bin that went to the candidate (under the null,
  that share is the traffic split in every bin).

>>> a, b = Moments.bernoulli(10, 1000), Moments.bernoulli(60, 1000)
>>> r = compare_means(a, b, alpha=0.05, bernoulli=True)
>>> r.significant, round(r.estimate, 3)
(True, 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlpilot.deploy.observations import Moments

__all__ = ["SequentialResult", "compare_means", "homogeneity_test", "sample_ratio_test"]

#: Mixing scale of the mSPRT in units of the per-observation standard deviation: it is most powerful
#: against effects of about this many standard deviations (0.1 sd is a 1-point change of a 1% error rate).
DEFAULT_TAU = 0.1
#: Prior concentration of the Dirichlet/beta mixtures: larger looks for smaller imbalances.
DEFAULT_CONCENTRATION = 100.0
_MAX_LOG = 700.0


@dataclass(frozen=True)
class SequentialResult:
    """A comparison of arm B against arm A at one look.

    ``estimate`` is B's mean minus A's, ``low``/``high`` the confidence sequence at level ``alpha`` (it holds
    at every look at once), ``p_value`` the always-valid p-value at this look (``1 / likelihood ratio``).
    """

    estimate: float
    low: float
    high: float
    p_value: float
    alpha: float
    mean_a: float
    mean_b: float
    n_a: float
    n_b: float

    @property
    def significant(self) -> bool:
        return self.p_value <= self.alpha

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "significant": self.significant,
        }


def _bernoulli_var(m: Moments) -> float:
    # Shrunk towards 1/2 (Agresti-Coull style) so that an arm with no errors yet does not claim zero variance.
    p = (m.total + 1.0) / (m.n + 2.0)
    return p * (1.0 - p)


def compare_means(
    a: Moments,
    b: Moments,
    *,
    alpha: float = 0.05,
    bernoulli: bool = False,
    tau: float = DEFAULT_TAU,
) -> SequentialResult:
    """mSPRT of "both arms have the same mean" with its confidence sequence for ``mean(b) - mean(a)``.

    The test uses the variance pooled under the null (for proportions, of the pooled rate); the confidence
    sequence the unpooled variances. ``tau`` scales the normal mixing distribution in standard deviations.
    """
    if a.n <= 0 or b.n <= 0:
        raise ValueError("both arms need at least one observation")
    delta = b.mean - a.mean
    if bernoulli:
        pooled = _bernoulli_var(a + b)
        var_a, var_b = _bernoulli_var(a), _bernoulli_var(b)
    else:
        pooled = (a + b).variance
        var_a, var_b = a.variance, b.variance
    # A floor keeps a constant metric (zero variance) from producing an infinite statistic.
    floor = 1e-12 + 1e-9 * max(abs(a.mean), abs(b.mean)) ** 2
    pooled, var_a, var_b = max(pooled, floor), max(var_a, floor), max(var_b, floor)
    inv_n = 1.0 / a.n + 1.0 / b.n
    tau2 = (tau * math.sqrt(pooled)) ** 2
    v0 = pooled * inv_n
    log_lr = 0.5 * math.log(v0 / (v0 + tau2)) + delta**2 * tau2 / (2.0 * v0 * (v0 + tau2))
    p_value = 1.0 if log_lr <= 0 else math.exp(-min(log_lr, _MAX_LOG))
    v1 = var_a / a.n + var_b / b.n
    radius = math.sqrt(2.0 * v1 * (v1 + tau2) / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log((v1 + tau2) / v1)))
    return SequentialResult(
        estimate=delta,
        low=delta - radius,
        high=delta + radius,
        p_value=min(1.0, p_value),
        alpha=alpha,
        mean_a=a.mean,
        mean_b=b.mean,
        n_a=a.n,
        n_b=b.n,
    )


def _log_dirichlet_bf(counts: Sequence[float], probs: Sequence[float], concentration: float) -> float:
    """log Bayes factor of a Dirichlet(concentration * probs) mixture against the multinomial ``probs``."""
    alphas = [concentration * p for p in probs]
    n = sum(counts)
    log_bf = math.lgamma(sum(alphas)) - math.lgamma(sum(alphas) + n)
    for x, a, p in zip(counts, alphas, probs, strict=True):
        if p <= 0:
            if x > 0:
                return math.inf  # a count where none may fall: impossible under the null
            continue
        log_bf += math.lgamma(a + x) - math.lgamma(a) - x * math.log(p)
    return log_bf


def _p_from_log_bf(log_bf: float) -> float:
    return 1.0 if log_bf <= 0 else math.exp(-min(log_bf, _MAX_LOG))


def sample_ratio_test(
    counts: Mapping[str, float], expected: Mapping[str, float], *, concentration: float = DEFAULT_CONCENTRATION
) -> float:
    """Always-valid p-value that ``counts`` were drawn with the ``expected`` shares (sample-ratio mismatch).

    >>> round(sample_ratio_test({"a": 5000, "b": 5000}, {"a": 50, "b": 50}), 2)
    1.0
    >>> sample_ratio_test({"a": 5400, "b": 4600}, {"a": 50, "b": 50}) < 1e-6
    True
    """
    total = sum(expected.values())
    if total <= 0:
        raise ValueError("expected shares must add up to more than zero")
    keys = list(expected)
    probs = [expected[k] / total for k in keys]
    return _p_from_log_bf(_log_dirichlet_bf([counts.get(k, 0.0) for k in keys], probs, concentration))


def homogeneity_test(
    strata: Sequence[tuple[float, Mapping[str, float], Mapping[str, float]]],
    *,
    concentration: float = DEFAULT_CONCENTRATION,
) -> float:
    """Always-valid p-value that the candidate's predictions follow the primary's distribution.

    ``strata`` holds one ``(candidate_share, candidate_bins, primary_bins)`` per traffic split (each canary
    step routes a different share): under the null, each bin's requests went to the candidate with
    probability ``candidate_share``, independently of the bin. The product of the bins' beta-binomial Bayes
    factors is a test martingale, and so is the product across strata observed one after the other.
    """
    log_bf = 0.0
    for share, cand, prim in strata:
        if not 0 < share < 1:
            continue
        for key in set(cand) | set(prim):
            counts = (cand.get(key, 0.0), prim.get(key, 0.0))
            if counts[0] + counts[1] > 0:
                log_bf += _log_dirichlet_bf(counts, (share, 1.0 - share), concentration)
    return _p_from_log_bf(log_bf)
