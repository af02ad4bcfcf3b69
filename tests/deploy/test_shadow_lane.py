"""Shadow traffic runs in the model server's low-priority lane: live requests never wait behind it, shadow work
beyond the lane's room is skipped and counted (never queued without bound), and what ran reaches the shadow
report. A real model server behind the real traffic router, on 127.0.0.1, with models that block on an Event so
that every ordering is forced rather than timed."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlpilot.deploy import DeploymentSpec, RolloutData, RouteTable, Variant, VariantStats, shadow_report
from mlpilot.deploy.router import TrafficRouter
from mlpilot.errors import ConfigError
from mlpilot.serving import ModelServer, ServeConfig
from mlpilot.serving.accesslog import AccessLog
from mlpilot.serving.testing import InMemorySource
from tests.conftest import RoutedServer

pytest.importorskip("uvicorn")


class Gated:
    """Predicts the sign of the first feature, taking a few ms per call (too slow to run on the event loop), and
    blocks while its gate is closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls = 0

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        self.calls += 1
        self.entered.set()
        self.gate.wait(120)
        time.sleep(0.003)
        return (np.asarray(x)[:, 0] > 0).astype(np.int64)

    def close_gate(self) -> None:
        self.entered.clear()
        self.gate.clear()


@dataclass
class Plane:
    url: str
    server: ModelServer
    router: TrafficRouter
    models: dict[str, Gated]

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop (where the router and the lane live) and return its result."""

        async def call() -> Any:
            return fn()

        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(call(), self.server.loop).result(30)

    def shadow_stats(self) -> VariantStats:
        def read() -> VariantStats:
            return VariantStats().merge(self.router.collector.get(("churn", 0, 0, "v2")))

        result: VariantStats = self.on_loop(read)
        return result

    def gauge(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return sample.value
        return 0.0

    def skipped(self, reason: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "mlpilot_serve_shadow_skipped_requests_total" and sample.labels["reason"] == reason:
                    return sample.value
        return 0.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds; the timeout only catches a broken feature, it measures nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def plane_with() -> Iterator[Callable[..., Plane]]:
    """Serve ``churn`` v1 (primary) and v2 (a 100% shadow), plus ``other`` (live, not routed), with one
    inference thread (the data plane's default on two cores) unless told otherwise."""
    started: list[RoutedServer] = []

    def start(
        *, threads: int = 1, shadow_example: Any = None, access_log: AccessLog | None = None, **shadow: Any
    ) -> Plane:
        models = {"v1": Gated(), "v2": Gated(), "other": Gated()}
        source = InMemorySource()
        example = np.ones((2, 3))
        source.add("churn", models["v1"], input_example=example)
        source.add("churn", models["v2"], input_example=example if shadow_example is None else shadow_example)
        source.add("other", models["other"], input_example=example)
        config = ServeConfig.from_dict(
            {
                "models": [{"ref": "churn/1"}, {"ref": "churn/2"}, {"ref": "other/1"}],
                "inference_threads": threads,
                "refresh_interval": 0,
                "access_log": access_log is not None,
                "log": {"enabled": False},
                "shadow": shadow,
            }
        )
        server = ModelServer(config, source, access_log=access_log).load()
        router = TrafficRouter(server.app)
        variants = [Variant(version=1, role="primary", weight=100), Variant(version=2, role="shadow", weight=100)]
        router.set_table(RouteTable.build("churn", variants))
        routed = RoutedServer(server, router)
        started.append(routed)
        return Plane(routed.url, server, router, models)

    yield start
    for routed in started:
        routed.stop()


def _predict(client: httpx.Client, row: list[float], **headers: str) -> httpx.Response:
    return client.post("/v1/models/churn:predict", json={"instances": [row]}, headers=headers)


def test_live_requests_do_not_wait_behind_a_hung_shadow_and_the_excess_is_skipped(
    plane_with: Callable[..., Plane],
) -> None:
    plane = plane_with(max_queue=3, deadline_ms=600_000)
    shadow = plane.models["v2"]
    shadow.close_gate()
    rows = [[float(i % 5) - 2.0, 1.0, 1.0] for i in range(21)]
    with httpx.Client(base_url=plane.url, timeout=60) as client:
        first = _predict(client, rows[0])
        assert first.status_code == 200
        assert shadow.entered.wait(60)  # its mirror now blocks the shadow lane's thread
        # With one inference thread, live requests would queue behind a shadow call that shared it; they don't,
        # and a shadow call running longer than the lane's grace (5 ms) does not hold them up either.
        # Headers that look like shadow traffic neither push a caller down nor into the lane.
        live = [_predict(client, row) for row in rows[1:20]]
        live.append(_predict(client, rows[20], **{"x-request-id": "forged:shadow", "x-mlpilot-shadow": "1"}))
        assert not shadow.gate.is_set()
        # 1 mirror runs, 3 wait (max_queue), the other 17 are skipped at once.
        wait_for(lambda: plane.shadow_stats().dropped == 17, "the skipped mirrors")
    assert [r.status_code for r in [first, *live]] == [200] * 21
    assert {r.headers["x-mlpilot-variant"] for r in [first, *live]} == {"v1"}
    assert [r.json()["predictions"] for r in [first, *live]] == [[int(row[0] > 0)] for row in rows]
    assert plane.skipped("full") == 17
    assert plane.shadow_stats().requests == 0  # nothing has run to the end yet

    shadow.gate.set()
    wait_for(lambda: plane.shadow_stats().requests == 4, "the waiting mirrors to run")
    stats = plane.shadow_stats()
    assert (stats.requests, stats.errors, stats.paired, stats.agreed, stats.dropped) == (4, 0, 4, 4, 17)
    assert plane.on_loop(lambda: plane.server.repository.shadow.queued) == 0


def test_a_live_batch_waits_for_a_running_shadow_call_only_within_the_grace(plane_with: Callable[..., Plane]) -> None:
    plane = plane_with(live_grace_ms=60_000)
    primary, shadow = plane.models["v1"], plane.models["v2"]
    shadow.close_gate()
    with httpx.Client(base_url=plane.url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        assert _predict(client, [1.0, 0.0, 0.0]).status_code == 200
        assert shadow.entered.wait(60)
        calls = primary.calls
        second = pool.submit(_predict, client, [2.0, 0.0, 0.0])
        # Within the grace, the live batch waits in its queue for the shadow call to end rather than fight it.
        wait_for(lambda: plane.gauge("mlpilot_serve_queue_rows", version="1") == 1, "the live request to wait")
        assert primary.calls == calls
        shadow.gate.set()
        assert second.result(60).status_code == 200
    assert primary.calls == calls + 1


def test_mirrors_that_wait_past_their_deadline_are_skipped_and_later_ones_still_run(
    plane_with: Callable[..., Plane],
) -> None:
    plane = plane_with(deadline_ms=200, max_wait_ms=0)
    shadow = plane.models["v2"]
    shadow.close_gate()
    with httpx.Client(base_url=plane.url, timeout=60) as client:
        assert _predict(client, [1.0, 0.0, 0.0]).status_code == 200
        assert shadow.entered.wait(60)
        assert all(_predict(client, [-1.0, 0.0, 0.0]).status_code == 200 for _ in range(5))
        # The lane never runs them (its thread is blocked): the deadline sheds them, and their callers (the
        # router's mirror tasks) get their answer without waiting for the lane.
        wait_for(lambda: plane.skipped("stale") == 5, "stale mirrors to be skipped")
        wait_for(lambda: plane.shadow_stats().dropped == 5, "the router to count them")
        shadow.gate.set()
        wait_for(lambda: plane.shadow_stats().requests == 1, "the blocked mirror to finish")
        assert _predict(client, [2.0, 0.0, 0.0]).status_code == 200  # room again: this one runs
        wait_for(lambda: plane.shadow_stats().requests == 2, "a mirror with room to run")
    stats = plane.shadow_stats()
    assert (stats.errors, stats.paired, stats.agreed, stats.dropped) == (0, 2, 2, 5)


def test_shadow_batches_wait_until_no_live_batch_is_queued_or_running(plane_with: Callable[..., Plane]) -> None:
    plane = plane_with(threads=2)
    other, shadow = plane.models["other"], plane.models["v2"]
    calls_before = shadow.calls
    other.close_gate()
    with httpx.Client(base_url=plane.url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(client.post, "/v1/models/other:predict", json={"instances": [[1.0, 2.0, 3.0]]})
        assert other.entered.wait(60)  # a live batch runs (on one of the two inference threads) and holds
        for i in range(6):
            assert _predict(client, [float(i), 0.0, 0.0]).status_code == 200  # answered on the other thread
        # Every mirror waits in the lane while live work is under way: none has reached the shadow model.
        wait_for(lambda: plane.on_loop(lambda: plane.server.repository.shadow.queued) == 6, "mirrors to queue")
        assert shadow.calls == calls_before
        other.gate.set()
        assert blocked.result(60).status_code == 200
    # The live batch is done: the lane runs the waiting mirrors, batched (same model version, 6 rows <= 16).
    wait_for(lambda: plane.shadow_stats().requests == 6, "the mirrors to run once live work is done")
    assert shadow.calls == calls_before + 1
    stats = plane.shadow_stats()
    assert (stats.paired, stats.agreed, stats.dropped) == (6, 6, 0)


def test_mirrors_wait_for_company_and_run_as_one_full_batch(plane_with: Callable[..., Plane]) -> None:
    plane = plane_with(max_batch_rows=4, max_wait_ms=60_000, deadline_ms=120_000)
    shadow = plane.models["v2"]
    calls_before = shadow.calls
    with httpx.Client(base_url=plane.url, timeout=60) as client:
        for i in range(3):
            assert _predict(client, [float(i), 0.0, 0.0]).status_code == 200
        wait_for(lambda: plane.on_loop(lambda: plane.server.repository.shadow.queued) == 3, "mirrors to queue")
        assert _predict(client, [3.0, 0.0, 0.0]).status_code == 200  # the fourth row fills the batch
        wait_for(lambda: plane.shadow_stats().requests == 4, "the full batch to run")
    assert shadow.calls == calls_before + 1  # one model call for the four mirrors
    stats = plane.shadow_stats()
    assert (stats.paired, stats.agreed, stats.dropped) == (4, 4, 0)


def test_a_shadow_lane_setting_out_of_range_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"shadow\.max_queue"):
        ServeConfig.from_dict({"models": [{"ref": "churn/1"}], "shadow": {"max_queue": 0}})
    with pytest.raises(ConfigError, match=r"shadow\.deadline_ms"):
        ServeConfig.from_dict({"models": [{"ref": "churn/1"}], "shadow": {"deadline_ms": -1}})
    with pytest.raises(ConfigError, match=r"shadow\.nice"):
        ServeConfig.from_dict({"models": [{"ref": "churn/1"}], "shadow": {"nice": 20}})
    with pytest.raises(ConfigError, match=r"max_wait_ms .* must be below deadline_ms"):
        ServeConfig.from_dict({"models": [{"ref": "churn/1"}], "shadow": {"max_wait_ms": 500, "deadline_ms": 400}})


def test_the_shadow_report_counts_skipped_mirrors_apart_from_those_that_ran() -> None:
    spec = DeploymentSpec(
        model="churn",
        strategy="shadow",
        state="shadowing",
        variants=[Variant(version=1, role="primary", weight=100), Variant(version=2, role="shadow", weight=100)],
    )
    primary, candidate = VariantStats(), VariantStats()
    for i in range(40):
        primary.record(status=200, latency_ms=2, predictions=[i % 2])
        candidate.record(status=200, latency_ms=3, predictions=[i % 2])
        candidate.record_pair(agreed=i % 4 != 0)
    candidate.dropped = 60
    report = shadow_report(spec, RolloutData({"v1": primary, "v2": candidate}, {}, []))
    assert (report.mirrored, report.skipped, report.paired) == (40, 60, 40)
    assert report.agreement == 0.75  # computed on the 40 that ran
    assert report.shadow_error_rate == 0.0


def test_a_finished_shadow_batch_answers_only_once_no_live_request_is_in_flight(
    plane_with: Callable[..., Plane],
) -> None:
    plane = plane_with()
    primary, shadow = plane.models["v1"], plane.models["v2"]
    lane = plane.server.repository.shadow
    shadow.close_gate()
    with httpx.Client(base_url=plane.url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        assert _predict(client, [1.0, 0.0, 0.0]).status_code == 200
        assert shadow.entered.wait(60)  # the mirror's shadow call runs, and blocks
        primary.close_gate()
        live = pool.submit(_predict, client, [2.0, 0.0, 0.0])
        assert primary.entered.wait(60)  # a live request is in flight, inside the primary model
        shadow.gate.set()
        # The shadow call ends, but its answer (and the router's work on it) waits for the live request.
        wait_for(lambda: plane.on_loop(lambda: lane.held) == 1, "the shadow answer to be held back")
        assert plane.shadow_stats().requests == 0
        assert not live.done()
        primary.gate.set()
        assert live.result(60).status_code == 200
        # the held answer goes out, then the live request's own mirror runs
        wait_for(lambda: plane.shadow_stats().requests == 2, "the held answer and the next mirror to go out")
    assert plane.on_loop(lambda: lane.held) == 0
    stats = plane.shadow_stats()
    assert (stats.paired, stats.agreed, stats.dropped) == (2, 2, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
@pytest.mark.parametrize("nice", [19, 0])
def test_the_shadow_thread_runs_at_a_lower_cpu_priority(plane_with: Callable[..., Plane], nice: int) -> None:
    import os

    before = {t.native_id for t in threading.enumerate() if t.name.startswith("mlpilot-shadow")}
    plane_with(nice=nice)
    [tid] = [
        t.native_id for t in threading.enumerate() if t.name.startswith("mlpilot-shadow") and t.native_id not in before
    ]
    assert tid is not None
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, base + nice)


@pytest.mark.parametrize(
    ("shadow_example", "whole_requests"),
    [(None, False), (np.ones((2, 3), dtype=np.float32), True)],
    ids=["same-inputs", "other-inputs"],
)
def test_a_shadow_taking_the_same_inputs_gets_the_parsed_request_and_others_the_whole_one(
    plane_with: Callable[..., Plane], shadow_example: Any, whole_requests: bool
) -> None:
    stream = io.BytesIO()  # the server's access log, read here as it grows (and never closed under it)
    plane = plane_with(shadow_example=shadow_example, access_log=AccessLog(stream, flush_interval=0.05))
    with httpx.Client(base_url=plane.url, timeout=60) as client:
        for i in range(10):
            assert _predict(client, [float(i % 3) - 1.0, 0.0, 0.0]).status_code == 200
    wait_for(lambda: plane.shadow_stats().requests == 10, "10 mirrors to run")
    stats = plane.shadow_stats()
    assert (stats.paired, stats.agreed, stats.errors, stats.dropped) == (10, 10, 0, 0)
    wait_for(lambda: stream.getvalue().count(b"\n") >= (20 if whole_requests else 10), "the access log")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    mirrored = [line for line in lines if line["request_id"].endswith(":shadow")]
    # a whole request goes through the server again (and its access log); a parsed one is handed over inside it
    assert len(mirrored) == (10 if whole_requests else 0)
    assert all(line["version"] == 2 for line in mirrored)
