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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.deploy import ABConfig, CanaryConfig, Outcome, RouteTable, RoutingConfig
from mlpilot.errors import InvalidInputError

from .e2e import (
    FLAKY,
    GOOD,
    GOOD_TOO,
    SLOW,
    WRONG,
    Env,
    Load,
    applied,
    deployment,
    follow,
    model_loads,
    plane,
    start_env,
    wait,
)

pytest.importorskip("uvicorn")
pytest.importorskip("cloudpickle")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with start_env(tmp_path_factory.mktemp("control-plane")) as started:
        yield started


def test_canary_promotes_under_load_without_a_failed_request(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running, Load(running.url, name) as load:
        wait(lambda: load.count() > 50, what="traffic")
        env.deployments.start_canary(
            name,
            GOOD_TOO,
            canary=CanaryConfig(steps=[20, 50, 100], min_step_seconds=0.5, min_step_requests=150, max_step_seconds=60),
        )
        wait(
            lambda: env.deployments.get(name).spec.primary.version == GOOD_TOO,
            what=lambda: f"promotion: {[(h.action, h.reason) for h in env.deployments.history(name)]}",
        )
        revision = env.deployments.get(name).revision
        wait(lambda: applied(running.plane, revision), what="the data plane to follow")
        before = load.count(variant="v1")
        wait(lambda: load.count(variant="v2") > 100, what="traffic on v2")
    load.assert_clean()  # through the canary's start, its step to 50% and its promotion
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
    name = deployment(env, min_labels=100, **analysis)
    with plane(env, name) as running, Load(running.url, name, threads=6) as load:
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
        wait(lambda: applied(running.plane, last.revision), what="the data plane to follow the rollback")
        after = load.count(variant=f"v{version}")
        wait(lambda: load.count(variant="v1") > after + 100, what="traffic back on v1")
        stray = load.count(variant=f"v{version}") - after
    assert (last.action, last.actor) == ("rolled_back", "controller")
    assert metric in last.reason
    # through the canary's start and the automatic rollback, every error came from the planted version
    load.assert_clean(allow=lambda status, variant: (status, variant) == (500, "v3") and version == FLAKY)
    assert stray <= 6 * 2  # at most the requests in flight at the switch


def test_low_traffic_pauses_the_canary(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running:
        env.deployments.start_canary(
            name,
            GOOD_TOO,
            canary=CanaryConfig(steps=[10, 100], min_step_seconds=0.3, min_step_requests=10_000, max_step_seconds=1),
        )
        with httpx.Client(base_url=running.url) as http:
            for _ in range(20):
                assert http.post(f"/v1/models/{name}:predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 200
        wait(lambda: env.deployments.get(name).spec.state == "paused", what="the pause")
    info = env.deployments.get(name)
    assert "low traffic" in info.spec.message
    assert info.spec.primary.version == GOOD  # never promoted blind


def test_traffic_split_within_two_points_over_10000_requests(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running:
        info = env.deployments.start_canary(
            name, GOOD_TOO, canary=CanaryConfig(steps=[30, 100], min_step_seconds=3600, min_step_requests=10**6)
        )
        wait(lambda: applied(running.plane, info.revision), what="the canary to be applied")
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
        wait(lambda: sum(v["requests"] for v in env.deployments.analyze(name).variants.values()) == 10_000)
    assert counts["200 v1"] + counts["200 v2"] == 10_000
    assert abs(counts["200 v2"] / 10_000 - 0.30) <= 0.02


def test_blue_green_preview_switch_and_instant_rollback(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running, Load(running.url, name) as load:
        info = env.deployments.start_blue_green(name, GOOD_TOO, retention_seconds=600)
        wait(lambda: applied(running.plane, info.revision), what="the preview")
        with httpx.Client(base_url=running.url) as http:
            for _ in range(10):  # smoke requests on the preview route
                r = http.post(f"/v1/models/{name}/versions/2:predict", json={"instances": [[1, 0, 0, 0]]})
                assert (r.status_code, r.json()["version"], r.json()["predictions"]) == (200, 2, [1])
        assert load.count(variant="v2") == 0  # no live traffic during the preview
        assert env.deployments.verify_preview(name, running.url).passed
        loads = model_loads(running.url, name)
        promoted = env.deployments.promote(name, reason="preview passed")
        wait(lambda: applied(running.plane, promoted.revision), what="the switch")
        wait(lambda: load.count(variant="v2") > 50, what="traffic on v2")
        rolled = env.deployments.rollback(name, reason="changed our minds")
        follow(env, running, name)
        back = load.count(variant="v1")
        wait(lambda: load.count(variant="v1") > back + 50, what="traffic back on v1")
        after = model_loads(running.url, name)
        served = running.plane.server.repository.versions(name)
    load.assert_clean()  # through the preview, the promotion and the rollback
    assert rolled.spec.primary.version == GOOD
    # v1 stayed loaded as a standby, so the promotion and the rollback were route swaps on warm models: no
    # model was loaded after the preview (how long the swap takes is measured in bench/rollout_rollback.py)
    assert loads == 2  # v1 when the data plane started, v2 for the preview
    assert after == loads
    assert served == [GOOD]  # and v2 is retired once nothing names it


def test_shadow_never_reaches_callers_and_is_reported(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running, Load(running.url, name) as load:
        info = env.deployments.start_shadow(name, WRONG, mirror=100)
        wait(lambda: applied(running.plane, info.revision), what="the shadow")
        wait(lambda: (env.deployments.analyze(name).shadow or {}).get("paired", 0) >= 300, what="mirrored pairs")
        report = env.deployments.analyze(name).shadow
        env.deployments.rollback(name, reason="seen enough: the shadow ends")
        follow(env, running, name)
        mark = load.mark()
        wait(lambda: load.count() > mark + 50, what="traffic after the shadow ended")
    assert report is not None
    assert {v for _, v, _, _, _ in load.answers} == {"v1"}
    assert all(p == y for _, _, p, y, _ in load.answers)  # callers got the primary's (right) answers
    assert 0.55 < report["agreement"] < 0.85  # the shadow flips 30% of its answers
    assert report["shadow_p99_ms"] is not None
    load.assert_clean()  # through the shadow's start and end


def test_ab_test_is_sticky_and_reports_the_winner(env: Env) -> None:
    name = deployment(env)
    with plane(env, name) as running:
        info = env.deployments.start_ab(name, GOOD_TOO, ab=ABConfig(split=50, min_samples=200))
        wait(lambda: applied(running.plane, info.revision), what="the A/B split")
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


def _arms(load: Load) -> dict[str, set[str]]:
    """The variants that answered each assignment key."""
    seen: dict[str, set[str]] = {}
    for _, variant, _, _, key in load.answers:
        seen.setdefault(key, set()).add(variant)
    return seen


def test_sticky_assignment_agrees_across_two_server_processes(env: Env, tmp_path: Path) -> None:
    # the key is a body field (``entity_id``, where each protocol carries it), or else the header
    name = deployment(env, create={"routing": RoutingConfig(key_field="entity_id")})
    info = env.deployments.start_ab(name, GOOD_TOO, ab=ABConfig(split=40))
    table = RouteTable.build(name, info.spec.variants, routing=info.spec.routing)  # as the control plane hashes
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
    keys = [f"customer-{k}" for k in range(300)]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, proc in zip(urls, procs, strict=True):

            def ready(url: str = url, proc: subprocess.Popen[bytes] = proc) -> bool:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "replica exited"
                try:
                    return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait(ready, timeout=90, what="a replica")
        # both replicas under concurrent load, the key in the body of /v1, OIP v2 and /invocations requests
        loads = [
            Load(url, name, threads=3, key_via="field", keys=keys, protocols=("v1", "v2", "invocations"))
            for url in urls
        ]
        with loads[0], loads[1]:
            wait(lambda: all(len(_arms(load)) >= 290 for load in loads), what="most keys on both replicas")
        with httpx.Client(base_url=urls[0]) as http:  # and the same keys as a header
            by_header = {
                key: http.post(
                    f"/v1/models/{name}:predict", json={"instances": [[0.1, 0, 0, 0]]}, headers={"x-mlpilot-key": key}
                ).headers["x-mlpilot-variant"]
                for key in keys
            }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
            if proc.stderr is not None:
                proc.stderr.close()
    for load in loads:
        load.assert_clean()
    first, second = _arms(loads[0]), _arms(loads[1])
    assert all(len(arms) == 1 for arms in [*first.values(), *second.values()])  # sticky on each replica
    both = first.keys() & second.keys()
    assert len(both) >= 280
    assert all(first[key] == second[key] for key in both)  # the replicas agree
    # a key gets the same arm by header or by field, and the control plane attributes its outcomes there too
    assert all(first[key] == {by_header[key]} == {f"v{table.choose(key)}"} for key in first)
    assert 0.3 < list(by_header.values()).count("v2") / 300 < 0.5
