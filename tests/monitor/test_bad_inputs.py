"""Bad inputs end in a report with notes, or in a clear InvalidInputError: never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.monitor import compare, profile


def test_empty_window(make_table: Callable[..., dict[str, Any]]) -> None:
    ref = make_table(1000, seed=1, categorical=1)
    empty = {k: v[:0] for k, v in ref.items()}
    report = compare(ref, empty, segments=["c0"])
    assert report.current_rows == 0
    assert not report.drifted
    assert report.drifted_features == []
    assert any("empty" in note for note in report.notes)
    json.dumps(report.to_dict())


def test_empty_pandas_window_and_empty_reference(make_table: Callable[..., dict[str, Any]]) -> None:
    ref = pd.DataFrame(make_table(500, seed=2))
    assert compare(ref, ref.iloc[:0]).drifted_features == []
    report = compare(ref.iloc[:0], ref)
    assert report.drifted_features == []
    assert report.features["x0"].note == "no values in the reference"


def test_all_missing_column_in_the_window_is_a_missing_rate_drift(
    make_table: Callable[..., dict[str, Any]],
) -> None:
    ref, cur = make_table(2000, seed=3), make_table(2000, seed=4)
    cur["x1"] = np.full(2000, np.nan)
    report = compare(ref, cur)
    x1 = report.features["x1"]
    assert (x1.test, x1.missing_reference, x1.missing_current) == ("none", 0.0, 1.0)
    assert x1.missing_drifted
    assert report.drifted_features == ["x1"]


def test_all_missing_column_in_both(make_table: Callable[..., dict[str, Any]]) -> None:
    ref, cur = make_table(500, seed=5), make_table(500, seed=6)
    ref["empty"] = np.full(500, None, dtype=object)
    cur["empty"] = np.full(500, None, dtype=object)
    report = compare(ref, cur)
    assert not report.features["empty"].drifted
    assert not report.features["empty"].missing_drifted


def test_unseen_categories_are_reported_and_tested() -> None:
    rng = np.random.default_rng(7)
    ref = {"c": rng.choice(np.array(["a", "b", "c"]), size=3000)}
    cur = {"c": np.concatenate((rng.choice(np.array(["a", "b", "c"]), size=2500), np.array(["zzz"] * 500)))}
    result = compare(ref, cur).features["c"]
    assert result.new_categories == ["zzz"]
    assert result.drifted
    shares = dict(zip(result.histogram["labels"], result.histogram["current"], strict=True))
    assert shares["zzz"] == pytest.approx(500 / 3000)


def test_constant_columns(make_table: Callable[..., dict[str, Any]]) -> None:
    ref, same, moved = make_table(1000, seed=8), make_table(1000, seed=9), make_table(1000, seed=10)
    ref["k"], same["k"], moved["k"] = np.full(1000, 5.0), np.full(1000, 5.0), np.full(1000, 6.0)
    steady = compare(ref, same).features["k"]
    assert (steady.statistic, steady.effect_size, steady.drifted) == (0.0, 0.0, False)
    jumped = compare(ref, moved)
    assert jumped.features["k"].drifted
    assert jumped.multivariate is not None
    assert "k" not in jumped.multivariate.features  # constant columns stay out of the PCA


def test_column_missing_from_window_and_extra_columns(make_table: Callable[..., dict[str, Any]]) -> None:
    ref, cur = make_table(1000, seed=11), make_table(1000, seed=12)
    del cur["x2"]
    cur["new_col"] = np.arange(1000.0)
    report = compare(ref, cur)
    assert report.features["x2"].note == "column missing from the current window"
    assert "x2" in report.drifted_features
    assert any("new_col" in note for note in report.notes)


def test_selected_feature_missing_from_window_is_reported(make_table: Callable[..., dict[str, Any]]) -> None:
    ref, cur = make_table(500, seed=16), make_table(500, seed=17)
    del cur["x1"]
    report = compare(ref, cur, features=["x0", "x1"])
    assert set(report.features) == {"x0", "x1"}
    assert report.features["x1"].missing_current == 1.0


def test_text_in_a_numeric_column_names_the_column(make_table: Callable[..., dict[str, Any]]) -> None:
    ref, cur = make_table(100, seed=13), make_table(100, seed=14)
    cur["x0"] = np.array(["oops"] * 100)
    with pytest.raises(InvalidInputError, match="x0"):
        compare(ref, cur)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t: compare(t, t, alpha=2.0), "alpha"),
        (lambda t: compare(t, t, no_such_option=1), "no_such_option"),
        (lambda t: compare(t, t, numeric_test="anderson"), "numeric_test"),
        (lambda t: compare(t, t, segments=["region"]), "segments"),
        (lambda t: compare(profile(t), t, segments=["nope"]), "segments"),
        (lambda t: compare(t, t, prediction="nope"), "prediction"),
        (lambda t: compare(t, {"x0": [1.0, 2.0], "x1": [1.0]}), "x1"),
        (lambda t: compare(t, [1, 2, 3]), "table"),
    ],
)
def test_invalid_arguments_raise_invalid_input(
    make_table: Callable[..., dict[str, Any]], call: Callable[[dict[str, Any]], Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        call(make_table(100, seed=15))
    assert info.value.field == field
