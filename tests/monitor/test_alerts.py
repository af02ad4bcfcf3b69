"""Alert rules: firing, de-duplication, cooldown, resolution and webhook retries against a real HTTP receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mlpilot.monitor import AlertRule, EndpointConfig, LabelBatch
from mlpilot.monitor.health import histogram_quantile
from mlpilot.store.audit import list_events
from tests.monitor.conftest import REGIONS, T0, Platform, Receiver, features, truth


def _events(platform: Platform, kind: str) -> list[Any]:
    with platform.store.read() as session:
        return list_events(session, kind=kind)


def _drift_then_calm(platform: Platform) -> None:
    """1,000 rows with income shifted, served before 1,000 drift-free rows; windows read the newest 1,000."""
    platform.register()
    platform.monitor.configure_endpoint("churn", EndpointConfig(window_rows=1000))
    platform.serve("churn", features(1000, seed=21, income_shift=12.0), prefix="d")


def _calm(platform: Platform) -> None:
    platform.serve("churn", features(1000, seed=22), prefix="c", start_ms=T0 + 10_000_000)


def test_drift_alert_fires_once_then_resolves_with_webhooks(platform: Platform, receiver: Receiver) -> None:
    _drift_then_calm(platform)
    rule = AlertRule(name="churn-drift", endpoint="churn", kind="drift", threshold=1, webhook_url=receiver.url)
    platform.monitor.alerts.set_rule(rule)
    fired = platform.monitor.alerts.evaluate()
    assert [(t.event, t.alert, t.delivered, t.attempts) for t in fired] == [("alert.fired", "churn-drift", True, 1)]
    assert fired[0].value == 2.0  # income, and the prediction it moved
    assert receiver.received[0]["event"] == "alert.fired"
    assert receiver.received[0]["alert"] == "churn-drift"
    assert receiver.received[0]["endpoint"] == "churn"
    assert platform.monitor.alerts.get_rule("churn-drift").state == "firing"
    # Still drifting: no new event, no new webhook.
    assert platform.monitor.alerts.evaluate() == []
    assert len(receiver.received) == 1
    assert len(_events(platform, "alert.fired")) == 1
    assert len(platform.monitor.list_checks("churn")) == 1  # same rows, same labels: the result was reused
    # The newest window is calm: resolved.
    _calm(platform)
    resolved = platform.monitor.alerts.evaluate()
    assert [t.event for t in resolved] == ["alert.resolved"]
    assert [r["event"] for r in receiver.received] == ["alert.fired", "alert.resolved"]
    events = _events(platform, "alert.resolved")
    assert events[0].subject == "endpoints/churn"
    assert events[0].payload["alert"] == "churn-drift"
    assert platform.monitor.alerts.get_rule("churn-drift").state == "ok"
    assert len(platform.monitor.list_checks("churn")) == 2


def test_cooldown_holds_back_a_new_firing(sqlite_platform: Platform) -> None:
    _drift_then_calm(sqlite_platform)
    sqlite_platform.monitor.alerts.set_rule(
        AlertRule(name="d", endpoint="churn", kind="drift", threshold=1, cooldown_s=600)
    )
    assert len(sqlite_platform.monitor.alerts.evaluate(now=T0)) == 1
    # Resolve by raising the bar past the drifted count, then lower it again while cooling down.
    sqlite_platform.monitor.alerts.set_rule(
        AlertRule(name="d", endpoint="churn", kind="drift", threshold=5, cooldown_s=600)
    )
    assert [t.event for t in sqlite_platform.monitor.alerts.evaluate(now=T0 + 1_000)] == ["alert.resolved"]
    sqlite_platform.monitor.alerts.set_rule(
        AlertRule(name="d", endpoint="churn", kind="drift", threshold=1, cooldown_s=600)
    )
    assert sqlite_platform.monitor.alerts.evaluate(now=T0 + 60_000) == []  # 1 minute after firing: cooling down
    assert [t.event for t in sqlite_platform.monitor.alerts.evaluate(now=T0 + 601_000)] == ["alert.fired"]


def test_webhook_is_retried_until_the_receiver_accepts(platform: Platform, receiver: Receiver) -> None:
    _drift_then_calm(platform)
    receiver.fail[0] = 2
    platform.monitor.alerts.set_rule(
        AlertRule(name="d", endpoint="churn", kind="drift", threshold=1, webhook_url=receiver.url)
    )
    [fired] = platform.monitor.alerts.evaluate()
    assert (fired.delivered, fired.attempts) == (True, 3)
    assert len(receiver.attempts) == 3
    assert len(receiver.received) == 1


def test_undeliverable_webhook_is_recorded(platform: Platform, receiver: Receiver) -> None:
    _drift_then_calm(platform)
    receiver.fail[0] = 100
    platform.monitor.alerts.set_rule(
        AlertRule(name="d", endpoint="churn", kind="drift", threshold=1, webhook_url=receiver.url)
    )
    [fired] = platform.monitor.alerts.evaluate()
    assert (fired.delivered, fired.attempts) == (False, 4)  # the first try and 3 retries
    [failed] = _events(platform, "alert.webhook_failed")
    assert failed.payload["attempts"] == 4
    assert platform.monitor.alerts.get_rule("d").state == "firing"  # the alert itself still fired


def test_segment_performance_rule_needs_enough_labeled_rows(sqlite_platform: Platform) -> None:
    sqlite_platform.register()
    sqlite_platform.monitor.configure_endpoint("churn", EndpointConfig(segments=["region"]))
    n = 900
    cols = features(n, seed=23)
    regions = np.resize(REGIONS, n)
    ids = sqlite_platform.serve("churn", cols, regions=regions)
    labels = truth(cols, seed=24)
    labels = np.where((regions == "EU") & (np.arange(n) % 3 == 0), 1 - labels, labels)
    sqlite_platform.monitor.alerts.set_rule(
        AlertRule(
            name="eu", endpoint="churn", kind="performance", metric="accuracy", segment="region=EU",
            threshold=0.8, min_rows=200,
        )
    )  # fmt: skip
    sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(ids[:300], labels[:300]))  # 100 EU rows: too few
    assert sqlite_platform.monitor.alerts.evaluate() == []
    sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(ids[300:], labels[300:]))
    [fired] = sqlite_platform.monitor.alerts.evaluate()
    assert fired.value is not None
    assert fired.value < 0.8
    assert "accuracy for region=EU" in fired.description


def test_consecutive_evaluations_before_firing(sqlite_platform: Platform) -> None:
    _drift_then_calm(sqlite_platform)
    sqlite_platform.monitor.alerts.set_rule(
        AlertRule(name="d", endpoint="churn", kind="drift", threshold=1, consecutive=2)
    )
    assert sqlite_platform.monitor.alerts.evaluate(run_checks=False) == []  # no stored check yet: nothing to judge
    assert sqlite_platform.monitor.alerts.evaluate() == []
    assert sqlite_platform.monitor.alerts.get_rule("d").streak == 1
    assert [t.event for t in sqlite_platform.monitor.alerts.evaluate()] == ["alert.fired"]


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="metrics_url"):
        AlertRule(name="lat", endpoint="churn", kind="latency_p99", threshold=0.5)
    with pytest.raises(ValueError, match="metric"):
        AlertRule(name="p", endpoint="churn", kind="performance", threshold=0.5)
    with pytest.raises(ValueError, match="feature"):
        AlertRule(name="s", endpoint="churn", kind="drift", metric="drift_score", threshold=0.5)
    with pytest.raises(ValueError, match="webhook_url"):
        AlertRule(name="w", endpoint="churn", kind="drift", threshold=1, webhook_url="ftp://x")
    assert AlertRule(name="e", endpoint="churn", kind="error_rate", threshold=0.1, metrics_url="http://h/m").op == ">"


def test_rules_crud_and_audit(platform: Platform) -> None:
    rule = AlertRule(name="a", endpoint="churn", kind="drift", threshold=2, feature="income")
    info = platform.monitor.alerts.set_rule(rule, actor="ops")
    assert info.rule == rule
    assert info.state == "ok"
    assert [i.rule.name for i in platform.monitor.alerts.list_rules("churn")] == ["a"]
    assert platform.monitor.alerts.list_rules("other") == []
    platform.monitor.alerts.delete_rule("a", actor="ops")
    assert platform.monitor.alerts.list_rules() == []
    assert [e.kind for e in _events(platform, "monitor.alert_set")] == ["monitor.alert_set"]
    assert [e.actor for e in _events(platform, "monitor.alert_deleted")] == ["ops"]


# -- serving health, from the real model server metrics ------------------------------------------------------


@pytest.fixture
def serving_metrics() -> Iterator[tuple[str, Any]]:
    """The model server's metrics registry exposed on a real /metrics endpoint on 127.0.0.1."""
    from mlpilot.serving.metrics import ServingMetrics

    metrics = ServingMetrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.render()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", metrics
    server.shutdown()
    server.server_close()


def test_error_rate_and_latency_rules_read_the_model_server_metrics(
    sqlite_platform: Platform, serving_metrics: tuple[str, Any], receiver: Receiver
) -> None:
    url, metrics = serving_metrics
    churn, other = metrics.for_model("churn", 1), metrics.for_model("other", 1)
    for _ in range(90):
        churn.request("v1", 200, 0.004)
    for _ in range(10):
        churn.request("v1", 500, 0.004)
    for _ in range(50):
        other.request("v1", 500, 2.0)  # another endpoint's trouble is not churn's
    errors = AlertRule(name="errors", endpoint="churn", kind="error_rate", threshold=0.05, metrics_url=url,
                       webhook_url=receiver.url)  # fmt: skip
    latency = AlertRule(name="p99", endpoint="churn", kind="latency_p99", threshold=0.1, metrics_url=url)
    sqlite_platform.monitor.alerts.set_rule(errors)
    sqlite_platform.monitor.alerts.set_rule(latency)
    fired = sqlite_platform.monitor.alerts.evaluate(run_checks=False)
    assert [(t.alert, round(t.value or 0, 3)) for t in fired] == [("errors", 0.1)]
    assert receiver.received[0]["kind"] == "error_rate"
    # Since the last evaluation: only successes, but slow ones.
    for _ in range(100):
        churn.request("v1", 200, 0.4)
    changes = {t.alert: t.event for t in sqlite_platform.monitor.alerts.evaluate(run_checks=False)}
    assert changes == {"errors": "alert.resolved", "p99": "alert.fired"}
    p99 = sqlite_platform.monitor.alerts.get_rule("p99").value
    assert p99 is not None
    assert 0.25 < p99 <= 0.5
    # No traffic since: nothing to judge, nothing changes.
    assert sqlite_platform.monitor.alerts.evaluate(run_checks=False) == []


def test_unreachable_metrics_change_nothing(sqlite_platform: Platform) -> None:
    sqlite_platform.monitor.alerts.set_rule(
        AlertRule(name="e", endpoint="churn", kind="error_rate", threshold=0.0, metrics_url="http://127.0.0.1:9/m")
    )
    assert sqlite_platform.monitor.alerts.evaluate(run_checks=False) == []
    assert sqlite_platform.monitor.alerts.get_rule("e").state == "ok"


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.95)
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1
    assert histogram_quantile(0.5, {float("inf"): 0.0}) is None
