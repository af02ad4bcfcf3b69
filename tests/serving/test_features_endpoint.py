"""Feature-service endpoints end to end: a registered scikit-learn model served on 127.0.0.1 whose callers send
customer ids; the server looks the features up online (SQLite and Redis), logs them, and parity holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from mlpilot.errors import ConfigError, InvalidInputError
from mlpilot.serving import FeaturesConfig, ModelConfig, RegistrySource, ServeConfig, load_serve_config
from mlpilot.serving.testing import RunningServer, serve_in_thread
from tests.features.conftest import online_url, redis_url  # noqa: F401  (fixtures: SQLite and Redis stores)
from tests.serving.conftest import wait_for

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

MODEL_INPUTS = ["tenure", "plan", "spend", "visits", "channel"]
FEATURES = ["tenure", "plan", "spend", "visits"]
COMPLETE = list(range(40))  # customers with every feature online
STALE = 45  # activity older than the view's 24-hour TTL
UNKNOWN = 999


@dataclass
class World:
    """One metadata store with a registered model and applied definitions, shared by the module's tests."""

    folder: Path
    db_url: str
    client: Any
    model: Any
    defs: Any


def _frames(now: datetime) -> tuple[Any, Any]:
    rng = np.random.default_rng(7)
    ids = np.arange(60)
    profile = pa.table(
        {
            "customer_id": ids,
            "signup": pa.array([now - timedelta(days=30 + int(i)) for i in ids], pa.timestamp("us")),
            "tenure": rng.uniform(1, 60, len(ids)),
            "plan": [("basic", "plus", "pro")[i % 3] for i in ids],
        }
    )
    rows: list[dict[str, Any]] = []
    for cid in ids[:50]:
        # Customers 40-49 were last active 30+ hours ago: past the TTL, online and offline alike.
        hours = rng.integers(1, 20, 3) if cid < 40 else rng.integers(30, 40, 3)
        rows += [
            {
                "customer_id": int(cid),
                "et": now - timedelta(hours=int(h)),
                "spend": float(rng.uniform(0, 100)),
                "visits": int(rng.integers(0, 30)),
            }
            for h in hours
        ]
    activity = pa.Table.from_pylist(rows).cast(
        pa.schema(
            [
                ("customer_id", pa.int64()),
                ("et", pa.timestamp("us")),
                ("spend", pa.float64()),
                ("visits", pa.int64()),
            ]
        )
    )
    return profile, activity


def _train(seed: int) -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(seed)
    n = 300
    frame = pd.DataFrame(
        {
            "tenure": rng.uniform(1, 60, n),
            "plan": rng.choice(["basic", "plus", "pro"], n).astype(object),
            "spend": rng.uniform(0, 100, n),
            "visits": rng.integers(0, 30, n),
            "channel": rng.choice(["web", "app"], n).astype(object),
        }
    )
    label = ((frame["tenure"] < 20) ^ (frame["channel"] == "app")).astype(int)
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ["tenure", "spend", "visits"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "channel"]),
        ]
    )
    return make_pipeline(prep, LogisticRegression()).fit(frame, label), frame


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pytest.importorskip("duckdb")
    pytest.importorskip("sklearn")
    import mlpilot
    from mlpilot.config import load_settings
    from mlpilot.features import (
        Definitions,
        Entity,
        Feature,
        FeatureService,
        FeatureView,
        ParquetSource,
        apply_definitions,
    )

    folder = tmp_path_factory.mktemp("features-world")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=1)
    profile, activity = _frames(now)
    pq.write_table(profile, folder / "profile.parquet")
    pq.write_table(activity, folder / "activity.parquet")
    customer = Entity("customer", ["customer_id"])
    defs = Definitions(
        [
            FeatureService(
                "churn",
                [
                    FeatureView(
                        "profile",
                        [customer],
                        ParquetSource(str(folder / "profile.parquet")),
                        "signup",
                        features=[Feature("tenure", "float64"), Feature("plan", "string")],
                    ),
                    FeatureView(
                        "activity",
                        [customer],
                        ParquetSource(str(folder / "activity.parquet")),
                        "et",
                        ttl=timedelta(hours=24),
                        features=[Feature("spend", "float64"), Feature("visits", "int64")],
                    ),
                ],
            )
        ]
    )
    db_url = f"sqlite:///{folder / 'meta.db'}"
    settings = load_settings(home=str(folder / "home"), db_url=db_url, artifact_url=str(folder / "artifacts"))
    client = mlpilot.Client(settings=settings)
    model, frame = _train(0)
    client.log_model(model, "churn", input_example=frame.head(5), aliases=["champion"])
    apply_definitions(client.features, defs)
    yield World(folder, db_url, client, model, defs)
    client.close()


@dataclass
class Served:
    running: RunningServer
    store: Any
    log: Path

    @property
    def url(self) -> str:
        return self.running.url


def _serve(world: World, online: str, log: Path, **options: Any) -> Served:
    from mlpilot.features import materialize, open_online_store

    store = open_online_store(online)
    materialize(list(world.defs.views.values()), store=store)
    source = RegistrySource(world.client.registry, world.client.artifacts, features=world.client.features)
    running = serve_in_thread(
        source,
        ["churn@champion"],
        features={"churn": "churn"},
        features_online_url=online,
        log_url=log,
        **options,
    )
    return Served(running, store, log)


@pytest.fixture
def served(world: World, online_url: str, tmp_path: Path) -> Iterator[Served]:  # noqa: F811
    """The model served by customer id, its features materialized into a fresh store (SQLite, then Redis)."""
    s = _serve(world, online_url, tmp_path / "predictions")
    yield s
    s.running.stop()
    s.store.close()


@pytest.fixture(scope="module")
def local(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One SQLite-backed server for the tests that only read."""
    folder = tmp_path_factory.mktemp("local")
    s = _serve(world, f"sqlite:///{folder / 'online.db'}", folder / "predictions")
    yield s
    s.running.stop()
    s.store.close()


def _read_log(folder: Path) -> Any:
    return pa.concat_tables([pq.read_table(f) for f in sorted(folder.rglob("*.parquet"))])


def _online(world: World, store: Any, customers: list[int]) -> dict[str, list[Any]]:
    from mlpilot.features import get_online_features

    rows = [{"customer_id": c} for c in customers]
    return get_online_features(rows, world.defs.service("churn"), store=store, definitions=world.defs)


def _channels(customers: list[int]) -> list[str]:
    return ["web" if c % 2 else "app" for c in customers]


def _expected(world: World, store: Any, customers: list[int]) -> tuple[Any, Any]:
    online = _online(world, store, customers)
    frame = pd.DataFrame({**{f: online[f] for f in FEATURES}, "channel": _channels(customers)})[MODEL_INPUTS]
    return world.model.predict(frame), world.model.predict_proba(frame)


def test_predictions_by_entity_key_equal_predictions_on_the_looked_up_values(world: World, served: Served) -> None:
    customers = COMPLETE[::2]
    channels = _channels(customers)
    predicted, proba = _expected(world, served.store, customers)
    rows = [{"customer_id": c, "channel": ch} for c, ch in zip(customers, channels, strict=True)]
    with httpx.Client(base_url=served.url, timeout=30) as http:
        v1 = http.post("/v1/models/churn:predict", json={"instances": rows, "outputs": ["probabilities"]})
        assert v1.status_code == 200, v1.text
        assert v1.json()["predictions"] == predicted.tolist()
        np.testing.assert_allclose(v1.json()["outputs"]["probabilities"], proba, rtol=1e-12)
        columns = {"customer_id": customers, "channel": channels}
        assert http.post("/v1/models/churn:predict", json={"inputs": columns}).json()["predictions"] == (
            predicted.tolist()
        )
        oip = http.post(
            "/v2/models/churn/infer",
            json={
                "id": "req-oip",
                "inputs": [
                    {"name": "customer_id", "datatype": "INT64", "shape": [len(customers)], "data": customers},
                    {"name": "channel", "datatype": "BYTES", "shape": [len(customers), 1], "data": channels},
                ],
            },
        )
        assert oip.status_code == 200, oip.text
        assert oip.json()["id"] == "req-oip"
        assert oip.json()["outputs"][0]["data"] == predicted.tolist()
        for body in (
            {"dataframe_records": rows},
            {"dataframe_split": {"columns": ["customer_id", "channel"], "data": [list(r.values()) for r in rows]}},
            {"instances": rows},
            {"inputs": columns},
        ):
            answer = http.post("/invocations", json=body)
            assert answer.status_code == 200, (body, answer.text)
            assert answer.json() == {"predictions": predicted.tolist()}


def test_prediction_log_holds_the_looked_up_values_and_parity_is_zero(
    world: World, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpilot.features import Definitions, parity

    with httpx.Client(base_url=served.url, timeout=30) as http:
        for start in range(0, 40, 8):
            customers = COMPLETE[start : start + 8]
            rows = [{"customer_id": c, "channel": ch} for c, ch in zip(customers, _channels(customers), strict=True)]
            answer = http.post(
                "/v1/models/churn:predict", json={"instances": rows}, headers={"x-request-id": f"r{start}"}
            )
            assert answer.status_code == 200, answer.text
        refused = http.post("/v1/models/churn:predict", json={"instances": [{"channel": "web"}]})
        assert refused.status_code == 400
    served.running.stop()  # flushes the prediction log
    logged = _read_log(served.log)
    inputs = logged.column("inputs").combine_chunks()
    names = [inputs.type.field(i).name for i in range(inputs.type.num_fields)]
    assert names == ["customer_id", *MODEL_INPUTS], "entity keys, then every model input"
    assert logged.num_rows == 40, "the refused request is not logged"
    order = np.argsort(inputs.field("customer_id").to_numpy())
    online = _online(world, served.store, COMPLETE)
    for name in FEATURES:
        got = inputs.field(name).to_numpy(zero_copy_only=False)[order].tolist()
        assert got == online[name], name
    assert logged.column("entity_id").to_pylist() == [str(c) for c in inputs.field("customer_id").to_pylist()]
    assert set(logged.column("request_id").to_pylist()) == {f"r{s}" for s in range(0, 40, 8)}

    registered = Definitions.from_specs(world.client.features.load_specs().specs)
    report = parity(served.log, registered.service("churn"), definitions=registered, model="churn")
    assert report.ok, report.render()
    assert (report.rows, report.compared) == (40, 40 * len(FEATURES))

    from mlpilot.cli.context import settings
    from mlpilot.cli.main import cli

    settings.cache_clear()
    monkeypatch.chdir(tmp_path)  # no features.py here: the CLI replays against the registered definitions
    result = CliRunner().invoke(
        cli, ["features", "parity", "--log", str(served.log), "-s", "churn", "--url", world.db_url, "--check"]
    )
    settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "40 logged rows, 160 values compared: 0 mismatches" in result.output


def test_a_value_pushed_online_only_is_counted_as_skew(
    world: World, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpilot.features import parity, push

    planted = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    push(
        world.defs.view("activity"),
        [{"customer_id": 3, "et": planted, "spend": 999.0, "visits": -1}],
        store=served.store,
    )
    rows = [{"customer_id": c, "channel": "web"} for c in (2, 3, 4)]
    with httpx.Client(base_url=served.url, timeout=30) as http:
        answer = http.post("/invocations", json={"dataframe_records": rows})
        assert answer.status_code == 200, answer.text
    served.running.stop()
    report = parity(served.log, world.defs.service("churn"), definitions=world.defs, model="churn")
    assert report.by_feature == {"tenure": 0, "plan": 0, "spend": 1, "visits": 1}
    spend = next(m for m in report.examples if m.feature == "spend")
    assert (spend.keys, spend.online) == ({"customer_id": 3}, 999.0)
    assert spend.offline != 999.0

    from mlpilot.cli.context import settings
    from mlpilot.cli.main import cli

    settings.cache_clear()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["features", "parity", "--log", str(served.log), "-s", "churn", "--url", world.db_url, "--check"]
    )
    settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "2 mismatches" in result.output


@pytest.mark.parametrize(
    ("route", "body", "status", "field", "message"),
    [
        (
            "/v1/models/churn:predict",
            {"instances": [{"customer_id": 1, "channel": "web"}] * 3 + [{"channel": "web"}]},
            400,
            "instances[3].customer_id",
            "missing entity key",
        ),
        (
            "/v1/models/churn:predict",
            {"instances": [{"customer_id": None, "channel": "web"}]},
            400,
            "instances[0].customer_id",
            "integers or strings, got null",
        ),
        (
            "/v1/models/churn:predict",
            {"inputs": {"channel": ["web"]}},
            400,
            "inputs.customer_id",
            "missing entity key",
        ),
        (
            "/v1/models/churn:predict",
            {"instances": [{"customer_id": 1, "channel": "web", "tenure": 3.0}]},
            400,
            "instances[0].tenure",
            "is looked up from feature service 'churn'",
        ),
        (
            "/v1/models/churn:predict",
            {"instances": [{"customer_id": 1, "channel": "web"}, {"customer_id": 2}]},
            400,
            "instances[1].channel",
            "requests must send it",
        ),
        ("/v1/models/churn:predict", {"instances": [[1, "web"]]}, 400, "instances[0]", "rows are named"),
        (
            "/v1/models/churn:predict",
            {"instances": [{"customer_id": 1, "channel": "web", "chanel": "app"}]},
            400,
            "instances[0].chanel",
            "unknown field: expected entity keys (customer_id) and the request-time inputs of model 'churn' (channel)",
        ),
        (
            "/invocations",
            {"dataframe_split": {"data": [[1, "web"]]}},
            400,
            "dataframe_split",
            "'columns'",
        ),
        (
            "/v1/models/churn:predict",
            {"instances": [{"customer_id": 1, "channel": "web"}, {"customer_id": UNKNOWN, "channel": "web"}]},
            422,
            "instances[1].tenure",
            f"no value for customer_id={UNKNOWN}",
        ),
        (
            "/invocations",
            {"inputs": {"customer_id": [STALE], "channel": ["app"]}},
            422,
            "inputs.spend[0]",
            f"no value for customer_id={STALE}",
        ),
    ],
)
def test_bad_requests_name_the_field(
    local: Served, route: str, body: dict[str, Any], status: int, field: str, message: str
) -> None:
    answer = httpx.post(f"{local.url}{route}", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    doc = answer.json()
    assert doc["field"] == field, doc
    assert message in doc["error"], doc
    assert doc["request_id"] == answer.headers["x-request-id"]


def test_binary_tensors_and_csv_are_refused(local: Served) -> None:
    import struct

    raw = struct.pack("<q", 1)
    header = (
        b'{"inputs": [{"name": "customer_id", "datatype": "INT64", "shape": [1], '
        b'"parameters": {"binary_data_size": 8}}]}'
    )
    answer = httpx.post(
        f"{local.url}/v2/models/churn/infer",
        content=header + raw,
        headers={"inference-header-content-length": str(len(header)), "content-type": "application/octet-stream"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "customer_id"
    assert "binary tensor data is not accepted" in answer.json()["error"]
    csv = httpx.post(
        f"{local.url}/invocations", content=b"customer_id,channel\n1,web\n", headers={"content-type": "text/csv"}
    )
    assert (csv.status_code, csv.json()["field"]) == (400, "body")


def test_lookup_time_and_missing_values_are_metrics(local: Served) -> None:
    ok = httpx.post(f"{local.url}/v1/models/churn:predict", json={"instances": [{"customer_id": 5, "channel": "app"}]})
    assert ok.status_code == 200
    unknown = httpx.post(
        f"{local.url}/v1/models/churn:predict", json={"instances": [{"customer_id": UNKNOWN, "channel": "app"}]}
    )
    assert unknown.status_code == 422
    text = httpx.get(f"{local.url}/metrics").text
    counts = [
        line for line in text.splitlines() if line.startswith("mlpilot_serve_feature_lookup_duration_seconds_count")
    ]
    assert counts
    assert counts[0].startswith('mlpilot_serve_feature_lookup_duration_seconds_count{model="churn"}')
    assert float(counts[0].split()[-1]) >= 2
    missing = [
        line
        for line in text.splitlines()
        if line.startswith('mlpilot_serve_feature_missing_values_total{model="churn"}')
    ]
    assert missing
    assert float(missing[0].split()[-1]) >= 4, "the unknown customer's four features"


def test_a_hot_swap_keeps_the_lookup(world: World, tmp_path: Path) -> None:
    s = _serve(world, f"sqlite:///{tmp_path / 'online.db'}", tmp_path / "predictions")
    try:
        first = httpx.post(
            f"{s.url}/v1/models/churn:predict", json={"instances": [{"customer_id": 7, "channel": "web"}]}
        )
        assert first.json()["version"] == 1
        model, frame = _train(1)
        version = world.client.log_model(model, "churn", input_example=frame.head(5)).version
        world.client.set_alias("churn", "champion", version)
        events = s.running.call(s.running.server.refresh())
        assert [(e.old, e.new) for e in events] == [(1, version)]
        after = httpx.post(
            f"{s.url}/v1/models/churn:predict", json={"instances": [{"customer_id": 7, "channel": "web"}]}
        )
        assert after.status_code == 200, after.text
        assert after.json()["version"] == version
        online = _online(world, s.store, [7])
        expected = model.predict(pd.DataFrame({**{f: online[f] for f in FEATURES}, "channel": ["web"]})[MODEL_INPUTS])
        assert after.json()["predictions"] == expected.tolist()
    finally:
        world.client.set_alias("churn", "champion", 1)
        s.running.stop()
        s.store.close()
    logged = _read_log(tmp_path / "predictions" / "model=churn" / f"version={version}")
    assert logged.column("inputs").combine_chunks().field("tenure").to_pylist() == online["tenure"]


def test_configs_name_the_feature_service(world: World, tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[serve]\n[[serve.models]]\nref = "churn@champion"\nfeatures = { service = "churn" }\n')
    assert load_serve_config(toml).models[0].features == FeaturesConfig(service="churn")
    toml.write_text('[[serve.models]]\nref = "churn@champion"\nfeatures = { service = "churn", servce = "x" }\n')
    with pytest.raises(ConfigError, match=r"models\.0\.features\.servce") as exc:
        load_serve_config(toml)
    assert exc.value.key == "models.0.features.servce"
    with pytest.raises(InvalidInputError, match="'fraud' names none of the served models"):
        ServeConfig.from_refs(["churn@champion"]).with_features({"fraud": "churn"})
    assert ModelConfig(ref="a/1", features=FeaturesConfig(service="s")).batch_settings(
        ServeConfig.from_refs(["a/1"]).batching
    )

    source = RegistrySource(world.client.registry, world.client.artifacts, features=world.client.features)
    online = f"sqlite:///{tmp_path / 'online.db'}"
    with pytest.raises(ConfigError, match=r"unknown feature service 'nope' \(known: churn\)") as exc:
        serve_in_thread(source, ["churn@champion"], features={"churn": "nope"}, features_online_url=online)
    assert "model 'churn@champion'" in exc.value.message
    assert exc.value.key == "features.service"
    other = FeaturesConfig(service="churn", project="elsewhere", online_url=online)
    with pytest.raises(ConfigError, match=r"project 'elsewhere'.*unknown feature service 'churn' \(none defined\)"):
        serve_in_thread(source, ["churn@champion"], features={"churn": other})
    bare = RegistrySource(world.client.registry, world.client.artifacts)
    with pytest.raises(ConfigError, match="no feature registry"):
        serve_in_thread(bare, ["churn@champion"], features={"churn": "churn"}, features_online_url=online)

    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).random((50, 4))
    world.client.log_model(LogisticRegression().fit(X, X[:, 0] > 0.5), "tensor", input_example=X[:3])
    with pytest.raises(ConfigError, match="takes one tensor"):
        serve_in_thread(source, ["tensor/1"], features={"tensor": "churn"}, features_online_url=online)


def test_cli_feature_flag_needs_one_model() -> None:
    from mlpilot.cli.context import settings
    from mlpilot.cli.main import cli

    settings.cache_clear()
    result = CliRunner().invoke(cli, ["serve", "a@x", "b@y", "--features", "churn"])
    assert result.exit_code == 2, result.output
    assert "--features" in result.output
    assert result.output.count("\n") <= 2


@pytest.mark.slow
def test_mlpilot_serve_with_features_from_the_command_line(world: World, tmp_path: Path) -> None:
    """``mlpilot serve churn@champion --features churn``, then ``mlpilot features parity`` on its log."""
    from mlpilot.features import materialize

    online = f"sqlite:///{tmp_path / 'online.db'}"
    materialize(list(world.defs.views.values()), store=online)
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "MLPILOT_HOME": str(tmp_path / "home"),
        "MLPILOT_DB_URL": world.db_url,
        "MLPILOT_ARTIFACT_URL": str(world.folder / "artifacts"),
        "MLPILOT_FEATURES_ONLINE_URL": online,
        "MLPILOT_PREDICTIONS_URL": str(tmp_path / "predictions"),
    }
    command = ["serve", "churn@champion", "--features", "churn", "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlpilot.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=90, what="mlpilot serve --features")
        rows = [{"customer_id": c, "channel": "web"} for c in COMPLETE[:5]]
        answer = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert "mlpilot serve on" in stderr, stderr
    deadline = time.monotonic() + 10
    while not list((tmp_path / "predictions").rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.1)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlpilot.cli",
            "features",
            "parity",
            "--log",
            str(tmp_path / "predictions"),
            "-s",
            "churn",
            "--check",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 logged rows, 20 values compared: 0 mismatches" in result.stdout
