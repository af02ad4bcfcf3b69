"""Every drift test agrees with SciPy's reference implementation on small data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import spatial, stats

from mlpilot.monitor import benjamini_hochberg, compare
from mlpilot.monitor.sketch import NumericSketch
from mlpilot.monitor.stats import chi2_contingency, chi2_sf, ecdf_distances, jensen_shannon, ks_pvalue


def _weighted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sketch = NumericSketch.from_values(x, None)
    return sketch.values, sketch.weights


@pytest.mark.parametrize(
    ("n", "m", "shift", "seed"),
    [
        (5, 7, 0.0, 1),
        (20, 20, 0.5, 2),
        (30, 45, 0.3, 3),
        (100, 37, 0.0, 4),
        (200, 300, 0.2, 5),
        (1000, 1000, 0.1, 6),
    ],
)
def test_ks_exact_matches_scipy(n: int, m: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(shift, size=m)
    expected = stats.ks_2samp(x, y, method="exact")
    d, _ = ecdf_distances(*_weighted(x), *_weighted(y))
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert ks_pvalue(d, n, m, exact=True) == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_ks_statistic_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 6, size=80).astype(float), rng.integers(1, 7, size=60).astype(float)
    d, w = ecdf_distances(*_weighted(x), *_weighted(y))
    assert d == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)
    assert w == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)


@pytest.mark.parametrize(("n", "m", "shift"), [(3000, 5000, 0.0), (8000, 8000, 0.05), (20000, 5000, 0.03)])
def test_ks_asymptotic_close_to_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    x, y = rng.normal(size=n), rng.normal(shift, size=m)
    expected = stats.ks_2samp(x, y, method="asymp")
    d, _ = ecdf_distances(*_weighted(x), *_weighted(y))
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    # Stephens' approximation of the Kolmogorov tail is within a few percent of SciPy's kstwo.
    assert ks_pvalue(d, n, m, exact=False) == pytest.approx(expected.pvalue, rel=0.05, abs=1e-4)


def test_wasserstein_matches_scipy_weighted() -> None:
    rng = np.random.default_rng(11)
    u, v = np.sort(rng.normal(size=50)), np.sort(rng.exponential(size=40))
    uw, vw = rng.uniform(0.5, 3, size=50), rng.uniform(0.5, 3, size=40)
    _, w = ecdf_distances(u, uw, v, vw)
    assert w == pytest.approx(stats.wasserstein_distance(u, v, uw, vw), rel=1e-10)


@pytest.mark.parametrize(
    "table",
    [
        [[30, 20], [25, 35]],  # one degree of freedom: Yates' correction, like SciPy's default
        [[40, 30, 20, 10], [30, 30, 25, 15]],
        [[120, 80, 60, 30, 10], [90, 100, 70, 25, 15]],
    ],
)
def test_chi2_matches_scipy(table: list[list[int]]) -> None:
    expected = stats.chi2_contingency(np.array(table))
    stat, p, dof = chi2_contingency(np.array(table, dtype=float))
    assert stat == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-10)
    assert dof == expected.dof


@pytest.mark.parametrize(
    ("x", "dof"), [(0.5, 1), (3.0, 2), (30.0, 10), (1000.0, 900), (1e-3, 3), (200.0, 50), (5.0, 100)]
)
def test_chi2_sf_matches_scipy(x: float, dof: int) -> None:
    assert chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-10, abs=1e-300)


def test_jensen_shannon_matches_scipy() -> None:
    p, q = np.array([10.0, 20.0, 0.0, 5.0]), np.array([3.0, 25.0, 7.0, 1.0])
    assert jensen_shannon(p, q) == pytest.approx(spatial.distance.jensenshannon(p, q, base=2), rel=1e-12)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(3).uniform(size=40) ** 3
    assert benjamini_hochberg(list(p)) == pytest.approx(list(stats.false_discovery_control(p, method="bh")))


def test_compare_reports_scipy_values_for_small_tables() -> None:
    rng = np.random.default_rng(21)
    ref = {"x": rng.normal(size=150), "c": rng.choice(np.array(list("abc")), size=150, p=[0.5, 0.3, 0.2])}
    cur = {
        "x": rng.normal(0.4, size=120),
        "c": rng.choice(np.array(list("abc")), size=120, p=[0.3, 0.3, 0.4]),
    }
    report = compare(ref, cur, multivariate=False)
    ks = stats.ks_2samp(ref["x"], cur["x"], method="exact")
    x = report.features["x"]
    assert (x.test, x.method) == ("ks", "exact")
    assert x.statistic == pytest.approx(ks.statistic, abs=1e-12)
    assert x.p_value == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-12)
    assert x.effect_size == pytest.approx(stats.wasserstein_distance(ref["x"], cur["x"]) / np.std(ref["x"]))
    labels = ["a", "b", "c"]
    table = [[int(np.sum(t["c"] == v)) for v in labels] for t in (ref, cur)]
    chi = stats.chi2_contingency(np.array(table))
    c = report.features["c"]
    assert c.test == "chi2"
    assert c.statistic == pytest.approx(chi.statistic, rel=1e-12)
    assert c.p_value == pytest.approx(chi.pvalue, rel=1e-10)
    q = stats.false_discovery_control([x.p_value, c.p_value], method="bh")
    assert [x.q_value, c.q_value] == pytest.approx(list(q))


def test_psi_matches_its_definition() -> None:
    from mlpilot.monitor.stats import psi

    expected = (0.6 - 0.5) * np.log(0.6 / 0.5) + (0.4 - 0.5) * np.log(0.4 / 0.5)
    assert psi(np.array([50.0, 50.0]), np.array([60.0, 40.0])) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("options", "numeric_effect", "categorical_effect"),
    [
        ({"numeric_test": "psi", "categorical_test": "psi"}, "psi", "psi"),
        ({"numeric_test": "wasserstein", "categorical_test": "jensen_shannon"}, "wasserstein_sd", "jensen_shannon"),
    ],
)
def test_tests_without_p_value_decide_on_their_threshold(
    options: dict[str, str], numeric_effect: str, categorical_effect: str
) -> None:
    rng = np.random.default_rng(31)
    levels = np.array(list("abcd"))
    ref = {"x": rng.normal(size=5000), "c": rng.choice(levels, size=5000, p=[0.4, 0.3, 0.2, 0.1])}
    same = {"x": rng.normal(size=5000), "c": rng.choice(levels, size=5000, p=[0.4, 0.3, 0.2, 0.1])}
    moved = {"x": rng.normal(0.8, size=5000), "c": rng.choice(levels, size=5000, p=[0.1, 0.2, 0.3, 0.4])}
    steady, drifted = compare(ref, same, **options), compare(ref, moved, **options)
    for report in (steady, drifted):
        assert report.features["x"].p_value is None
        assert report.features["x"].effect_name == numeric_effect
        assert report.features["c"].effect_name == categorical_effect
    assert steady.drifted_features == []
    assert sorted(drifted.drifted_features) == ["c", "x"]
