"""Monitoring on a real control plane (uvicorn on 127.0.0.1): labels, settings, checks, reports, alerts, gauges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.errors import NotFoundError
from mlpilot.monitor import AlertRule, DriftReport, EndpointConfig, LabelBatch, WindowSpec, log_labels
from tests.monitor.conftest import REGIONS, Platform, Receiver, Threshold, features, truth


@pytest.fixture
def served(live_server: Any) -> Iterator[tuple[Any, Platform]]:
    """The live server with version 1 of "churn" registered through the SDK and 1,200 logged predictions."""
    from mlpilot.remote.http import HttpTransport
    from mlpilot.remote.monitor import RestMonitor

    train = features(2000, seed=31)
    live_server.client.log_model(
        Threshold(), "churn", input_example={k: v[:5] for k, v in train.items()}, training_data=train, flavor="pyfunc"
    )
    log_url = str(Path(live_server.settings.home).resolve() / "predictions")
    transport = HttpTransport(live_server.url)
    platform = Platform(
        live_server.services.store, live_server.services.artifacts, log_url, RestMonitor(transport),
        live_server.services.registry,
    )  # fmt: skip
    cols = features(1200, seed=32, income_shift=10.0)
    platform.serve("churn", cols, regions=np.resize(REGIONS, 1200))
    yield live_server, platform
    transport.close()


def test_labels_endpoint_joins_or_rejects_the_whole_batch(served: tuple[Any, Platform]) -> None:
    server, platform = served
    ids = platform.served["churn"]
    ok = httpx.post(f"{server.url}/v1/labels", json={"labels": [{"request_id": ids[0], "label": 1}]})
    assert ok.status_code == 200
    assert ok.json() == {"stored": 1, "endpoints": {"churn": 1}}
    bad = httpx.post(
        f"{server.url}/v1/labels",
        json={"labels": [{"request_id": ids[1], "label": 0}, {"request_id": "nope", "label": 1}]},
    )
    assert bad.status_code == 404
    assert bad.json()["field"] == "request_id"
    assert "nope" in bad.json()["message"]
    malformed = httpx.post(f"{server.url}/api/v1/labels", json={"labels": [{"label": 1}]})
    assert malformed.status_code == 400
    assert malformed.json()["field"].startswith("labels[0]")
    assert server.services.monitor.window("churn", WindowSpec()).labeled_rows == 1


def test_sdk_check_results_report_and_html_over_rest(served: tuple[Any, Platform]) -> None:
    server, platform = served
    rest = platform.monitor
    rest.configure_endpoint("churn", EndpointConfig(segments=["region"]))
    ids = platform.served["churn"]
    cols = features(1200, seed=32, income_shift=10.0)
    labels = truth(cols, seed=33)
    labels = np.where((np.resize(REGIONS, 1200) == "EU") & (np.arange(1200) % 3 == 0), 1 - labels, labels)
    assert log_labels(ids, labels, endpoint="churn", backend=rest).stored == 1200
    summary = rest.run_check("churn", WindowSpec(last_rows=2000))
    assert summary.drifted_features == ["income"]
    assert summary.worst_segment == "region=EU"
    assert rest.latest_check("churn") == summary
    assert [s.id for s in rest.latest_checks()] == [summary.id]
    report = DriftReport.from_dict(rest.check_report("churn", summary.id))
    assert report.drifted_features == ["income"]
    page = httpx.get(f"{server.url}/api/v1/monitor/endpoints/churn/checks/latest/report.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Drift report" in page.text
    assert "<script" not in page.text
    listed = httpx.get(f"{server.url}/api/v1/monitor/endpoints").json()
    assert [(e["name"], e["config"]["segments"], e["latest"]["id"]) for e in listed] == [
        ("churn", ["region"], summary.id)
    ]
    assert rest.ensure_profile("churn", 1, endpoint="churn").subject == "models/churn/1"


def test_errors_map_to_statuses_naming_the_field(served: tuple[Any, Platform]) -> None:
    server, platform = served
    with pytest.raises(NotFoundError):
        platform.monitor.run_check("ghost")
    with pytest.raises(NotFoundError):
        platform.monitor.latest_check("ghost")
    bad = httpx.put(f"{server.url}/api/v1/monitor/endpoints/churn", json={"drift": {"alpha": 7}})
    assert bad.status_code == 400
    assert bad.json()["field"] == "drift"
    mismatch = httpx.put(
        f"{server.url}/api/v1/monitor/alerts/a",
        json={"name": "b", "endpoint": "churn", "kind": "drift", "threshold": 1},
    )
    assert mismatch.status_code == 400
    assert mismatch.json()["field"] == "name"
    bad_id = httpx.get(f"{server.url}/api/v1/monitor/endpoints/churn/checks/abc/report")
    assert (bad_id.status_code, bad_id.json()["field"]) == (400, "check_id")


def test_alerts_over_rest_and_the_metrics_gauges(served: tuple[Any, Platform], receiver: Receiver) -> None:
    server, platform = served
    rest = platform.monitor
    rest.configure_endpoint("churn", EndpointConfig(segments=["region"]))
    rest.alerts.set_rule(AlertRule(name="drift", endpoint="churn", kind="drift", threshold=1, webhook_url=receiver.url))
    [fired] = rest.alerts.evaluate()
    assert (fired.event, fired.delivered) == ("alert.fired", True)
    assert [r.state for r in rest.alerts.list_rules()] == ["firing"]
    text = httpx.get(f"{server.url}/metrics").text
    assert 'mlpilot_feature_drift_score{endpoint="churn",feature="income"}' in text
    assert 'mlpilot_feature_drifted{endpoint="churn",feature="income"} 1.0' in text
    assert 'mlpilot_alert_firing{alert="drift",endpoint="churn"} 1.0' in text
    assert 'mlpilot_monitor_window_rows{endpoint="churn"} 1200.0' in text
    rest.alerts.delete_rule("drift")
    assert rest.alerts.list_rules() == []


def test_performance_gauges_bound_segments(served: tuple[Any, Platform]) -> None:
    server, platform = served
    rest = platform.monitor
    rest.configure_endpoint("churn", EndpointConfig(segments=["region"]))
    ids = platform.served["churn"]
    rest.log_labels(LabelBatch.from_request_ids(ids, [1] * len(ids)))
    rest.run_check("churn")
    lines = [ln for ln in httpx.get(f"{server.url}/metrics").text.splitlines() if ln.startswith("mlpilot_model_perf")]
    segments = {ln.split('segment="')[1].split('"')[0] for ln in lines}
    assert segments == {"all", "region=EU", "region=US", "region=APAC"}
    assert any('metric="accuracy",segment="all"' in ln for ln in lines)


def test_the_app_lifespan_runs_the_scheduler(served: tuple[Any, Platform]) -> None:
    import asyncio

    from mlpilot.api import create_app
    from mlpilot.monitor.scheduler import Scheduler

    server, _ = served
    services = server.services
    services.monitor.interval = 0.05
    app = create_app(services)

    def wait_for_a_result() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                services.monitor.latest_check("churn")
                return
            except NotFoundError:
                time.sleep(0.05)

    async def serve_briefly() -> None:
        async with app.router.lifespan_context(app):
            await asyncio.to_thread(wait_for_a_result)

    asyncio.run(serve_briefly())
    assert services.monitor.latest_check("churn").rows == 1200  # checked by the scheduler, not by us
    ticks: list[int] = []
    scheduler = Scheduler(lambda: ticks.append(1), 0.01)
    with scheduler.running():
        while len(ticks) < 3:
            time.sleep(0.01)
    count = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == count  # stopped with the context
