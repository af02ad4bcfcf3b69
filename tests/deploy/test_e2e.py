"""Every strategy end to end: a real control plane (``mlpilot server`` in a thread), real data planes
(the model server behind the traffic router, following the control plane over HTTP), the rollout controller,
and concurrent load. Models are pyfunc models with planted problems, loaded through the registry over REST.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.deploy import ABConfig, AnalysisConfig, CanaryConfig, Controller, Deployments, Outcome
from mlpilot.deploy.dataplane import DataPlane, RunningDataPlane, build_data_plane, serve_in_thread
from mlpilot.errors import InvalidInputError
from tests.conftest import LiveServer

from . import planted

pytest.importorskip("uvicorn")
pytest.importorskip("cloudpickle")
pytestmark = pytest.mark.slow

GOOD, GOOD_TOO, FLAKY, SLOW, WRONG = 1, 2, 3, 4, 5


@dataclass
class Env:
    control: LiveServer
    deployments: Deployments
    client: Any


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    import cloudpickle  # type: ignore[import-untyped]

    from mlpilot.registry import log_model

    cloudpickle.register_pickle_by_value(planted)
    control = LiveServer(tmp_path_factory.mktemp("control-plane"))
    controller = Controller(control.services.deployments, interval=0.1)
    try:
        client = control.client
        example = np.zeros((8, 4))
        models = [planted.Threshold(), planted.Threshold(), planted.Flaky(0.3), planted.Slow(25), planted.Wrong(0.3)]
        for model in models:
            log_model(model, "churn", registry=client.registry, artifacts=client.artifacts, input_example=example)
        cloudpickle.unregister_pickle_by_value(planted)
        controller.start()
        yield Env(control, control.services.deployments, client)
    finally:
        controller.stop()
        control.stop()


def _plane(env: Env, name: str) -> RunningDataPlane:
    from mlpilot.serving import RegistrySource

    plane = build_data_plane(
        RegistrySource(env.client.registry, env.client.artifacts),
        control_url=env.control.url,
        names=[name],
        poll_interval=0.1,
        report_interval=0.2,
        # enough worker threads that a slow candidate cannot hold up the primary's requests
        serve_options={"inference_threads": 4},
    )
    return serve_in_thread(plane)


def _deployment(env: Env, **analysis: Any) -> str:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    env.deployments.create(name, model="churn", version=GOOD, analysis=AnalysisConfig(min_samples=100, **analysis))
    return name


def _wait(check: Callable[[], bool], timeout: float = 60.0, what: str | Callable[[], str] = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.02)


def _applied(plane: DataPlane, revision: int) -> bool:
    return any(rev >= revision for _, rev, _ in plane.follower.applied)


@dataclass
class Load:
    """Threads sending one-row predictions until stopped; records every answer."""

    url: str
    name: str
    threads: int = 4
    keyed: bool = False
    statuses: Counter[tuple[int, str | None]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    answers: list[tuple[float, str, int, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                row = rng.normal(size=4)
                key = f"user-{rng.integers(1_000_000)}"
                headers = {"x-mlpilot-key": key} if self.keyed else {}
                started = time.time()
                try:
                    r = http.post(
                        f"/v1/models/{self.name}:predict", json={"instances": [row.tolist()]}, headers=headers
                    )
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                variant = r.headers.get("x-mlpilot-variant")
                with self._lock:
                    self.statuses[(r.status_code, variant)] += 1
                    if r.status_code == 200:
                        pred = int(r.json()["predictions"][0])
                        self.answers.append((started, variant or "", pred, int(row[0] > 0), key))

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def count(self, status: int | None = None, variant: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (s, v), n in self.statuses.items()
                if (status is None or s == status) and (variant is None or v == variant)
            )


def test_canary_promotes_under_load_without_a_failed_request(env: Env) -> None:
    name = _deployment(env)
    with _plane(env, name) as running, Load(running.url, name) as load:
        _wait(lambda: load.count() > 50, what="traffic")
        env.deployments.start_canary(
            name,
            GOOD_TOO,
            canary=CanaryConfig(steps=[20, 50, 100], min_step_seconds=0.5, min_step_requests=150, max_step_seconds=60),
        )
        _wait(
            lambda: env.deployments.get(name).spec.primary.version == GOOD_TOO,
            what=lambda: f"promotion: {[(h.action, h.reason) for h in env.deployments.history(name)]}",
        )
        revision = env.deployments.get(name).revision
        _wait(lambda: _applied(running.plane, revision), what="the data plane to follow")
        before = load.count(variant="v1")
        _wait(lambda: load.count(variant="v2") > 100, what="traffic on v2")
    assert not load.failures
    assert load.count() == load.count(status=200)
    assert load.count(variant="v1") - before < 50  # the old version stopped answering at the switch
    actions = [(h.action, h.actor) for h in env.deployments.history(name)]
    assert ("traffic_shifted", "controller") in actions
    assert actions[-1] == ("promoted", "controller")
    assert env.client.registry.get_model("churn").aliases["champion"] == GOOD_TOO
    env.deployments.rollback(name, reason="leave the champion where the other tests expect it")


@pytest.mark.parametrize(
    ("version", "metric", "analysis"),
    [(FLAKY, "error_rate", {}), (SLOW, "latency_p99", {}), (WRONG, "accuracy", {"require_labels": True})],
    ids=["error-rate", "latency", "accuracy"],
)
def test_planted_problem_is_rolled_back_automatically(env: Env, version: int, metric: str, analysis: Any) -> None:
    name = _deployment(env, min_labels=100, **analysis)
    with _plane(env, name) as running, Load(running.url, name, threads=6) as load:
        env.deployments.start_canary(
            name, version, canary=CanaryConfig(steps=[50, 100], min_step_seconds=0.5, min_step_requests=100_000)
        )
        posted = 0
        while env.deployments.get(name).spec.state != "stable":
            if metric == "accuracy":  # labels arrive later: post them keyed by the variant that answered
                batch = load.answers[posted:]
                posted += len(batch)
                outcomes = [Outcome(variant=v, prediction=p, label=y) for _, v, p, y, _ in batch if v]
                if outcomes:
                    try:
                        env.deployments.record_outcomes(name, outcomes)
                    except InvalidInputError:
                        # The controller rolled back between our state check and this post: the canary
                        # variant is gone, and outcomes for it are refused. Anything else is a failure.
                        if env.deployments.get(name).spec.state != "stable":
                            raise
            time.sleep(0.1)
        last = env.deployments.history(name)[-1]
        _wait(lambda: _applied(running.plane, last.revision), what="the data plane to follow the rollback")
        after = load.count(variant=f"v{version}")
        _wait(lambda: load.count(variant="v1") > after + 100, what="traffic back on v1")
        stray = load.count(variant=f"v{version}") - after
    assert (last.action, last.actor) == ("rolled_back", "controller")
    assert metric in last.reason
    assert not load.failures
    assert load.count(status=500, variant="v1") == 0  # every error came from the planted version
    assert stray <= 6 * 2  # at most the requests in flight at the switch


def test_low_traffic_pauses_the_canary(env: Env) -> None:
    name = _deployment(env)
    with _plane(env, name) as running:
        env.deployments.start_canary(
            name,
            GOOD_TOO,
            canary=CanaryConfig(steps=[10, 100], min_step_seconds=0.3, min_step_requests=10_000, max_step_seconds=1),
        )
        with httpx.Client(base_url=running.url) as http:
            for _ in range(20):
                assert http.post(f"/v1/models/{name}:predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 200
        _wait(lambda: env.deployments.get(name).spec.state == "paused", what="the pause")
    info = env.deployments.get(name)
    assert "low traffic" in info.spec.message
    assert info.spec.primary.version == GOOD  # never promoted blind


def test_traffic_split_within_two_points_over_10000_requests(env: Env) -> None:
    name = _deployment(env)
    with _plane(env, name) as running:
        info = env.deployments.start_canary(
            name, GOOD_TOO, canary=CanaryConfig(steps=[30, 100], min_step_seconds=3600, min_step_requests=10**6)
        )
        _wait(lambda: _applied(running.plane, info.revision), what="the canary to be applied")
        counts: Counter[str] = Counter()
        lock = threading.Lock()

        def send(n: int) -> None:
            with httpx.Client(base_url=running.url) as http:
                for _ in range(n):
                    r = http.post(f"/v1/models/{name}:predict", json={"instances": [[0.5, 0.1, 0.2, 0.3]]})
                    with lock:
                        counts[f"{r.status_code} {r.headers.get('x-mlpilot-variant')}"] += 1

        threads = [threading.Thread(target=send, args=(2500,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # the statistics reach the control plane too
        _wait(lambda: sum(v["requests"] for v in env.deployments.analyze(name).variants.values()) == 10_000)
    assert counts["200 v1"] + counts["200 v2"] == 10_000
    assert abs(counts["200 v2"] / 10_000 - 0.30) <= 0.02


def test_blue_green_preview_switch_and_instant_rollback(env: Env) -> None:
    name = _deployment(env)
    with _plane(env, name) as running, Load(running.url, name) as load:
        info = env.deployments.start_blue_green(name, GOOD_TOO, retention_seconds=600)
        _wait(lambda: _applied(running.plane, info.revision), what="the preview")
        with httpx.Client(base_url=running.url) as http:
            for _ in range(10):  # smoke requests on the preview route
                r = http.post(f"/v1/models/{name}/versions/2:predict", json={"instances": [[1, 0, 0, 0]]})
                assert (r.status_code, r.json()["version"], r.json()["predictions"]) == (200, 2, [1])
        assert load.count(variant="v2") == 0  # no live traffic during the preview
        promoted = env.deployments.promote(name, reason="preview passed")
        _wait(lambda: _applied(running.plane, promoted.revision), what="the switch")
        _wait(lambda: load.count(variant="v2") > 50, what="traffic on v2")
        rolled = env.deployments.rollback(name, reason="changed our minds")
        decided = time.time()
        _wait(lambda: _applied(running.plane, rolled.revision), what="the rollback")
        followed = next(t for _, rev, t in running.plane.follower.applied if rev == rolled.revision) - decided
    assert not load.failures
    assert load.count() == load.count(status=200)
    assert followed <= 1.0  # the old version was kept warm: the rollback is a route swap


def test_shadow_never_reaches_callers_and_is_reported(env: Env) -> None:
    name = _deployment(env)
    with _plane(env, name) as running, Load(running.url, name) as load:
        info = env.deployments.start_shadow(name, WRONG, mirror=100)
        _wait(lambda: _applied(running.plane, info.revision), what="the shadow")
        _wait(lambda: (env.deployments.analyze(name).shadow or {}).get("paired", 0) >= 300, what="mirrored pairs")
    report = env.deployments.analyze(name).shadow
    assert report is not None
    assert {v for _, v, _, _, _ in load.answers} == {"v1"}
    assert all(p == y for _, _, p, y, _ in load.answers)  # callers got the primary's (right) answers
    assert 0.55 < report["agreement"] < 0.85  # the shadow flips 30% of its answers
    assert report["shadow_p99_ms"] is not None
    assert not load.failures


def test_ab_test_is_sticky_and_reports_the_winner(env: Env) -> None:
    name = _deployment(env)
    with _plane(env, name) as running:
        info = env.deployments.start_ab(name, GOOD_TOO, ab=ABConfig(split=50, min_samples=200))
        _wait(lambda: _applied(running.plane, info.revision), what="the A/B split")
        seen: dict[str, set[str]] = {}
        with httpx.Client(base_url=running.url) as http:
            for i in range(600):
                key = f"user-{i % 300}"
                r = http.post(
                    f"/v1/models/{name}:predict", json={"instances": [[0.1, 0, 0, 0]]}, headers={"x-mlpilot-key": key}
                )
                seen.setdefault(key, set()).add(r.headers["x-mlpilot-variant"])
    assert all(len(v) == 1 for v in seen.values())  # sticky
    arms = Counter(next(iter(v)) for v in seen.values())
    assert 100 < arms["v2"] < 200
    # business outcomes arrive later, keyed by user: B converts 20%, A 10%
    rng = np.random.default_rng(1)
    outcomes = []
    for key, variants in seen.items():
        rate = 0.2 if variants == {"v2"} else 0.1
        outcomes += [Outcome(key=key, value=float(rng.random() < rate)) for _ in range(20)]
    env.deployments.record_outcomes(name, outcomes)
    report = env.deployments.analyze(name).ab
    assert report is not None
    assert report["winner"] == "v2"
    assert report["effect_low"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sticky_assignment_agrees_across_two_server_processes(env: Env, tmp_path: Path) -> None:
    name = _deployment(env)
    env.deployments.start_ab(name, GOOD_TOO, ab=ABConfig(split=40))
    ports = [_free_port(), _free_port()]
    procs = []
    for i, port in enumerate(ports):
        child_env = {**os.environ, "MLPILOT_HOME": str(tmp_path / f"replica-{i}"), "PYTHONPATH": os.getcwd()}
        cmd = [sys.executable, "-m", "mlpilot.cli", "deploy", "serve", name, "--control-plane", env.control.url]
        procs.append(
            subprocess.Popen(
                # no access log: nobody reads this stderr pipe until the end, and a full pipe blocks its writer
                [*cmd, "--port", str(port), "--no-access-log"],
                env=child_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    try:
        answers: list[list[str]] = []
        for port, proc in zip(ports, procs, strict=True):
            url = f"http://127.0.0.1:{port}"

            def ready(url: str = url, proc: subprocess.Popen[bytes] = proc) -> bool:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "replica exited"
                try:
                    return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            _wait(ready, timeout=90, what="a replica")
            with httpx.Client(base_url=url) as http:
                answers.append(
                    [
                        http.post(
                            f"/v1/models/{name}:predict",
                            json={"instances": [[0.1, 0, 0, 0]]},
                            headers={"x-mlpilot-key": f"customer-{k}"},
                        ).headers["x-mlpilot-variant"]
                        for k in range(300)
                    ]
                )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
            if proc.stderr is not None:
                proc.stderr.close()
    assert answers[0] == answers[1]
    assert 0.3 < answers[0].count("v2") / 300 < 0.5
