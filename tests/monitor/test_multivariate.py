"""The PCA reconstruction detector sees correlation drift that no univariate test sees."""

from __future__ import annotations

import numpy as np

from mlpilot.monitor import compare, profile


def _correlated(n: int, rho: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    table = {f"x{i}": rng.normal(size=n) for i in range(10)}
    # x0 and x1 keep N(0, 1) marginals whatever rho is: only how they move together changes.
    table["x1"] = rho * table["x0"] + np.sqrt(1 - rho**2) * table["x1"]
    return table


def test_correlation_drift_found_by_multivariate_only() -> None:
    reference = profile(_correlated(20_000, 0.9, seed=1))
    for w in range(3):
        report = compare(reference, _correlated(5_000, 0.0, seed=10 + w), seed=w)
        assert report.drifted_features == []
        assert report.multivariate is not None
        assert report.multivariate.drifted
        assert report.multivariate.effect_size > 0.5
        assert report.drifted


def test_no_multivariate_alarm_when_structure_holds() -> None:
    reference = profile(_correlated(20_000, 0.9, seed=2))
    alarms = 0
    for w in range(10):
        report = compare(reference, _correlated(5_000, 0.9, seed=20 + w), seed=w)
        assert report.multivariate is not None
        alarms += report.multivariate.drifted
    assert alarms == 0


def test_multivariate_skipped_with_a_note_when_too_few_rows() -> None:
    report = compare(_correlated(500, 0.9, seed=3), _correlated(5, 0.9, seed=4))
    assert report.multivariate is not None
    assert not report.multivariate.drifted
    assert "current rows" in report.multivariate.note
