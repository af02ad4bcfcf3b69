"""Serving the champion by customer id, and monitoring it a month later when one segment has drifted.

The model server declares the endpoint's feature service: callers send ``{"customer_id": 42}``, the server
reads the customer's features from the online store, predicts, and logs the looked-up values with the
prediction (what monitoring and ``mlpilot features parity`` read).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlpilot.demo.data import FEATURES, TARGET, make_churn
from mlpilot.demo.state import MODEL_NAME, SERVICE, DemoState, progress

__all__ = ["serve_champion", "step_monitor", "step_serve"]

#: A month later: charges rose for EU customers on the basic plan, and a competitor's offer makes them churn.
SHIFT = {"region": "EU", "plan": "basic", "monthly_charges": 25.0, "churn_boost": 2.0}
#: At most this many new customers are scored (one request each) in the monitoring step.
MONITORED = 2_000


def serve_champion(state: DemoState) -> Any:
    """The model server for ``churn@champion`` in a thread, looking features up when the demo has them."""
    try:
        from mlpilot.serving import RegistrySource, ServeConfig
        from mlpilot.serving.testing import serve_in_thread
    except ImportError as exc:  # the serve extra brings uvicorn's fast loop and orjson
        from mlpilot.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "uvicorn", "serve") from exc
    config = ServeConfig.from_refs([f"{MODEL_NAME}@champion"], refresh_interval=0)
    if state.features is not None:
        from mlpilot.serving.config import FeaturesConfig

        features = FeaturesConfig(service=SERVICE, online_url=state.features.online_url)
        config = config.with_features({MODEL_NAME: features})
    source = RegistrySource(state.client.registry, state.client.artifacts, features=state.client.features)
    return serve_in_thread(source, config=config, log_url=predictions_url(state))


def predictions_url(state: DemoState) -> Any:
    """Where the demo's model servers write the prediction log: where the monitor (and the control plane's
    label feed) read it."""
    from pathlib import Path

    from mlpilot.monitor.backend import default_predictions_url

    return Path(default_predictions_url(state.client.settings))


def request_rows(state: DemoState, frame: Any) -> list[dict[str, Any]]:
    """What a caller sends for each customer: the id alone when the server looks features up, else every
    feature."""
    if state.features is not None:
        return [{"customer_id": int(c)} for c in frame["customer_id"]]
    records: list[dict[str, Any]] = frame[FEATURES].to_dict(orient="records")
    return records


def step_serve(state: DemoState) -> None:
    from mlpilot.serving.testing import drive

    rows = request_rows(state, state.data["test"].head(500))
    with serve_champion(state) as running:
        by = "customer id: features looked up online" if state.features is not None else "feature rows"
        state.console.print(
            f"serving [bold]{MODEL_NAME}@champion[/bold] at {running.url} by {by} (Open Inference Protocol v2, "
            f"/invocations, /v1/models/{MODEL_NAME}:predict, /metrics)"
        )
        with running.client() as client:
            answer = client.predict(MODEL_NAME, rows[:1])
        state.console.print(
            f"  POST /v1/models/{MODEL_NAME}:predict {json.dumps({'instances': rows[:1]})} → prediction "
            f"{answer.predictions[0]} (version {answer.version}, request {answer.request_id[:12]})"
        )
        for concurrency, count in ((1, 200), (8, 1_000)):
            report = drive(running.url, MODEL_NAME, rows, requests=count, concurrency=concurrency)
            state.data[f"serve_c{concurrency}"] = report
            state.console.print(
                f"  {count:,} one-row requests at concurrency {concurrency}: {report.requests_per_second:,.0f} req/s, "
                f"p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, errors {report.errors}"
            )
    state.console.print(f"prediction log (Parquet, with the looked-up features): {predictions_url(state)}")


def _send(url: str, rows: Sequence[dict[str, Any]], *, threads: int = 4) -> tuple[list[str], list[Any]]:
    """One request per row from ``threads`` callers; the request ids and arrival times (client clock), in row
    order."""
    from mlpilot.serving.client import ServingClient

    ids: list[str] = [""] * len(rows)
    sent: list[Any] = [None] * len(rows)
    local = threading.local()
    clients: list[ServingClient] = []

    def one(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = ServingClient(url)
            clients.append(client)
        sent[i] = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "us")
        ids[i] = client.predict(MODEL_NAME, [rows[i]]).request_id

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="demo-caller") as pool:
            list(pool.map(one, range(len(rows))))
    finally:
        for client in clients:
            client.close()
    return ids, sent


def step_monitor(state: DemoState) -> None:
    from mlpilot.monitor import EndpointConfig, LabelBatch, WindowSpec
    from mlpilot.monitor.service import Monitor

    console = state.console
    monitor = state.client.monitor
    if not isinstance(monitor, Monitor):
        # The demo's model server writes its prediction log on this machine, out of a remote server's reach.
        state.skip("the monitoring step")
        return
    monitor.configure_endpoint(MODEL_NAME, EndpointConfig(segments=["region", "plan"]))
    today = np.datetime64(datetime.now(UTC).date(), "D")
    count = min(state.rows // 4, MONITORED)
    traffic = make_churn(count, seed=state.seed + 7, shift=SHIFT, start=today - 30, span_days=29)
    if state.features is not None:
        pushed = state.features.push_customers(traffic)
        console.print(
            f"{len(traffic):,} customers signed up this month: their profile and usage rows pushed online and to the "
            f"offline log ({pushed:,} rows). EU customers on the basic plan now pay more, and a competitor courts them"
        )
    rows = request_rows(state, traffic)
    with serve_champion(state) as running, progress(console) as bar:
        task = bar.add_task("scoring this month's customers", total=None)
        request_ids, sent = _send(running.url, rows)
        bar.update(task, completed=len(rows), total=len(rows))
        if running.server.predlog is not None:
            running.server.predlog.flush()
    console.print(f"scored {len(rows):,} customers by id through the champion")
    # Ground truth arrives later, keyed by the request ids the server answered with.
    labels = LabelBatch.from_request_ids(request_ids, traffic[TARGET].tolist(), endpoint=MODEL_NAME)
    report_path = state.client.settings.home.resolve() / "reports" / "churn-monitoring.html"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    result = monitor.check(MODEL_NAME, WindowSpec(last_rows=len(rows)), labels=labels, html=report_path)
    state.data["monitor"] = result
    state.data["fresh"] = traffic.assign(requested_at=sent, request_id=request_ids)
    summary = result.summary
    console.print(
        f"labels joined for {summary.labeled_rows:,} of {summary.rows:,} predictions; "
        f"drifted features: [bold]{', '.join(summary.drifted_features) or 'none'}[/bold]"
    )
    console.print(f"segment whose performance fell most: [bold]{summary.worst_segment or '-'}[/bold]")
    if summary.worst_segment_description:
        console.print(f"  {summary.worst_segment_description}")
    console.print(f"HTML report: {report_path}")
