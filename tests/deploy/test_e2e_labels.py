"""Labels logged through the monitoring API drive a canary's online accuracy, end to end: a real control plane
(``mlpilot server`` in a thread, its own controller and label feed), a real data plane writing the prediction
log where the control plane reads it, concurrent load, and labels posted to ``POST /v1/labels`` keyed by the
request ids the data plane answered, never to ``/outcomes``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.deploy import AnalysisConfig, CanaryConfig
from mlpilot.deploy.dataplane import RunningDataPlane
from mlpilot.deploy.labels import LabelFeed
from mlpilot.monitor.backend import default_predictions_url
from tests.conftest import LiveServer

from . import planted
from .e2e import Env, applied, plane, wait

pytest.importorskip("uvicorn")
pytest.importorskip("cloudpickle")
pytest.importorskip("duckdb")
pytestmark = pytest.mark.slow

GOOD, GOOD_TOO, WRONG = 1, 2, 3


def _register(control: LiveServer) -> None:
    import cloudpickle  # type: ignore[import-untyped]

    from mlpilot.registry import log_model

    cloudpickle.register_pickle_by_value(planted)
    try:
        for model in (planted.Threshold(), planted.Threshold(), planted.Wrong(0.3)):
            log_model(
                model,
                "churn",
                registry=control.client.registry,
                artifacts=control.client.artifacts,
                input_example=np.zeros((8, 4)),
            )
    finally:
        cloudpickle.unregister_pickle_by_value(planted)


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A control plane running its own control loops (the rollout controller with the label feed)."""
    control = LiveServer(tmp_path_factory.mktemp("controlled"), background=True)
    try:
        _register(control)
        yield Env(control, control.services.deployments, control.client)
    finally:
        control.stop()


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A control plane with no control loops: the test drives the label feed itself."""
    control = LiveServer(tmp_path_factory.mktemp("quiet"))
    try:
        _register(control)
        yield Env(control, control.services.deployments, control.client)
    finally:
        control.stop()


def _plane(env: Env, name: str) -> RunningDataPlane:
    # the prediction log goes where the control plane reads it, flushed often so labels can follow soon
    return plane(
        env,
        name,
        log_url=default_predictions_url(env.control.settings),
        serve_options={"inference_threads": 2, "log": {"flush_interval": 0.2}},
    )


def _deployment(env: Env, **analysis: Any) -> str:
    name = f"lbl-{uuid.uuid4().hex[:8]}"
    env.deployments.create(
        name, model="churn", version=GOOD, analysis=AnalysisConfig(min_samples=100, min_labels=100, **analysis)
    )
    return name


def _wait(check: Callable[[], bool], what: str | Callable[[], str] = "condition") -> None:
    wait(check, timeout=90.0, what=what, step=0.05)


@dataclass
class Load:
    """Threads sending one-row predictions until stopped; keeps (request id, variant, truth) of every answer."""

    url: str
    name: str
    threads: int = 4
    answers: list[tuple[str, str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                row = rng.normal(size=4)
                try:
                    r = http.post(f"/v1/models/{self.name}:predict", json={"instances": [row.tolist()]})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    with self._lock:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                with self._lock:
                    self.answers.append((r.headers["x-request-id"], r.headers["x-mlpilot-variant"], int(row[0] > 0)))

    def taken(self, start: int) -> list[tuple[str, str, int]]:
        with self._lock:
            return self.answers[start:]

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


def _post_labels(control: LiveServer, name: str, answers: list[tuple[str, str, int]]) -> bool:
    """Ground truth for ``answers`` through the monitoring API; False when some predictions are not in the log yet
    (the batch is refused whole, and sent again later)."""
    body = {"endpoint": name, "labels": [{"request_id": rid, "label": y} for rid, _, y in answers]}
    r = httpx.post(f"{control.url}/v1/labels", json=body, timeout=60)
    if r.status_code == 404:
        return False
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == len(answers)
    return True


def test_worse_accuracy_from_monitoring_labels_rolls_the_canary_back(controlled: Env) -> None:
    env = controlled
    name = _deployment(env, require_labels=True)
    with _plane(env, name) as running, Load(running.url, name, threads=4) as load:
        # never promoted on traffic alone: only the labels can decide
        env.deployments.start_canary(
            name, WRONG, canary=CanaryConfig(steps=[50, 100], min_step_seconds=0.5, min_step_requests=100_000)
        )
        sent = 0
        deadline = time.monotonic() + 120
        while env.deployments.get(name).spec.state != "stable":
            assert time.monotonic() < deadline, f"no rollback: {env.deployments.analyze(name).reason}"
            time.sleep(0.5)
            batch = [a for a in load.taken(sent) if a[1]]
            # labels come late and in batches, for predictions the data plane has logged by now
            if len(batch) >= 50 and _post_labels(env.control, name, batch):
                sent += len(batch)
        rollback = env.deployments.history(name)[-1]
    assert (rollback.action, rollback.actor) == ("rolled_back", "controller")
    assert "accuracy" in rollback.reason
    assert not load.failures
    report = env.deployments.analyze(name)
    assert report.state == "stable"
    assert env.deployments.get(name).spec.primary.version == GOOD


def test_no_labels_pause_the_canary_and_never_roll_it_back(controlled: Env) -> None:
    env = controlled
    name = _deployment(env, require_labels=True)
    with _plane(env, name) as running, Load(running.url, name, threads=2):
        env.deployments.start_canary(
            name,
            WRONG,
            canary=CanaryConfig(steps=[50, 100], min_step_seconds=0.3, min_step_requests=50, max_step_seconds=2),
        )
        _wait(lambda: env.deployments.get(name).spec.state == "paused", what="the pause")
        paused = env.deployments.get(name)
        # a paused canary is still watched: more traffic, still no labels, still no verdict on accuracy
        before = env.deployments.analyze(name).variants[f"v{WRONG}"]["requests"]
        _wait(lambda: env.deployments.analyze(name).variants[f"v{WRONG}"]["requests"] > before + 200, what="traffic")
        time.sleep(1.5)  # a few more controller rounds
    info = env.deployments.get(name)
    assert "accuracy" in paused.spec.message
    assert info.spec.state == "paused"
    assert [h.action for h in env.deployments.history(name)][-1] == "paused"
    accuracy = next(c for c in env.deployments.analyze(name).checks if c["metric"] == "accuracy")
    assert accuracy["status"] == "insufficient_data"
    env.deployments.rollback(name, reason="test over")


def test_labels_posted_twice_count_once(quiet: Env) -> None:
    env = quiet
    name = _deployment(env)
    feed = LabelFeed(env.deployments, env.control.services.monitor)
    with _plane(env, name) as running:
        info = env.deployments.start_canary(
            name, WRONG, canary=CanaryConfig(steps=[50, 100], min_step_seconds=3600, min_step_requests=10**6)
        )
        _wait(lambda: applied(running.plane, info.revision), what="the canary")
        with Load(running.url, name, threads=4) as load:
            _wait(lambda: len(load.taken(0)) >= 400, what="answers")
        answers = load.taken(0)
        assert not load.failures
        _wait(lambda: _post_labels(env.control, name, answers), what="the predictions in the log")
    feed.sync()
    first = env.deployments.analyze(name).variants
    expected = {v: sum(1 for _, var, _ in answers if var == v) for v in (f"v{GOOD}", f"v{WRONG}")}
    assert {v: int(first[v]["outcomes"]) for v in expected} == expected
    assert first[f"v{GOOD}"]["outcome_mean"] == 1.0  # the primary is always right
    assert 0.5 < first[f"v{WRONG}"]["outcome_mean"] < 0.9  # the planted model flips ~30%

    assert _post_labels(env.control, name, answers)  # the same labels again
    feed.sync()
    second = env.deployments.analyze(name).variants
    assert {v: second[v]["outcomes"] for v in expected} == {v: first[v]["outcomes"] for v in expected}
    assert second[f"v{WRONG}"]["outcome_mean"] == first[f"v{WRONG}"]["outcome_mean"]
    env.deployments.rollback(name, reason="test over")


def test_the_data_plane_logs_where_the_control_plane_reads(quiet: Env) -> None:
    """The predictions of a routed endpoint are partitioned by the version that answered (the variant)."""
    env = quiet
    name = _deployment(env)
    with _plane(env, name) as running:
        info = env.deployments.start_canary(
            name, GOOD_TOO, canary=CanaryConfig(steps=[50, 100], min_step_seconds=3600, min_step_requests=10**6)
        )
        _wait(lambda: applied(running.plane, info.revision), what="the canary")
        variants = set()
        with httpx.Client(base_url=running.url) as http:
            for i in range(60):
                r = http.post(f"/v1/models/{name}:predict", json={"instances": [[0.1 * i, 0, 0, 0]]})
                variants.add(r.headers["x-mlpilot-variant"])
    root = Path(default_predictions_url(env.control.settings)) / f"model={name}"
    assert variants == {f"v{GOOD}", f"v{GOOD_TOO}"}
    assert {p.name for p in root.iterdir()} == {f"version={GOOD}", f"version={GOOD_TOO}"}
    env.deployments.rollback(name, reason="test over")
