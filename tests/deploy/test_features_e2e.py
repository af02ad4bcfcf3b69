"""A deployment whose endpoint declares a feature service, end to end: a real control plane (models and
definitions registered through it), a real data plane following the deployment, callers sending only customer
ids (and the request-time ``channel``) during a canary, a shadow and a blue-green preview. Every variant looks
the features up; the prediction log has the looked-up values per variant; parity and the label feed work on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlpilot.deploy import CanaryConfig
from mlpilot.deploy.dataplane import RunningDataPlane, build_data_plane, serve_in_thread
from mlpilot.deploy.labels import LabelFeed
from mlpilot.monitor.backend import default_predictions_url
from tests.conftest import CliProcess, LiveServer, free_port

pytest.importorskip("uvicorn")
pytest.importorskip("sklearn")
pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.slow

from tests.serving.feature_defs import churn_definitions, train, write_sources  # noqa: E402
from tests.serving.test_features_endpoint import COMPLETE, FEATURES, MODEL_INPUTS, STALE  # noqa: E402

NAME = "churn-by-id"
HOLD = CanaryConfig(steps=[50, 100], min_step_seconds=3600, min_step_requests=10**6)


@dataclass
class Env:
    folder: Path
    control: LiveServer
    client: Any
    definitions: Any
    online_url: str
    models: dict[int, Any]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from mlpilot.features import apply_definitions, materialize

    folder = tmp_path_factory.mktemp("featured-deployment")
    write_sources(folder)
    definitions = churn_definitions(folder)
    online = f"sqlite:///{folder / 'online.db'}"
    # 72 hours of activity online: the registered TTL (24 hours) decides what a lookup sees
    materialize(list(churn_definitions(folder, activity_ttl=timedelta(hours=72)).views.values()), store=online)
    control = LiveServer(folder / "control")
    try:
        client = control.client
        apply_definitions(client.features, definitions)  # through the control plane's REST API
        models = {}
        for seed in (0, 1):
            model, frame = train(seed)
            models[client.log_model(model, "churn", input_example=frame.head(5)).version] = model
        assert sorted(models) == [1, 2]
        yield Env(folder, control, client, definitions, online, models)
    finally:
        control.stop()


def _plane(env: Env, name: str = NAME) -> RunningDataPlane:
    from mlpilot.serving import RegistrySource

    client = env.client
    plane = build_data_plane(
        RegistrySource(client.registry, client.artifacts, features=client.features),
        control_url=env.control.url,
        names=[name],
        poll_interval=0.1,
        report_interval=0.2,
        log_url=default_predictions_url(env.control.settings),  # where the control plane reads it
        serve_options={"inference_threads": 2, "log": {"flush_interval": 0.2}},
        features_online_url=env.online_url,
    )
    plane.follower.features_interval = 0.2
    return serve_in_thread(plane)


def _wait(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _follows(running: RunningDataPlane, revision: int) -> bool:
    return any(rev >= revision for _, rev, _ in running.plane.follower.applied)


def _online(env: Env, customers: list[int]) -> dict[str, list[Any]]:
    from mlpilot.features import get_online_features, open_online_store

    store = open_online_store(env.online_url)
    try:
        rows = [{"customer_id": c} for c in customers]
        return get_online_features(rows, env.definitions.service("churn"), store=store, definitions=env.definitions)
    finally:
        store.close()


def _channel(customer: int) -> str:
    return "web" if customer % 2 else "app"


def _expected(env: Env, version: int, customers: list[int]) -> list[int]:
    """What version ``version`` answers for ``customers``, predicting on the values the online store holds."""
    online = _online(env, customers)
    frame = pd.DataFrame({**{f: online[f] for f in FEATURES}, "channel": [_channel(c) for c in customers]})
    return [int(p) for p in env.models[version].predict(frame[MODEL_INPUTS])]


@dataclass(frozen=True)
class Answer:
    request_id: str
    variant: str
    customer: int
    prediction: int


def _send(url: str, customers: list[int], *, threads: int = 4) -> tuple[list[Answer], list[str]]:
    """One-row predictions by customer id from ``threads`` threads (sticky keys spread over the variants)."""
    answers: list[Answer] = []
    failures: list[str] = []
    lock = threading.Lock()

    def work(part: list[int]) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for i, customer in enumerate(part):
                body = {"instances": [{"customer_id": customer, "channel": _channel(customer)}]}
                r = http.post(f"/v1/models/{NAME}:predict", json=body, headers={"x-mlpilot-key": f"{customer}-{i}"})
                with lock:
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:300]}")
                        continue
                    answers.append(
                        Answer(
                            r.headers["x-request-id"],
                            r.headers["x-mlpilot-variant"],
                            customer,
                            r.json()["predictions"][0],
                        )
                    )

    workers = [threading.Thread(target=work, args=(customers[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return answers, failures


def _post_labels(env: Env, answers: list[Answer]) -> bool:
    body = {"endpoint": NAME, "labels": [{"request_id": a.request_id, "label": a.prediction} for a in answers]}
    r = httpx.post(f"{env.control.url}/v1/labels", json=body, timeout=60)
    if r.status_code == 404:  # some predictions are not in the log yet: the batch is refused whole
        return False
    assert r.status_code == 200, r.text
    return True


def _read_log(root: Path) -> Any:
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f) for f in sorted(root.rglob("*.parquet"))])


def test_every_variant_of_a_featured_endpoint_looks_its_inputs_up(env: Env) -> None:
    deployments = env.client.deployments
    deployments.create(NAME, model="churn", version=1, features="churn", reason="callers send customer ids")
    customers = [c for _ in range(6) for c in COMPLETE]  # 240 requests
    with _plane(env) as running:
        # a canary: the gate runs on a DataFrame model, then both variants answer entity keys
        info = deployments.start_canary(NAME, 2, canary=HOLD, reason="retrained")
        _wait(lambda: _follows(running, info.revision), "the canary")
        canary, failures = _send(running.url, customers)
        assert not failures, failures[:3]
        assert {a.variant for a in canary} == {"v1", "v2"}
        for version in (1, 2):
            mine = [a for a in canary if a.variant == f"v{version}"]
            expected = _expected(env, version, [a.customer for a in mine])
            assert [a.prediction for a in mine] == expected, f"v{version} predicted on the looked-up values"

        # the label feed joins labels to the log's rows of both variants
        _wait(lambda: _post_labels(env, canary), "the predictions in the log")
        LabelFeed(env.control.services.deployments, env.control.services.monitor).sync()
        variants = deployments.analyze(NAME).variants
        counts = {v: sum(1 for a in canary if a.variant == v) for v in ("v1", "v2")}
        assert {v: int(variants[v]["outcomes"]) for v in counts} == counts
        deployments.rollback(NAME, reason="next strategy")

        # a shadow: mirrored requests look their features up too, and agree or not without failing
        info = deployments.start_shadow(NAME, 2, reason="shadow by id")
        _wait(lambda: _follows(running, info.revision), "the shadow")
        shadowed, failures = _send(running.url, COMPLETE)
        assert not failures
        assert {a.variant for a in shadowed} == {"v1"}
        _wait(lambda: deployments.analyze(NAME).variants["v2"]["requests"] >= len(COMPLETE) // 2, "the mirrors")
        assert deployments.analyze(NAME).variants["v2"]["error_rate"] == 0
        deployments.rollback(NAME, reason="next strategy")

        # a blue-green preview route answers entity keys with the candidate
        info = deployments.start_blue_green(NAME, 2, reason="preview by id")
        _wait(lambda: _follows(running, info.revision), "the preview")
        preview = httpx.post(
            f"{running.url}/v1/models/{NAME}/versions/2:predict",
            json={"instances": [{"customer_id": c, "channel": _channel(c)} for c in COMPLETE[:8]]},
            timeout=30,
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["predictions"] == _expected(env, 2, COMPLETE[:8])
        deployments.rollback(NAME, reason="test over")

    root = Path(default_predictions_url(env.control.settings)) / f"model={NAME}"
    assert {p.name for p in root.iterdir()} == {"version=1", "version=2"}
    for version in (1, 2):
        logged = _read_log(root / f"version={version}")
        inputs = logged.column("inputs").combine_chunks()
        names = [inputs.type.field(i).name for i in range(inputs.type.num_fields)]
        assert names == ["customer_id", *MODEL_INPUTS], "entity keys, then every model input"
        ids = inputs.field("customer_id").to_pylist()
        online = _online(env, ids)
        for feature in FEATURES:
            assert inputs.field(feature).to_pylist() == online[feature], (version, feature)

    from mlpilot.features import Definitions, parity

    registered = Definitions.from_specs(env.client.features.load_specs().specs)
    report = parity(root, registered.service("churn"), definitions=registered, model=NAME)
    assert report.ok, report.render()
    assert report.rows >= len(customers)


def test_the_data_plane_picks_up_newly_applied_definitions(env: Env) -> None:
    from mlpilot.features import apply_definitions

    name = "churn-refresh"
    env.client.deployments.create(name, model="churn", version=1, features="churn")
    stale = {"instances": [{"customer_id": STALE, "channel": "web"}]}
    with _plane(env, name) as running:
        before = httpx.post(f"{running.url}/v1/models/{name}:predict", json=stale, timeout=30)
        assert before.status_code == 422, before.text  # last active 30+ hours ago: past the 24-hour TTL
        apply_definitions(env.client.features, churn_definitions(env.folder, activity_ttl=timedelta(hours=72)))
        _wait(
            lambda: httpx.post(f"{running.url}/v1/models/{name}:predict", json=stale, timeout=30).status_code == 200,
            "the data plane to serve the new definitions",
        )


def test_mlpilot_serve_follow_serves_a_featured_deployment(env: Env, tmp_path: Path) -> None:
    """The command line wires the control plane's feature registry and MLPILOT_FEATURES_ONLINE_URL."""
    import os
    import signal

    name = "churn-cli"
    env.client.deployments.create(name, model="churn", version=2, features="churn")
    port = free_port()
    variables = {
        **os.environ,
        "MLPILOT_HOME": str(tmp_path / "replica"),
        "MLPILOT_FEATURES_ONLINE_URL": env.online_url,
        "PYTHONPATH": os.getcwd(),
    }
    args = ["serve", "--follow", name, "--control-plane", env.control.url, "--port", str(port), "--threads", "1"]
    server = CliProcess(args, variables, port, health="/v2/health/ready")
    proc, url = server.proc, server.url
    try:
        _wait(server.ready, "mlpilot serve --follow")
        rows = [{"customer_id": c, "channel": _channel(c)} for c in COMPLETE[:5]]
        answer = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": rows}, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == _expected(env, 2, COMPLETE[:5])
    assert proc.returncode == 0, stderr
