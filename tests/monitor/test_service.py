"""The Monitor service over a real store, artifact store, registry and prediction log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from mlpilot.errors import ConflictError, NotFoundError
from mlpilot.monitor import DriftReport, EndpointConfig, LabelBatch, WindowSpec, profile
from mlpilot.store.audit import list_events
from mlpilot.store.schema import MonitorProfile, MonitorResult
from tests.monitor.conftest import REGIONS, Platform, features, truth


def _drifted_traffic(platform: Platform, n: int = 2000) -> list[str]:
    """Income shifted by 10 (2/3 SD); labels from the true rule, 35% of them wrong for region=EU."""
    cols = features(n, seed=11, income_shift=10.0)
    regions = np.resize(REGIONS, n)
    ids = platform.serve("churn", cols, regions=regions)
    labels = truth(cols, seed=12)
    rng = np.random.default_rng(13)
    flip = (regions == "EU") & (rng.random(n) < 0.35)
    labels = np.where(flip, 1 - labels, labels)
    platform.monitor.log_labels(LabelBatch.from_request_ids(ids, labels))
    return ids


def test_reference_profile_is_computed_once_and_stored_by_digest(platform: Platform) -> None:
    version = platform.register()
    first = platform.monitor.ensure_profile("churn", version)
    again = platform.monitor.ensure_profile("churn", version)
    assert first.computed
    assert not again.computed
    assert first.sha256 == again.sha256
    assert first.subject == "models/churn/1"
    with platform.store.read() as session:
        assert session.scalar(select(func.count()).select_from(MonitorProfile)) == 1
    stored = json.loads(platform.artifacts.get_bytes(first.sha256))
    assert stored["format"] == "mlpilot.profile/1"
    assert stored["prediction"] == "output"  # the model ran on its training sample
    assert set(stored["columns"]) == {"age", "income", "output"}
    assert stored["rows"] == 3000
    # Another endpoint configuration is another profile of the same version; "region" is not in the training
    # sample, so its content (and so its content address) is the same.
    other = platform.monitor.ensure_profile("churn", version, EndpointConfig(segments=["region"]))
    assert other.computed
    assert other.sha256 == first.sha256
    score = platform.monitor.ensure_profile("churn", version, EndpointConfig(label="age"))
    assert score.sha256 != first.sha256  # "age" becomes the target, no longer a feature
    assert json.loads(platform.artifacts.get_bytes(score.sha256))["target"] == "age"


def test_profiles_of_newly_registered_versions_are_computed_by_the_sync(platform: Platform) -> None:
    platform.register()
    platform.register(seed=2)
    made = platform.monitor.sync_profiles()
    assert sorted(p.subject for p in made) == ["models/churn/1", "models/churn/2"]
    assert platform.monitor.sync_profiles() == []  # nothing new since
    platform.register(seed=3)
    assert [p.subject for p in platform.monitor.sync_profiles()] == ["models/churn/3"]


def test_a_version_without_a_training_sample_cannot_be_profiled(platform: Platform) -> None:
    from mlpilot.registry import log_model

    log_model(lambda x: x, "bare", registry=platform.registry, artifacts=platform.artifacts, flavor="pyfunc")
    with pytest.raises(ConflictError, match="training sample"):
        platform.monitor.ensure_profile("bare", 1)
    with pytest.raises(NotFoundError):
        platform.monitor.ensure_profile("bare", 7)


def test_check_names_drifted_features_and_the_segment_whose_accuracy_fell(platform: Platform, tmp_path: Path) -> None:
    platform.register()
    platform.monitor.configure_endpoint("churn", EndpointConfig(segments=["region"]))
    _drifted_traffic(platform)
    result = platform.monitor.check("churn", WindowSpec(last_rows=5000), html=tmp_path / "report.html")
    s = result.summary
    assert s.drifted_features == ["income"]
    assert s.prediction is not None
    assert s.prediction.drifted
    assert s.worst_segment == "region=EU"
    assert s.worst_segment_description is not None
    assert s.worst_segment_description.startswith("accuracy fell")
    assert s.performance["region=EU"]["accuracy"] < s.performance["region=US"]["accuracy"] - 0.2
    assert (s.rows, s.labeled_rows, s.version) == (2000, 2000, 1)
    assert s.id is not None
    assert s.report_sha256 is not None
    # Stored: the latest result, the full report as an artifact that renders again.
    assert platform.monitor.latest_check("churn") == s
    report = DriftReport.from_dict(platform.monitor.check_report("churn"))
    assert report.drifted_features == ["income"]
    assert report.timeline
    assert sum(b["labeled"] for b in report.timeline) == 2000
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "accuracy over time" in html
    assert "region=EU" in html
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html


def test_check_with_labels_in_one_call(platform: Platform, tmp_path: Path) -> None:
    platform.register()
    platform.monitor.configure_endpoint("churn", EndpointConfig(segments=["region"]))
    cols = features(1500, seed=19, income_shift=10.0)
    regions = np.resize(REGIONS, 1500)
    ids = platform.serve("churn", cols, regions=regions)
    labels = np.where((regions == "EU") & (np.arange(1500) % 2 == 0), 1 - truth(cols, 20), truth(cols, 20))
    result = platform.monitor.check(
        "churn", labels=LabelBatch.from_request_ids(ids, labels), html=tmp_path / "demo.html"
    )
    assert (result.drifted_features, result.worst_segment) == (["income"], "region=EU")
    assert result.html_path == tmp_path / "demo.html"
    assert result.html_path.exists()


def test_drift_detected_is_recorded_once_when_drift_appears(platform: Platform) -> None:
    platform.register()
    _drifted_traffic(platform)
    for _ in range(3):
        platform.monitor.check("churn", WindowSpec(last_rows=1000))
    with platform.store.read() as session:
        events = list_events(session, kind="drift.detected")
    assert len(events) == 1
    assert events[0].payload["drifted_features"] == ["income"]


def test_results_are_pruned_to_keep_results(platform: Platform) -> None:
    platform.register()
    platform.serve("churn", features(200, seed=14))
    platform.monitor.keep_results = 2
    ids = [platform.monitor.check("churn").summary.id for _ in range(4)]
    kept = [s.id for s in platform.monitor.list_checks("churn")]
    assert kept == ids[:1:-1]
    with platform.store.read() as session:
        assert session.scalar(select(func.count()).select_from(MonitorResult)) == 2


def test_a_window_without_rows_is_checked_without_a_crash(platform: Platform) -> None:
    platform.register()
    platform.serve("churn", features(50, seed=15))
    result = platform.monitor.check("churn", WindowSpec(since_ms=4_000_000_000_000))
    assert result.summary.rows == 0
    assert result.summary.drifted_features == []
    assert any("empty" in note for note in result.summary.notes)


def test_checking_an_endpoint_without_a_log_is_a_clear_error(platform: Platform) -> None:
    with pytest.raises(NotFoundError, match="no prediction log"):
        platform.monitor.check("ghost")
    with pytest.raises(NotFoundError, match="no monitoring results"):
        platform.monitor.latest_check("ghost")


def test_drift_free_traffic_raises_no_drift(platform: Platform) -> None:
    platform.register()
    cols = features(2000, seed=16)
    ids = platform.serve("churn", cols)
    platform.monitor.log_labels(LabelBatch.from_request_ids(ids, truth(cols, seed=17)))
    s = platform.monitor.check("churn").summary
    assert not s.drifted
    assert s.drifted_features == []
    assert s.worst_segment is None
    assert s.performance[""]["accuracy"] > 0.85


def test_endpoint_configuration_round_trips_and_is_audited(platform: Platform) -> None:
    config = EndpointConfig(segments=["region"], window_rows=500, drift={"alpha": 0.01})
    platform.monitor.configure_endpoint("churn", config, actor="ops")
    assert platform.monitor.endpoint_config("churn") == config
    assert platform.monitor.endpoint_config("other") == EndpointConfig()
    assert "churn" in platform.monitor.list_endpoints()
    with platform.store.read() as session:
        events = list_events(session, kind="monitor.endpoint_configured")
    assert [(e.actor, e.subject) for e in events] == [("ops", "endpoints/churn")]
    platform.monitor.delete_endpoint("churn")
    with pytest.raises(NotFoundError):
        platform.monitor.delete_endpoint("churn")


def test_bad_endpoint_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown drift option"):
        EndpointConfig(drift={"alpah": 0.1})
    with pytest.raises(ValueError, match="alpha"):
        EndpointConfig(drift={"alpha": 3})


def test_dataset_profiles_are_stored_on_demand(platform: Platform) -> None:
    data = features(500, seed=18)
    info = platform.monitor.store_dataset_profile("training-2026", profile(data))
    assert info.subject == "datasets/training-2026"
    back = platform.monitor.dataset_profile("training-2026")
    assert back.rows == 500
    assert set(back.columns) == {"age", "income"}
