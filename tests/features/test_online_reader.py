"""OnlineReader: the stores' payload fast path answers exactly what the basic ``read`` contract does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from mlpilot.features import Entity, Feature, FeatureView, OnlineReader, PayloadReader, TableSource, materialize

from .conftest import hours

pa = pytest.importorskip("pyarrow")


class BasicStore:
    """A real store seen through the basic contract only (write_batch, read, read_watermark, close)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write_batch(self, view: str, rows: Any, *, watermark: int | None = None) -> None:
        self.inner.write_batch(view, rows, watermark=watermark)

    def read(self, view: str, keys: Any) -> Any:
        return self.inner.read(view, keys)

    def read_watermark(self, view: str) -> int | None:
        return self.inner.read_watermark(view)

    def close(self) -> None:
        self.inner.close()


def _views() -> list[FeatureView]:
    cids = [1, 1, 2, 3, 4, 5]
    ets = [hours(0), hours(30), hours(10), hours(26), hours(25.999), hours(40)]
    plain = pa.table(
        {
            "cid": pa.array(cids, pa.int64()),
            "et": pa.array(ets, pa.timestamp("us")),
            "x": [1.0, 2.0, float("nan"), 4.0, 5.0, None],
            "n": pa.array([1, 2, 3, None, 5, 6], pa.int32()),
        }
    )
    mixed = pa.table(
        {
            "region": ["eu", "eu", "us", "us"],
            "cid": pa.array([1, 2, 1, 3], pa.int64()),
            "et": pa.array([hours(1), hours(2), hours(3), hours(4)], pa.timestamp("us")),
            "plan": ["pro", None, "basic", "ü"],
            "seen": pa.array([hours(0.5), None, hours(2), hours(3)], pa.timestamp("us")),
            "since": pa.array([date(2020, 1, 1), date(2021, 2, 3), None, date(1969, 12, 31)], pa.date32()),
        }
    )
    return [
        FeatureView(
            "txn",
            [Entity("customer", ["cid"])],
            TableSource(plain),
            "et",
            ttl=timedelta(hours=24),
            features=[Feature("x", "float64"), Feature("n", "int32")],
        ),
        FeatureView(
            "profile",
            [Entity("customer", ["cid"]), Entity("region", ["region"])],
            TableSource(mixed),
            "et",
            features=[Feature("plan", "string"), Feature("seen", "timestamp"), Feature("since", "date")],
        ),
    ]


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


@pytest.mark.parametrize("at", [hours(41), hours(50), hours(50.001), hours(54), hours(100)])
def test_fast_path_matches_the_basic_contract(online_store: Any, at: datetime) -> None:
    views = _views()
    materialize(views, end=hours(41), now=hours(41), store=online_store)
    assert isinstance(online_store, PayloadReader)
    basic = BasicStore(online_store)
    assert not isinstance(basic, PayloadReader)
    rows = {"cid": [1, 2, 3, 4, 5, 6, 1, 3], "region": ["eu", "eu", "us", "us", "eu", "us", "us", "eu"]}
    fast = OnlineReader(views, store=online_store, full_names=True).read(rows, now=at)
    slow = OnlineReader(views, store=basic, full_names=True).read(rows, now=at)
    assert list(fast) == list(slow)
    for name in fast:
        assert all(_same(a, b) for a, b in zip(fast[name], slow[name], strict=True)), name
    if at == hours(50):  # spelled out once, at the TTL boundary: event_time < now - ttl is expired, == is not
        assert fast["txn__x"][:5] == [2.0, None, 4.0, None, None]
        assert fast["profile__plan"] == ["pro", None, "ü", None, None, None, "basic", None]
        assert fast["profile__seen"][0] == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
        assert fast["profile__since"][2] == date(1969, 12, 31)


def test_key_types_other_than_int_take_the_checked_path(online_store: Any) -> None:
    from mlpilot.errors import InvalidInputError

    [txn, _] = _views()
    materialize([txn], end=hours(41), now=hours(41), store=online_store)
    reader = OnlineReader([txn], store=online_store)
    np = pytest.importorskip("numpy")
    assert reader.read({"cid": [np.int64(1), 1]}, now=hours(41))["x"] == [2.0, 2.0]
    assert reader.read({"cid": ["1"]}, now=hours(41))["x"] == [None]  # the string "1" is another entity
    with pytest.raises(InvalidInputError, match=r"entity_rows\.cid: join key values must be integers or strings"):
        reader.read({"cid": [1, True]}, now=hours(41))


def test_service_follows_the_registry_version(store: Any, tmp_path: Any) -> None:
    """Another process's apply is picked up (the version number is checked, specs re-read only when it moved)."""
    import pyarrow.parquet as pq

    from mlpilot.features import FeatureStoreService, ParquetSource, StoreFeatureRegistry, apply_definitions
    from mlpilot.features.catalog import Definitions

    now = datetime.now(UTC).replace(tzinfo=None)
    pq.write_table(
        pa.table({"cid": [1], "et": pa.array([now], pa.timestamp("us")), "x": [1.5], "n": pa.array([7], pa.int32())}),
        tmp_path / "txn.parquet",
    )
    customer = Entity("customer", ["cid"])

    def definitions(*features: str) -> Definitions:
        dtypes = {"x": "float64", "n": "int32"}
        view = FeatureView(
            "txn",
            [customer],
            ParquetSource(tmp_path / "txn.parquet"),
            "et",
            features=[Feature(f, dtypes[f]) for f in features],
        )
        return Definitions([customer, view])

    elsewhere = StoreFeatureRegistry(store)  # applies that bypass the service, as from another process
    apply_definitions(elsewhere, definitions("x"))
    service = FeatureStoreService(store, online=f"sqlite:///{tmp_path / 'online.db'}", refresh_interval=0)
    try:
        materialize(list(definitions("x").views.values()), store=service.online)
        first = service.online_features([{"cid": 1}], ["txn"])
        assert (first.version, first.columns) == (1, {"cid": [1], "x": [1.5]})
        assert service.online_features([{"cid": 1}], ["txn"]).columns == first.columns  # unchanged version
        apply_definitions(elsewhere, definitions("x", "n"))
        materialize(list(definitions("x", "n").views.values()), store=service.online, incremental=False)
        second = service.online_features([{"cid": 1}], ["txn"])
        assert (second.version, second.columns) == (2, {"cid": [1], "x": [1.5], "n": [7]})
        assert elsewhere.current_version() == 2
    finally:
        service.close()
