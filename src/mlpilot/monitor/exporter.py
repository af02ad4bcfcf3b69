"""Prometheus gauges of the latest monitoring results, read from the metadata store at scrape time.

Nothing is kept in process memory, so every control-plane replica exports the same values and a restart loses
nothing. Label values are bounded: endpoints and features are what was configured and served (features capped
at :data:`MAX_FEATURES` per endpoint), segments are the 20 largest of each check, alerts are the stored rules.

====================================================  =====================================================
``mlpilot_feature_drift_score{endpoint,feature}``      effect size of the feature's drift test (Wasserstein
                                                       distance in reference SDs, or Jensen-Shannon distance)
``mlpilot_feature_drifted{endpoint,feature}``          1 when the feature was flagged
``mlpilot_model_performance{endpoint,metric,segment}`` metric on the labeled rows (segment ``all`` overall)
``mlpilot_monitor_multivariate_drift_score{endpoint}`` relative rise of the PCA reconstruction error
``mlpilot_monitor_window_rows{endpoint}``              rows in the checked window (and ``..._labeled_rows``)
``mlpilot_monitor_drifted{endpoint}``                  1 when anything drifted in the latest check
``mlpilot_monitor_last_check_timestamp_seconds``       when the latest check ran
``mlpilot_alert_firing{alert,endpoint}``               1 while the alert is firing
====================================================  =====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlpilot.errors import MlpilotError

if TYPE_CHECKING:
    from mlpilot.monitor.service import Monitor

__all__ = ["CONTENT_TYPE", "MAX_FEATURES", "MonitorCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_FEATURES = 200
logger = logging.getLogger("mlpilot.monitor")


class MonitorCollector:
    """A ``prometheus_client`` custom collector over a :class:`~mlpilot.monitor.service.Monitor`."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Any]:
        return []  # values come from the store at scrape time: nothing to describe at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        drift = GaugeMetricFamily(
            "mlpilot_feature_drift_score", "Effect size of the feature's drift test in the latest check.",
            labels=["endpoint", "feature"],
        )  # fmt: skip
        flagged = GaugeMetricFamily(
            "mlpilot_feature_drifted", "1 when the latest check flagged the feature as drifted.",
            labels=["endpoint", "feature"],
        )  # fmt: skip
        performance = GaugeMetricFamily(
            "mlpilot_model_performance", "Model performance on the labeled rows of the latest check.",
            labels=["endpoint", "metric", "segment"],
        )  # fmt: skip
        multivariate = GaugeMetricFamily(
            "mlpilot_monitor_multivariate_drift_score", "Relative rise of the PCA reconstruction error.",
            labels=["endpoint"],
        )  # fmt: skip
        rows = GaugeMetricFamily(
            "mlpilot_monitor_window_rows", "Rows in the latest checked window.", labels=["endpoint"]
        )
        labeled = GaugeMetricFamily(
            "mlpilot_monitor_window_labeled_rows", "Labeled rows in the latest checked window.", labels=["endpoint"]
        )
        drifted = GaugeMetricFamily(
            "mlpilot_monitor_drifted", "1 when anything drifted in the latest check.", labels=["endpoint"]
        )
        last = GaugeMetricFamily(
            "mlpilot_monitor_last_check_timestamp_seconds", "When the latest check ran.", labels=["endpoint"]
        )
        firing = GaugeMetricFamily("mlpilot_alert_firing", "1 while the alert is firing.", labels=["alert", "endpoint"])
        try:
            summaries = self.monitor.latest_checks()
            rules = self.monitor.alerts.list_rules()
        except MlpilotError as exc:
            logger.error("monitor metrics: cannot read results: %s", exc.message)
            summaries, rules = [], []
        for s in summaries:
            for name, score in list(s.features.items())[:MAX_FEATURES]:
                if score.effect_size is not None:
                    drift.add_metric([s.endpoint, name], score.effect_size)
                flagged.add_metric([s.endpoint, name], float(score.drifted))
            for segment, metrics in s.performance.items():
                for metric, value in metrics.items():
                    performance.add_metric([s.endpoint, metric, segment or "all"], value)
            if s.multivariate is not None and s.multivariate.effect_size is not None:
                multivariate.add_metric([s.endpoint], s.multivariate.effect_size)
            rows.add_metric([s.endpoint], s.rows)
            labeled.add_metric([s.endpoint], s.labeled_rows)
            drifted.add_metric([s.endpoint], float(s.drifted))
            last.add_metric([s.endpoint], s.time / 1000.0)
        for info in rules:
            firing.add_metric([info.rule.name, info.rule.endpoint], float(info.state == "firing"))
        yield from (drift, flagged, performance, multivariate, rows, labeled, drifted, last, firing)


def render_metrics(monitor: Monitor) -> bytes:
    """The Prometheus text exposition of the monitoring gauges (a registry of their own, never the global)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(monitor))  # type: ignore[arg-type]
    return bytes(generate_latest(registry))
