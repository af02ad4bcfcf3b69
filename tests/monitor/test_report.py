"""DriftReport outputs: JSON-able dict, a self-contained offline HTML file, a text summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlpilot.monitor import compare


@pytest.fixture
def report_inputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    def table(n: int, seed: int, shift: float) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        region = rng.choice(np.array(["EU", "US", "<b>odd</b>"]), size=n)
        label = rng.integers(0, 2, size=n)
        wrong = rng.uniform(size=n) < np.where(region == "EU", 0.1 + shift, 0.1)
        return {
            "income": rng.lognormal(3 + shift, 0.5, size=n),
            "age": rng.integers(18, 80, size=n).astype(float),
            "region": region,
            "label": label,
            "pred": np.where(wrong, 1 - label, label),
            "proba": np.clip(label * 0.6 + rng.uniform(0, 0.4, size=n), 0, 1),
        }

    return table(4000, 1, 0.0), table(3000, 2, 0.3)


def test_to_dict_is_json_and_complete(
    report_inputs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    ref, cur = report_inputs
    report = compare(ref, cur, segments=["region"], prediction="pred", target="label", score="proba")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["drifted_features"] == report.drifted_features
    assert "income" in data["drifted_features"]
    assert set(data["features"]) == {"income", "age", "region"}
    assert data["prediction"]["feature"] == "pred"
    assert data["performance"]["current"]["roc_auc"]["n"] == 3000
    assert data["config"]["alpha"] == 0.05
    assert all("description" in s for s in data["slices"])


def test_html_is_self_contained_and_escaped(
    report_inputs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], tmp_path: Path
) -> None:
    ref, cur = report_inputs
    report = compare(ref, cur, segments=["region"], prediction="pred", target="label", score="proba")
    path = report.to_html(tmp_path / "drift.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 5  # distributions, drift scores, performance by segment
    assert "<script" not in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # nothing fetched from anywhere
    assert "<b>odd</b>" not in page
    assert "&lt;b&gt;odd&lt;/b&gt;" in page
    for name in ("income", "age", "region", "accuracy by segment"):
        assert name in page


def test_summary_names_drifted_features_and_findings(
    report_inputs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    ref, cur = report_inputs
    report = compare(ref, cur, segments=["region"], prediction="pred", target="label")
    text = report.summary()
    assert "drifted: income" in text
    assert "accuracy fell" in text
    assert "region=EU" in text


def test_from_dict_rebuilds_the_same_report(
    report_inputs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], tmp_path: Path
) -> None:
    from mlpilot.errors import InvalidInputError
    from mlpilot.monitor import DriftReport

    ref, cur = report_inputs
    report = compare(ref, cur, segments=["region"], prediction="pred", target="label", score="proba")
    report.timeline = [{"start": 0, "end": 60_000, "rows": 10, "labeled": 10, "metrics": {"accuracy": 0.9}}]
    stored = json.loads(json.dumps(report.to_dict()))
    again = DriftReport.from_dict(stored)
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(report.to_dict(), sort_keys=True)
    assert [s.describe() for s in again.slices] == [s.describe() for s in report.slices]
    html = again.to_html(tmp_path / "again.html").read_text(encoding="utf-8")
    assert "accuracy over time" in html
    with pytest.raises(InvalidInputError, match="format"):
        DriftReport.from_dict({"format": "something/else"})
    with pytest.raises(InvalidInputError, match="malformed"):
        DriftReport.from_dict({**stored, "features": {"x": {"feature": "x"}}})
