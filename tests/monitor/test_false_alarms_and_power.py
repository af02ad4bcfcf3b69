"""False-alarm rate on drift-free windows and detection power on a small planted shift."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpilot.monitor import compare, profile


def _upper(rate: float, trials: int) -> float:
    """A 3-sigma binomial ceiling: an honest procedure at ``rate`` stays under it (flake odds ~1e-3)."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)


def test_false_alarm_rate_within_alpha_on_drift_free_windows(
    make_table: Callable[..., dict[str, Any]],
) -> None:
    reference = profile(make_table(20_000, seed=1, numeric=20, categorical=5))
    windows, alpha = 150, 0.05
    alarms = tests = flagged_tests = 0
    for w in range(windows):
        # effect floors off: this checks the Benjamini-Hochberg procedure alone, the stricter setting
        report = compare(
            reference,
            make_table(2_000, seed=100 + w, numeric=20, categorical=5),
            alpha=alpha,
            numeric_effect_floor=0.0,
            categorical_effect_floor=0.0,
            seed=w,
        )
        alarms += report.drifted
        tests += len(report.features)
        flagged_tests += len(report.drifted_features)
    # Under no drift BH bounds the chance of any alarm in a window (25 features + multivariate) by alpha.
    assert alarms / windows <= _upper(alpha, windows)
    assert flagged_tests / tests <= alpha / 25 * 3


def test_default_floors_give_no_false_alarms_on_large_windows(
    make_table: Callable[..., dict[str, Any]],
) -> None:
    reference = profile(make_table(50_000, seed=2, numeric=20, categorical=5))
    for w in range(5):
        report = compare(reference, make_table(50_000, seed=200 + w, numeric=20, categorical=5), seed=w)
        assert report.drifted_features == []


def test_small_mean_shift_found_in_95_percent_of_windows(make_table: Callable[..., dict[str, Any]]) -> None:
    reference = profile(make_table(50_000, seed=3, numeric=25))
    windows, found, false_positives = 30, 0, 0
    for w in range(windows):
        window = make_table(10_000, seed=300 + w, numeric=25, shift={"x7": 0.1})  # 0.1 SD: N(0, 1) columns
        flagged = compare(reference, window, seed=w).drifted_features
        found += "x7" in flagged
        false_positives += len(set(flagged) - {"x7"})
    assert found / windows >= 0.95
    assert false_positives <= 2


def test_same_data_and_seed_give_the_same_report(make_table: Callable[..., dict[str, Any]]) -> None:
    ref, cur = (
        make_table(3000, seed=4, categorical=2),
        make_table(3000, seed=5, categorical=2, shift={"x0": 0.2}),
    )
    first, second = compare(ref, cur, seed=9).to_dict(), compare(ref, cur, seed=9).to_dict()
    assert first == second
    assert np.isfinite(first["multivariate"]["p_value"])
