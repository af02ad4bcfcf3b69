"""mlpilot monitor: reference profiles, drift tests, performance by segment and a slice finder.

The engine is a library for notebooks and CI as much as for the control plane::

    import mlpilot.monitor as monitor

    ref = monitor.profile(train_df, prediction="pred", target="label", segments=["region", "plan"])
    stored = ref.to_dict()                          # JSON-able, versioned as an artifact later
    report = monitor.compare(monitor.Profile.from_dict(stored), window_df)
    report.drifted_features                         # ['income']
    report.slices[0].describe()                     # 'accuracy fell 12.0 points for region=EU & plan=basic:
    ...'
    report.to_html("drift.html")

On the platform, :class:`Monitor` ties the engine to the registry's training samples, the model server's
prediction log, late labels (:func:`log_labels`), stored results, alert rules and Prometheus gauges::

    monitor = Monitor(store, artifacts, predictions_url="/srv/predictions")
    result = monitor.check("churn", WindowSpec(last_rows=5000), html="churn.html")
    result.drifted_features, result.worst_segment   # (['income'], 'region=EU & plan=basic')

Importing this package is cheap: submodules (and NumPy/PyArrow) load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlpilot.monitor.backend import MonitorBackend, log_labels
    from mlpilot.monitor.drift import DriftConfig, FeatureDrift
    from mlpilot.monitor.engine import compare
    from mlpilot.monitor.entities import AlertRule, AlertRuleInfo, AlertTransition, CheckSummary, EndpointConfig
    from mlpilot.monitor.fdr import benjamini_hochberg
    from mlpilot.monitor.labels import LabelBatch, LabelReceipt
    from mlpilot.monitor.multivariate import MultivariateDrift
    from mlpilot.monitor.performance import MetricValue, PerformanceStats
    from mlpilot.monitor.profiles import Profile, ProfileOptions, profile
    from mlpilot.monitor.report import DriftReport, PerformanceSummary, SegmentDrift
    from mlpilot.monitor.service import CheckResult, Monitor
    from mlpilot.monitor.slices import SliceFinding
    from mlpilot.monitor.windows import Window, WindowSpec

__all__ = [
    "AlertRule",
    "AlertRuleInfo",
    "AlertTransition",
    "CheckResult",
    "CheckSummary",
    "DriftConfig",
    "DriftReport",
    "EndpointConfig",
    "FeatureDrift",
    "LabelBatch",
    "LabelReceipt",
    "MetricValue",
    "Monitor",
    "MonitorBackend",
    "MultivariateDrift",
    "PerformanceStats",
    "PerformanceSummary",
    "Profile",
    "ProfileOptions",
    "SegmentDrift",
    "SliceFinding",
    "Window",
    "WindowSpec",
    "benjamini_hochberg",
    "compare",
    "log_labels",
    "profile",
]

_WHERE = {
    "AlertRule": "entities",
    "AlertRuleInfo": "entities",
    "AlertTransition": "entities",
    "CheckSummary": "entities",
    "EndpointConfig": "entities",
    "CheckResult": "service",
    "Monitor": "service",
    "MonitorBackend": "backend",
    "log_labels": "backend",
    "LabelBatch": "labels",
    "LabelReceipt": "labels",
    "Window": "windows",
    "WindowSpec": "windows",
    "compare": "engine",
    "DriftConfig": "drift",
    "FeatureDrift": "drift",
    "benjamini_hochberg": "fdr",
    "MultivariateDrift": "multivariate",
    "MetricValue": "performance",
    "PerformanceStats": "performance",
    "Profile": "profiles",
    "ProfileOptions": "profiles",
    "profile": "profiles",
    "DriftReport": "report",
    "PerformanceSummary": "report",
    "SegmentDrift": "report",
    "SliceFinding": "slices",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mlpilot.monitor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mlpilot.monitor.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
