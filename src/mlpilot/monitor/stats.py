"""Two-sample statistics and their distributions, in pure NumPy (no SciPy at run time).

Everything here works on *weighted sorted samples*: ``values`` strictly increasing, ``weights`` positive. A
raw
sample is the special case of unique values with their counts, so the same code serves exact small-data tests
and compressed reference sketches::

    >>> import numpy as np
    >>> from mlpilot.monitor.stats import ecdf_distances, ks_pvalue
    >>> ks, w1 = ecdf_distances(np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([3.0]), np.array([2.0]))
    >>> ks, w1
    (1.0, 1.5)
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "FloatArray",
    "chi2_contingency",
    "chi2_sf",
    "ecdf_distances",
    "jensen_shannon",
    "kolmogorov_sf",
    "ks_pvalue",
    "normal_ppf",
    "normal_sf",
    "psi",
]

FloatArray = npt.NDArray[np.float64]

# Exact KS p-values cost O((n + m) * band) in Python-level steps; beyond this the asymptotic form is within
# ~2%.
EXACT_KS_MAX_TOTAL = 4000
_STD_NORMAL = NormalDist()


def normal_sf(z: float) -> float:
    """Upper tail of the standard normal distribution."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def normal_ppf(p: float) -> float:
    """Quantile of the standard normal distribution."""
    return _STD_NORMAL.inv_cdf(p)


# --- chi-square --------------------------------------------------------------------------------------------


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    ap = a
    for _ in range(100_000):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    # Modified Lentz evaluation of the continued fraction for Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with ``dof`` degrees of freedom (regularized upper gamma)."""
    if dof <= 0:
        return 1.0
    if x <= 0.0:
        return 1.0
    a = dof / 2.0
    half = x / 2.0
    if half < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, half))
    return min(1.0, _gamma_q_fraction(a, half))


def chi2_contingency(table: FloatArray) -> tuple[float, float, int]:
    """Pearson's chi-square test of homogeneity on a 2 x k table of counts: ``(statistic, p_value, dof)``.

    Columns empty in both rows are dropped. As in SciPy, Yates' continuity correction is applied when there is
    one degree of freedom.
    """
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(rows == 0):
        return 0.0, 1.0, max(table.shape[1] - 1, 0)
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    dof = table.shape[1] - 1
    observed = table
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((observed - expected) ** 2 / expected))
    return stat, chi2_sf(stat, dof), dof


# --- Kolmogorov-Smirnov and Wasserstein ---------------------------------------------------------------------


def ecdf_distances(
    x_values: FloatArray, x_weights: FloatArray, y_values: FloatArray, y_weights: FloatArray
) -> tuple[float, float]:
    """KS statistic ``sup|F_x - F_y|`` and Wasserstein-1 distance ``∫|F_x - F_y|`` of two weighted samples.

    Both inputs are sorted unique values with positive weights. The union is built by merging (no re-sort), so
    the cost is O((n + m) log) of the smaller side plus linear passes.
    """
    if x_values.size == 0 or y_values.size == 0:
        raise ValueError("ecdf_distances needs two non-empty samples")
    pos = np.searchsorted(y_values, x_values, side="left")
    points = np.insert(y_values, pos, x_values)
    fx = np.cumsum(np.insert(np.zeros(y_values.size), pos, x_weights))
    fy = np.cumsum(np.insert(y_weights, pos, np.zeros(x_values.size)))
    fx /= fx[-1]
    fy /= fy[-1]
    gap = np.abs(fx - fy)
    # Inside a run of equal points only the last entry holds both right-continuous CDF values.
    last_of_run = np.empty(points.size, dtype=bool)
    np.not_equal(points[1:], points[:-1], out=last_of_run[:-1])
    last_of_run[-1] = True
    ks = float(gap[last_of_run].max())
    wasserstein = float((gap[:-1] * np.diff(points)).sum())
    return ks, wasserstein


def kolmogorov_sf(lam: float) -> float:
    """Survival function of the limiting Kolmogorov distribution."""
    if lam <= 1e-8:
        return 1.0
    if lam < 1.18:
        y = math.exp(-(math.pi**2) / (8.0 * lam * lam))
        total = sum(y ** (k * k) for k in range(1, 41, 2))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / lam * total))
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-300:
            break
    return min(1.0, max(0.0, 2.0 * total))


def _ks_exact_sf(n: int, m: int, d: float) -> float:
    """P(D >= d) for the two-sided two-sample KS statistic with no ties (lattice-path recursion).

    A uniformly random path of n x-steps and m y-steps; we track the probability of staying strictly inside
    ``|i/n - j/m| < d`` along antidiagonals, so no binomial coefficient ever overflows.
    """
    g = math.gcd(n, m)
    lcm = n // g * m
    h = round(d * lcm)
    if h == 0:
        return 1.0
    a, b = lcm // n, lcm // m  # inside iff |i*a - j*b| < h
    prev = np.zeros(n + 1)
    prev[0] = 1.0
    for s in range(1, n + m + 1):
        remaining = n + m - s + 1
        lo = max(0, s - m, math.floor((s * b - h) / (a + b)) + 1)
        hi = min(s, n, math.ceil((s * b + h) / (a + b)) - 1)
        cur = np.zeros(n + 1)
        if hi >= lo:
            i = np.arange(lo, hi + 1, dtype=np.float64)
            from_x = np.zeros(i.size)
            start = 1 if lo == 0 else 0
            from_x[start:] = prev[lo - 1 + start : hi] * (n - i[start:] + 1.0)
            from_y = prev[lo : hi + 1] * (m - (s - 1 - i))
            cur[lo : hi + 1] = (from_x + from_y) / remaining
        prev = cur
    return float(min(1.0, max(0.0, 1.0 - prev[n])))


def ks_pvalue(d: float, n: int, m: int, *, exact: bool) -> float:
    """Two-sided p-value of a two-sample KS statistic ``d`` for sample sizes ``n`` and ``m``.

    ``exact=True`` uses the exact null distribution (as ``scipy.stats.ks_2samp(method="exact")``); otherwise
    Stephens' corrected Kolmogorov limit with the effective size ``n*m/(n+m)``.
    """
    if n <= 0 or m <= 0:
        return 1.0
    if exact:
        return _ks_exact_sf(n, m, d)
    en = n * m / (n + m)
    root = math.sqrt(en)
    return kolmogorov_sf((root + 0.12 + 0.11 / root) * d)


# --- categorical distances ----------------------------------------------------------------------------------


def jensen_shannon(p: FloatArray, q: FloatArray) -> float:
    """Jensen-Shannon *distance* (square root of the divergence, base 2, so in [0, 1]) of two count
    vectors."""
    p = p / p.sum()
    q = q / q.sum()
    mid = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log2(p / mid), 0.0)
        right = np.where(q > 0, q * np.log2(q / mid), 0.0)
    divergence = max(0.0, float(left.sum() + right.sum()) / 2.0)
    return math.sqrt(divergence)


def psi(expected: FloatArray, actual: FloatArray, *, floor: float = 1e-4) -> float:
    """Population stability index of two count vectors over the same bins; empty bins count as ``floor``."""
    e = np.maximum(expected / expected.sum(), floor)
    a = np.maximum(actual / actual.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))
