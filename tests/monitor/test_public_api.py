"""The monitor package's public names are pinned, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import mlpilot.monitor as monitor

EXPECTED = {
    "AlertRule",
    "AlertRuleInfo",
    "AlertTransition",
    "CheckResult",
    "CheckSummary",
    "EndpointConfig",
    "LabelBatch",
    "LabelReceipt",
    "Monitor",
    "MonitorBackend",
    "Window",
    "WindowSpec",
    "log_labels",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "MetricValue",
    "MultivariateDrift",
    "PerformanceStats",
    "PerformanceSummary",
    "Profile",
    "ProfileOptions",
    "SegmentDrift",
    "SliceFinding",
    "benjamini_hochberg",
    "compare",
    "profile",
}


def test_exported_names_are_pinned_and_resolve() -> None:
    assert set(monitor.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(monitor, name) is not None
    assert callable(monitor.compare)
    assert callable(monitor.profile)


def test_import_does_not_load_numpy_or_pyarrow() -> None:
    code = (
        "import sys, mlpilot; before = set(sys.modules); import mlpilot.monitor; "
        "print(sorted(m for m in ('numpy', 'pyarrow') if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
