"""materialize + online lookup: online serves what the training-set join picks at the same time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpilot.errors import InvalidInputError, StoreError
from mlpilot.features import (
    Entity,
    Feature,
    FeatureView,
    OnlineReader,
    ParquetSource,
    StoredRow,
    TableSource,
    get_online_features,
    get_training_set,
    materialize,
    open_online_store,
)

from .conftest import hours, table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def offline_at(view: FeatureView, keys: list[int], at: datetime) -> list[Any]:
    entity_df = table(cid=keys, event_timestamp=[at] * len(keys))
    return get_training_set(entity_df, [view]).data.column("x").to_pylist()


def online_at(view: FeatureView, keys: list[int], at: datetime, store: Any) -> list[Any]:
    return get_online_features({"cid": keys}, [view], store=store, now=at)["x"]


def test_online_matches_offline_at_the_materialization_time(make_view: Any, online_store: Any) -> None:
    rows = table(
        cid=[1, 1, 1, 2, 2, 3, 4],
        et=[hours(0), hours(5), hours(5), hours(1), hours(3), hours(0), hours(9)],
        av=[hours(0), hours(6), hours(8), hours(1), hours(20), hours(0), hours(9)],
        x=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
    )
    view = make_view(rows, available_at="av", ttl=timedelta(hours=7))
    keys = [1, 2, 3, 4, 5]
    at = hours(7)
    [result] = materialize([view], end=at, now=at, store=online_store)
    assert result.rows_written == 3  # key 3 sits exactly on the TTL edge; key 4's row is in the future
    assert online_store.read_watermark("txn") == result.end_us
    expected = offline_at(view, keys, at)
    assert expected == [2.0, 4.0, 6.0, None, None]
    assert online_at(view, keys, at, online_store) == expected
    # later, TTL expires key 2 online exactly as offline
    later = hours(8) + timedelta(microseconds=1)
    assert online_at(view, keys, later, online_store)[1] is None
    assert offline_at(view, [2], later) == [None]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10), st.integers(-1, 4), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 12),
    st.one_of(st.none(), st.integers(1, 6)),
    st.sampled_from(["memory", "duckdb"]),
)
def test_online_equals_offline_on_random_data(
    raw: list[tuple[int, int, int, bool]], at_h: int, ttl: int | None, engine: Any
) -> None:
    rows = pa.table(
        {
            "cid": pa.array([c for c, _, _, _ in raw], pa.int64()),
            "et": pa.array([hours(e) for _, e, _, _ in raw], pa.timestamp("us")),
            "av": pa.array([None if never else hours(e + d) for _, e, d, never in raw], pa.timestamp("us")),
            "x": pa.array([float(i) for i in range(len(raw))], pa.float64()),
        }
    )
    view = FeatureView(
        "txn",
        [Entity("customer", ["cid"])],
        TableSource(rows),
        "et",
        available_at_field="av",
        ttl=None if ttl is None else timedelta(hours=ttl),
        features=[Feature("x", "float64")],
    )
    at = hours(at_h)
    keys = [0, 1, 2, 3]
    with open_online_store("sqlite:///:memory:") as store:
        materialize([view], end=at, now=at, store=store, engine=engine)
        assert online_at(view, keys, at, store) == offline_at(view, keys, at)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10), st.integers(-1, 4), st.booleans()),
        min_size=1,
        max_size=14,
    ),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 6)),
    st.one_of(st.none(), st.integers(1, 4)),
    st.integers(2, 12),
)
def test_both_engines_write_the_same_rows_and_watermarks(
    raw: list[tuple[int, int, int, bool]], bitemporal: bool, ttl: int | None, span: int | None, at_h: int
) -> None:
    """Two incremental runs (the second over a window after the first's watermark), sliced or not."""
    rows = pa.table(
        {
            "cid": pa.array([c for c, _, _, _ in raw], pa.int64()),
            "et": pa.array([hours(e) for _, e, _, _ in raw], pa.timestamp("us")),
            "av": pa.array([None if never else hours(e + d) for _, e, d, never in raw], pa.timestamp("us")),
            "x": pa.array([float(i) for i in range(len(raw))], pa.float64()),
            "when": pa.array([hours(i) for i in range(len(raw))], pa.timestamp("us")),
        }
    )
    view = FeatureView(
        "txn",
        [Entity("customer", ["cid"])],
        TableSource(rows),
        "et",
        available_at_field="av" if bitemporal else None,
        ttl=None if ttl is None else timedelta(hours=ttl),
        features=[Feature("x", "float64"), Feature("when", "timestamp")],
    )
    stored = {}
    for engine in ("memory", "duckdb"):
        with open_online_store("sqlite:///:memory:") as store:
            results = []
            for end in (hours(at_h // 2), hours(at_h)):
                kwargs: dict[str, Any] = {"end": end, "now": end, "store": store, "engine": engine}
                if span is not None:
                    kwargs["slice_span"] = timedelta(hours=span)
                results += materialize([view], **kwargs)
            keys = [f"[{c}]" for c in range(4)]
            stored[engine] = (store.read("txn", keys), store.read_watermark("txn"), results)
    assert stored["memory"] == stored["duckdb"]


def _parquet_view(folder: Path, *, available: bool, ttl: timedelta | None) -> FeatureView:
    return FeatureView(
        "txn",
        [Entity("customer", ["cid"])],
        ParquetSource(str(folder / "*.parquet")),
        "et",
        available_at_field="av" if available else None,
        ttl=ttl,
        features=[Feature("x", "float64")],
    )


def test_incremental_runs_pick_up_late_rows_within_the_ttl(tmp_path: Path, online_store: Any) -> None:
    folder = tmp_path / "txn"
    folder.mkdir()
    view = _parquet_view(folder, available=False, ttl=timedelta(hours=24))
    pq.write_table(table(cid=[1, 2], et=[hours(1), hours(2)], x=[1.0, 2.0]), folder / "1.parquet")
    materialize([view], end=hours(10), now=hours(10), store=online_store)
    # a row for 11:00 and a late row for 04:00 (behind the watermark) arrive
    pq.write_table(table(cid=[1, 2], et=[hours(11), hours(4)], x=[11.0, 4.0]), folder / "2.parquet")
    [second] = materialize([view], end=hours(12), now=hours(12), store=online_store)
    assert second.start_us is not None  # incremental: started from the watermark minus the TTL
    assert online_at(view, [1, 2], hours(12), online_store) == [11.0, 4.0]
    assert online_store.read_watermark("txn") == second.end_us


def test_availability_time_makes_late_rows_visible_without_rescanning(tmp_path: Path, online_store: Any) -> None:
    folder = tmp_path / "txn"
    folder.mkdir()
    view = _parquet_view(folder, available=True, ttl=None)
    pq.write_table(table(cid=[1], et=[hours(1)], av=[hours(1)], x=[1.0]), folder / "1.parquet")
    [first] = materialize([view], end=hours(10), now=hours(10), store=online_store)
    pq.write_table(table(cid=[1], et=[hours(3)], av=[hours(11)], x=[3.0]), folder / "2.parquet")
    [second] = materialize([view], end=hours(12), now=hours(12), store=online_store)
    assert second.start_us == first.end_us  # no lateness needed: arrival time is recorded
    assert second.rows_written == 1
    assert online_at(view, [1], hours(12), online_store) == [3.0]


def test_rerunning_a_window_is_idempotent_and_never_rolls_back(make_view: Any, online_store: Any) -> None:
    view = make_view(table(cid=[1, 1], et=[hours(1), hours(5)], x=[1.0, 5.0]))
    materialize([view], end=hours(6), now=hours(6), store=online_store)
    materialize([view], start=hours(0), end=hours(2), now=hours(6), incremental=False, store=online_store)
    assert online_at(view, [1], hours(6), online_store) == [5.0]
    assert online_store.read_watermark("txn") is not None


class FailingStore:
    """A real store that fails after ``ok`` writes: an interrupted run."""

    def __init__(self, inner: Any, ok: int) -> None:
        self.inner = inner
        self.ok = ok

    def write_batch(self, view: str, rows: Any, *, watermark: int | None = None) -> None:
        if self.ok == 0:
            raise StoreError("connection lost")
        self.ok -= 1
        self.inner.write_batch(view, rows, watermark=watermark)

    def read(self, view: str, keys: Any) -> Any:
        return self.inner.read(view, keys)

    def read_watermark(self, view: str) -> int | None:
        return self.inner.read_watermark(view)

    def close(self) -> None:
        self.inner.close()


def test_sliced_runs_resume_after_the_last_finished_slice(make_view: Any, online_store: Any) -> None:
    et = [hours(1), hours(3), hours(5), hours(7)]
    view = make_view(table(cid=[1, 2, 3, 1], et=et, av=et, x=[1.0, 3.0, 5.0, 7.0]), available_at="av")
    # slice 1 writes its rows then its watermark, so does slice 2; the third write fails
    flaky = FailingStore(online_store, ok=4)
    with pytest.raises(StoreError, match="connection lost"):
        materialize([view], end=hours(8), now=hours(8), slice_span=timedelta(hours=2), store=flaky)
    watermark = online_store.read_watermark("txn")
    end_us = int((hours(8) - datetime(1970, 1, 1)).total_seconds() * 1e6)
    assert watermark is not None
    assert watermark < end_us
    [resumed] = materialize([view], end=hours(8), now=hours(8), slice_span=timedelta(hours=2), store=online_store)
    assert resumed.start_us == watermark  # resumed after the last finished slice
    assert online_at(view, [1, 2, 3], hours(8), online_store) == offline_at(view, [1, 2, 3], hours(8))


def test_end_never_exceeds_now(make_view: Any, online_store: Any) -> None:
    view = make_view(table(cid=[1, 1], et=[hours(1), hours(5)], x=[1.0, 5.0]))
    [result] = materialize([view], end=hours(100), now=hours(3), store=online_store)
    assert online_at(view, [1], hours(3), online_store) == [1.0]
    assert result.end_us == online_store.read_watermark("txn")


def test_online_reader_types_columns_and_names(online_store: Any) -> None:
    rows = pa.table(
        {
            "cid": pa.array([1], pa.int64()),
            "et": pa.array([hours(1)], pa.timestamp("us")),
            "last_seen": pa.array([datetime(2023, 12, 31, 23, 0)], pa.timestamp("us")),
            "birthday": pa.array([date(1990, 5, 17)], pa.date32()),
            "vip": [True],
            "tier": ["gold"],
            "score": pa.array([0.1], pa.float32()),
        }
    )
    view = FeatureView(
        "profile",
        [Entity("customer", ["cid"])],
        TableSource(rows),
        "et",
        features=[
            Feature("last_seen", "timestamp"),
            Feature("birthday", "date"),
            Feature("vip", "bool"),
            Feature("tier", "string"),
            Feature("score", "float32"),
        ],
    )
    materialize([view], end=hours(2), now=hours(2), store=online_store)
    reader = OnlineReader([view], store=online_store, full_names=True)
    got = reader.read([{"cid": 1}, {"cid": 9}], now=hours(2))
    assert got == {
        "cid": [1, 9],
        "profile__last_seen": [datetime(2023, 12, 31, 23, 0, tzinfo=UTC), None],
        "profile__birthday": [date(1990, 5, 17), None],
        "profile__vip": [True, None],
        "profile__tier": ["gold", None],
        "profile__score": [pytest.approx(0.1, rel=1e-6), None],
    }
    offline = get_training_set(table(cid=[1], event_timestamp=[hours(2)]), [view]).data
    assert offline.column("score").to_pylist()[0] == got["profile__score"][0]
    assert offline.column("birthday").to_pylist() == [date(1990, 5, 17)]
    with pytest.raises(InvalidInputError, match="missing join key 'cid'"):
        reader.read([{"customer": 1}])
    with pytest.raises(InvalidInputError, match="join key values must be integers or strings"):
        reader.read([{"cid": 1.5}])


def test_materialize_refuses_bad_arguments(make_view: Any, online_store: Any) -> None:
    view = make_view(table(cid=[1], et=[hours(1)], x=[1.0]))
    with pytest.raises(InvalidInputError, match="batch_size"):
        materialize([view], batch_size=0, store=online_store)
    with pytest.raises(InvalidInputError, match="'txn' is a name"):
        materialize(["txn"], store=online_store)


def test_written_rows_are_the_stored_representation(make_view: Any, online_store: Any) -> None:
    from mlpilot.features._codec import PayloadCodec

    view = make_view(table(cid=[7], et=[hours(1)], x=[0.5]))
    materialize([view], end=hours(2), now=hours(2), store=online_store)
    [stored] = online_store.read("txn", ["[7]"])
    epoch_us = int((hours(1) - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    assert stored == StoredRow("[7]", epoch_us, epoch_us, PayloadCodec(view).encode([0.5]))
