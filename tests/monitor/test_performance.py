"""Performance metrics against scikit-learn, their intervals, and performance by segment."""

from __future__ import annotations

import numpy as np
import pytest

from mlpilot.monitor import PerformanceStats, compare

metrics = pytest.importorskip("sklearn.metrics")


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    score = np.clip(0.3 * y + rng.uniform(0, 0.7, size=n), 0, 1)
    return y, (score > 0.5).astype(int), score


def test_binary_metrics_match_sklearn() -> None:
    y, pred, score = _binary(2000, seed=1)
    m = PerformanceStats.from_arrays(y, pred, score).metrics()
    assert m["accuracy"].value == pytest.approx(metrics.accuracy_score(y, pred))
    assert m["precision"].value == pytest.approx(metrics.precision_score(y, pred))
    assert m["recall"].value == pytest.approx(metrics.recall_score(y, pred))
    assert m["f1"].value == pytest.approx(metrics.f1_score(y, pred))
    assert m["roc_auc"].value == pytest.approx(metrics.roc_auc_score(y, score))
    assert m["log_loss"].value == pytest.approx(metrics.log_loss(y, score))
    for value in m.values():
        assert value.low <= value.value <= value.high


def test_multiclass_macro_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.choice(np.array(["cat", "dog", "eel"]), size=1500)
    pred = np.where(rng.uniform(size=1500) < 0.7, y, rng.choice(np.array(["cat", "dog", "eel"]), size=1500))
    m = PerformanceStats.from_arrays(y, pred).metrics()
    assert m["accuracy"].value == pytest.approx(metrics.accuracy_score(y, pred))
    for name, fn in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        assert m[name].value == pytest.approx(fn(y, pred, average="macro"))
        assert m[name].low < m[name].value < m[name].high


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(10, 3, size=1000)
    pred = y + rng.normal(0.5, 1, size=1000)
    m = PerformanceStats.from_arrays(y, pred).metrics()
    assert m["mae"].value == pytest.approx(metrics.mean_absolute_error(y, pred))
    assert m["rmse"].value == pytest.approx(np.sqrt(metrics.mean_squared_error(y, pred)))


def test_accuracy_interval_covers_the_truth_about_95_percent() -> None:
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(300):
        y = rng.integers(0, 2, size=200)
        pred = np.where(rng.uniform(size=200) < 0.8, y, 1 - y)  # true accuracy 0.8
        acc = PerformanceStats.from_arrays(y, pred).metrics()["accuracy"]
        covered += acc.low <= 0.8 <= acc.high
    assert 0.90 <= covered / 300 <= 0.99


def test_merged_stats_equal_stats_of_all_rows() -> None:
    y, pred, score = _binary(1000, seed=5)
    whole = PerformanceStats.from_arrays(y, pred, score).metrics()
    merged = (
        PerformanceStats.from_arrays(y[:400], pred[:400], score[:400])
        .merge(PerformanceStats.from_arrays(y[400:], pred[400:], score[400:]))
        .metrics()
    )
    for name in ("accuracy", "precision", "recall", "f1", "log_loss", "roc_auc"):
        assert merged[name].value == pytest.approx(whole[name].value)


def _segmented(n: int, seed: int, drop: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    region = rng.choice(np.array(["EU", "US", "APAC"]), size=n)
    plan = rng.choice(np.array(["basic", "pro"]), size=n, p=[0.6, 0.4])
    label = rng.integers(0, 2, size=n)
    correct = rng.uniform(size=n) < 0.9
    hit = (region == "EU") & (plan == "basic")
    correct[hit] = rng.uniform(size=int(hit.sum())) < 0.9 - drop
    pred = np.where(correct, label, 1 - label)
    return {"x": rng.normal(size=n), "region": region, "plan": plan, "label": label, "pred": pred}


def test_planted_segment_drop_shows_in_performance_and_slice_finder() -> None:
    ref, cur = _segmented(20_000, 6, drop=0.0), _segmented(10_000, 7, drop=0.12)
    report = compare(ref, cur, segments=["region", "plan"], prediction="pred", target="label")
    perf = report.performance
    assert perf is not None
    assert perf.by_segment["region=EU"]["accuracy"].value < perf.by_segment["region=US"]["accuracy"].value - 0.03
    top = next(f for f in report.slices if f.kind == "performance")
    assert top.label == "region=EU & plan=basic"
    assert top.metric == "accuracy"
    assert top.high < 0  # the whole 95% interval of the change is a drop
    assert top.change == pytest.approx(-0.12, abs=0.03)
    assert top.current_rows == int(np.sum((cur["region"] == "EU") & (cur["plan"] == "basic")))
    assert top.describe().startswith("accuracy fell 1")
    assert "region=EU & plan=basic" in top.describe()
    flagged_pairs = {f.label for f in report.slices if f.kind == "performance"}
    assert "region=US & plan=pro" not in flagged_pairs


def test_slice_finder_uses_rest_of_window_without_reference_labels() -> None:
    ref, cur = _segmented(20_000, 8, drop=0.0), _segmented(10_000, 9, drop=0.2)
    del ref["label"], ref["pred"]
    ref["pred"] = cur["pred"][:1].repeat(20_000)
    report = compare(ref, cur, segments=["region", "plan"], prediction="pred", target="label")
    top = next(f for f in report.slices if f.kind == "performance")
    assert (top.label, top.baseline) == ("region=EU & plan=basic", "rest of the window")
    assert top.change < -0.1


def test_slice_finder_reports_input_shift_and_traffic_shift() -> None:
    ref = _segmented(20_000, 10, drop=0.0)
    cur = _segmented(10_000, 11, drop=0.0)
    eu = cur["region"] == "EU"
    cur["x"] = np.where(eu, cur["x"] + 0.8, cur["x"])  # inputs moved for EU only
    more_apac = np.flatnonzero(cur["region"] == "US")[:1500]
    cur["region"][more_apac] = "APAC"  # and APAC traffic grew
    report = compare(ref, cur, segments=["region", "plan"], prediction="pred", target="label")
    distribution = [f for f in report.slices if f.kind == "distribution"]
    eu = {"region=EU", "region=EU & plan=basic", "region=EU & plan=pro"}
    # EU slices rank first; plan slices move too (a third of their rows are EU) but less.
    assert {f.label for f in distribution[:3]} == eu
    assert all(f.label not in {"region=US", "region=APAC"} for f in distribution)
    assert distribution[0].detail == "mean of x"
    assert distribution[0].change == pytest.approx(0.8, abs=0.1)
    traffic = {f.label: f for f in report.slices if f.kind == "traffic"}
    assert traffic["region=APAC"].change > 0.1
    assert traffic["region=US"].change < -0.1
    eu_segment = next(s for s in report.segments if s.label == "region=EU")
    assert eu_segment.drifted_features == ["x"]
