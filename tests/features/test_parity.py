"""Parity: logged serving lookups replayed through the offline join: zero on clean data, every planted skew found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.features import (
    Definitions,
    Entity,
    Feature,
    FeatureLookup,
    FeatureService,
    FeatureView,
    ParquetSource,
    get_training_set,
    materialize,
    parity,
    push,
    view_from_frame,
)
from mlpilot.features._codec import to_us

from .conftest import hours

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
np = pytest.importorskip("numpy")

T = hours(100)


@pytest.fixture
def world(tmp_path: Path) -> Definitions:
    """Two views over Parquet: 200 customers' hourly stats (with a TTL) and a bitemporal profile."""
    rng = np.random.default_rng(1)
    (tmp_path / "stats").mkdir()
    n = 4_000
    stats = pa.table(
        {
            "cid": rng.integers(0, 200, n),
            "et": pa.array([hours(int(h)) for h in rng.integers(0, 100, n)], pa.timestamp("us")),
            "spend": rng.random(n),
            "visits": rng.integers(0, 50, n).astype(np.int32),
        }
    )
    pq.write_table(stats, tmp_path / "stats" / "part-0.parquet", row_group_size=1_000)
    profile = pa.table(
        {
            "cid": np.arange(200),
            "et": pa.array([hours(1)] * 200, pa.timestamp("us")),
            "loaded": pa.array([hours(2)] * 200, pa.timestamp("us")),
            "segment": [f"s{i % 7}" for i in range(200)],
        }
    )
    pq.write_table(profile, tmp_path / "profile.parquet")
    customer = Entity("customer", ["cid"])
    stats_view = FeatureView(
        "stats",
        [customer],
        ParquetSource([str(tmp_path / "stats" / "*.parquet"), str(tmp_path / "pushed" / "stats" / "*.parquet")]),
        "et",
        ttl=timedelta(hours=24),
        features=[Feature("spend", "float64"), Feature("visits", "int64")],
    )
    profile_view = FeatureView(
        "profile",
        [customer],
        ParquetSource(tmp_path / "profile.parquet"),
        "et",
        available_at_field="loaded",
        features=[Feature("segment", "string")],
    )
    (tmp_path / "pushed" / "stats").mkdir(parents=True)
    # an empty pushed file keeps the glob valid until something is pushed
    pq.write_table(stats.slice(0, 0), tmp_path / "pushed" / "stats" / "00-empty.parquet")
    return Definitions([customer, stats_view, profile_view, FeatureService("churn", [stats_view, profile_view])])


def serve(world: Definitions, store: Any, log: Path, times: list[datetime], customers: range) -> None:
    lookup = FeatureLookup(world.service("churn"), store=store, definitions=world, log_url=str(log))
    try:
        for i, at in enumerate(times):
            rows = [{"cid": c, "channel": "web"} for c in customers]
            lookup.lookup(rows, now_us=to_us(at, "at"), request_id=f"r{i}")
    finally:
        lookup.close()


def test_clean_data_has_zero_mismatches(world: Definitions, online_store: Any, tmp_path: Path) -> None:
    materialize(list(world.views.values()), end=T, now=T, store=online_store)
    serve(world, online_store, tmp_path / "log", [T, T + timedelta(minutes=30)], range(0, 210, 3))
    report = parity(tmp_path / "log", definitions=world)
    assert report.ok, report.render()
    assert report.rows == 2 * 70
    assert report.features == ("spend", "visits", "segment")
    assert report.compared == 3 * 140
    served = get_training_set(
        pa.table({"cid": list(range(0, 210, 3)), "event_timestamp": pa.array([T] * 70, pa.timestamp("us"))}),
        world.service("churn"),
        definitions=world,
    )
    assert served.report.views["stats"].matched > 50, "the replay compares real values, not just nulls"


@pytest.mark.s3
def test_a_log_on_s3_is_replayed_like_the_same_files_read_locally(
    world: Definitions,
    online_store: Any,
    tmp_path: Path,
    s3_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3fs

    monkeypatch.setenv("MLPILOT_S3_ENDPOINT_URL", s3_endpoint)
    materialize(list(world.views.values()), end=T, now=T, store=online_store)
    serve(world, online_store, tmp_path / "log", [T], range(0, 210, 3))
    # planted skew: a fresher value written straight to the online store, never to the offline log
    push(world.view("stats"), [{"cid": 3, "et": T, "spend": -1.0, "visits": 7}], store=online_store)
    serve(world, online_store, tmp_path / "log", [T + timedelta(minutes=5)], range(0, 210, 3))
    s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    files = sorted((tmp_path / "log").rglob("*.parquet"))
    for f in files:
        s3.put_file(str(f), f"{s3_bucket}/log/{f.relative_to(tmp_path / 'log').as_posix()}")
    local = parity(tmp_path / "log", definitions=world)
    remote = parity(f"s3://{s3_bucket}/log", definitions=world)  # the endpoint from MLPILOT_S3_ENDPOINT_URL
    assert len(files) >= 2
    assert remote.to_dict() == local.to_dict()
    assert remote.rows == 2 * 70
    assert remote.by_feature == {"spend": 1, "visits": 1, "segment": 0}, remote.render()


def test_a_value_pushed_online_only_is_caught(world: Definitions, online_store: Any, tmp_path: Path) -> None:
    materialize(list(world.views.values()), end=T, now=T, store=online_store)
    # Planted skew: a fresher value written straight to the online store, never to the offline log.
    push(world.view("stats"), [{"cid": 3, "et": T, "spend": -1.0, "visits": 7}], store=online_store)
    serve(world, online_store, tmp_path / "log", [T + timedelta(minutes=1)], range(10))
    report = parity(str(tmp_path / "log"), definitions=world)
    assert report.by_feature == {"spend": 1, "visits": 1, "segment": 0}
    assert report.mismatches == 2
    spend = next(m for m in report.examples if m.feature == "spend")
    assert (spend.request_id, spend.row, spend.keys) == ("r0", 3, {"cid": 3})
    assert spend.online == -1.0
    assert spend.offline != -1.0
    assert spend.time == (T + timedelta(minutes=1)).replace(tzinfo=UTC)
    assert "2 mismatches" in report.render()


def test_pushed_with_its_offline_log_stays_in_parity(world: Definitions, online_store: Any, tmp_path: Path) -> None:
    materialize(list(world.views.values()), end=T, now=T, store=online_store)
    push(
        world.view("stats"),
        [{"cid": 3, "et": T, "spend": -1.0, "visits": 7}],
        store=online_store,
        offline_log=tmp_path / "pushed",
    )
    serve(world, online_store, tmp_path / "log", [T + timedelta(minutes=1)], range(10))
    assert parity(tmp_path / "log", definitions=world).ok


def test_a_stale_materialization_is_caught(world: Definitions, online_store: Any, tmp_path: Path) -> None:
    materialize(list(world.views.values()), end=hours(50), now=hours(50), store=online_store)
    serve(world, online_store, tmp_path / "log", [T], range(0, 200, 20))
    report = parity(tmp_path / "log", definitions=world, max_examples=3)
    assert report.by_feature["spend"] > 0
    assert report.by_feature["segment"] == 0, "the profile did not change after hour 50"
    assert len(report.examples) == 3
    assert report.to_dict()["mismatch_rate"] == report.mismatches / report.compared


def test_float_tolerance_and_feature_filter(world: Definitions, online_store: Any, tmp_path: Path) -> None:
    materialize(list(world.views.values()), end=T, now=T, store=online_store)
    push(world.view("stats"), [{"cid": 3, "et": T, "spend": 0.5, "visits": 1}], store=online_store)
    serve(world, online_store, tmp_path / "log", [T], range(3, 4))
    only_segment = parity(tmp_path / "log", ["profile:segment"], definitions=world)
    assert only_segment.features == ("segment",)
    assert only_segment.ok
    assert parity(tmp_path / "log", definitions=world, tolerance=1.0).by_feature["spend"] == 0
    assert parity(tmp_path / "log", definitions=world).by_feature["spend"] == 1


def test_prediction_logs_are_replayed_too(world: Definitions, online_store: Any, tmp_path: Path) -> None:
    """The model server's log: looked-up inputs plus entity_id, at the request's arrival time."""
    from mlpilot.serving.predlog import LogRecord, PredictionLog

    materialize(list(world.views.values()), end=T, now=T, store=online_store)
    lookup = FeatureLookup(world.service("churn"), store=online_store, definitions=world)
    arrived_ms = to_us(T + timedelta(minutes=5), "t") // 1000
    predlog = PredictionLog(str(tmp_path / "predictions"))
    customers = [1, 4, 8, 150, 999]
    columns = lookup.lookup([{"cid": c} for c in customers], now_us=arrived_ms * 1000)
    columns["spend"][1] = 123.0  # planted: the model saw another value than the feature store holds
    inputs = {
        name: np.array(columns[name], dtype=float if name == "spend" else object) for name in ("spend", "segment")
    }
    predlog.record(
        LogRecord(
            "req",
            arrived_ms,
            "v1",
            "churn",
            1,
            len(customers),
            inputs,
            {"output": np.zeros(5)},
            0.001,
            entity_id=[str(c) for c in customers],
        )
    )
    predlog.close()
    report = parity(tmp_path / "predictions", ["stats:spend", "profile:segment"], definitions=world, model="churn")
    assert report.rows == 5
    assert report.by_feature == {"spend": 1, "segment": 0}
    assert report.examples[0].keys == {"cid": 4}
    with pytest.raises(InvalidInputError, match="pass the endpoint's features"):
        parity(tmp_path / "predictions", definitions=world)
    with pytest.raises(InvalidInputError, match="no input 'visits'"):
        parity(tmp_path / "predictions", ["stats"], definitions=world)


def test_the_demo_churn_features_are_in_parity(online_store: Any, tmp_path: Path) -> None:
    """The demo's path: churn features from a DataFrame, a point-in-time training set, materialize, serve."""
    from mlpilot.demo.data import FEATURES, make_churn

    frame = make_churn(2_000, seed=3)
    profile = view_from_frame("churn_profile", frame, ["customer_id"], "signup_time", features=FEATURES)
    assert profile.entities[0].name == "customer"
    labels = frame[["customer_id", "churned"]].assign(event_timestamp=frame["signup_time"] + np.timedelta64(30, "D"))
    train = get_training_set(labels, [profile], output="pandas").data
    assert list(train.columns) == ["customer_id", "churned", "event_timestamp", *FEATURES]
    assert train["tenure_months"].tolist() == frame["tenure_months"].tolist()
    end = datetime(2026, 1, 1)
    materialize([profile], end=end, now=end, store=online_store)
    lookup = FeatureLookup([profile], store=online_store, log_url=str(tmp_path / "log"))
    got = lookup.lookup([{"customer_id": int(c)} for c in frame["customer_id"][:50]], now_us=to_us(end, "end"))
    lookup.close()
    assert got["plan"] == frame["plan"][:50].tolist()
    report = parity(tmp_path / "log", [profile])
    assert report.ok
    assert report.compared == 50 * len(FEATURES)
