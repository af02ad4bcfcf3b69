"""End to end with the real model server: requests with segments, its prediction log, labels by the
``x-request-id`` it answered, a check naming the segment whose accuracy fell, and health rules on its /metrics."""

from __future__ import annotations

import numpy as np

from mlpilot.monitor import AlertRule, EndpointConfig, LabelBatch
from tests.monitor.conftest import Platform, features, truth


def test_monitoring_a_running_model_server(sqlite_platform: Platform) -> None:
    from mlpilot.serving import RegistrySource
    from mlpilot.serving.testing import serve_in_thread

    platform = sqlite_platform
    platform.register()
    platform.monitor.configure_endpoint("churn", EndpointConfig(segments=["region", "plan"]))
    source = RegistrySource(platform.registry, platform.artifacts)
    n = 240
    cols = features(n, seed=51)
    regions = np.resize(np.array(["EU", "US"]), n)
    plans = np.resize(np.array(["basic", "basic", "pro", "pro"]), n)
    request_ids: list[str] = []
    with serve_in_thread(source, ["churn@latest"], log_url=platform.log_url) as running:
        client = running.client()
        try:
            for i in range(n):
                answer = client.predict(
                    "churn",
                    [{"age": float(cols["age"][i]), "income": float(cols["income"][i])}],
                    entity_id=f"user-{i}",
                    segments={"region": str(regions[i]), "plan": str(plans[i])},
                )
                request_ids.append(answer.request_id)
        finally:
            client.close()
        assert running.server.predlog is not None
        running.server.predlog.flush()
        labels = truth(cols, seed=52)
        # The model is right as often as ever, except for EU customers on the basic plan.
        wrong = (regions == "EU") & (plans == "basic") & (np.arange(n) % 2 == 0)
        labels = np.where(wrong, 1 - labels, labels)
        platform.monitor.log_labels(LabelBatch.from_request_ids(request_ids, labels, endpoint="churn"))
        result = platform.monitor.check("churn")
        assert result.summary.rows == n
        assert result.summary.labeled_rows == n
        assert result.summary.worst_segment in ("region=EU & plan=basic", "plan=basic & region=EU")
        platform.monitor.alerts.set_rule(
            AlertRule(name="p99", endpoint="churn", kind="latency_p99", threshold=60.0,
                      metrics_url=f"{running.url}/metrics")
        )  # fmt: skip
        platform.monitor.alerts.set_rule(
            AlertRule(name="errors", endpoint="churn", kind="error_rate", threshold=-1.0, op=">",
                      metrics_url=f"{running.url}/metrics")
        )  # fmt: skip
        fired = platform.monitor.alerts.evaluate(run_checks=False)
    # Any error rate is > -1: the rule read the server's counters (n requests, no errors); p99 is far below 60 s.
    assert [(t.alert, t.value) for t in fired] == [("errors", 0.0)]
    p99 = platform.monitor.alerts.get_rule("p99").value
    assert p99 is not None
    assert 0 < p99 < 60
