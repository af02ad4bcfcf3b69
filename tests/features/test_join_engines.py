"""The in-memory and DuckDB engines give identical training sets (values, types, report) and the right one runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpilot.errors import InvalidInputError
from mlpilot.features import Entity, Feature, FeatureView, ParquetSource, SqlSource, TableSource, get_training_set

from .conftest import hours, table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

BASE_NS = 1_704_067_200_000_000_000  # 2024-01-01 in ns


@st.composite
def typed_tables(draw: Any) -> tuple[Any, Any, bool]:
    """Feature rows with a (string, int) composite key, ns event times with sub-microsecond parts, and one
    feature of each kind (some null); entity rows with date or tz-aware times."""
    n = draw(st.integers(1, 20))
    region = st.sampled_from(["eu", "us", "ü"])
    rows = {
        "region": [draw(region) for _ in range(n)],
        "cid": [draw(st.integers(0, 3)) for _ in range(n)],
        # nanosecond times that round (half away from zero) onto each other and onto whole microseconds
        "et": [
            BASE_NS + draw(st.integers(-3, 3)) * 86_400 * 10**9 + draw(st.sampled_from([0, 499, 500, 1500]))
            for _ in range(n)
        ],
        "i": [draw(st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1))) for _ in range(n)],
        "f": [draw(st.one_of(st.none(), st.floats(width=32, allow_nan=False))) for _ in range(n)],
        "s": [draw(st.one_of(st.none(), st.text(max_size=3))) for _ in range(n)],
        "b": [draw(st.one_of(st.none(), st.booleans())) for _ in range(n)],
        "ts": [draw(st.one_of(st.none(), st.integers(-(10**12), 10**12))) for _ in range(n)],
        "d": [draw(st.one_of(st.none(), st.integers(-1000, 1000))) for _ in range(n)],
    }
    features = pa.table(
        {
            "region": pa.array(rows["region"], pa.string()),
            "cid": pa.array(rows["cid"], pa.int32()),
            "et": pa.array(rows["et"], pa.timestamp("ns")),
            "i": pa.array(rows["i"], pa.int16()),
            "f": pa.array(rows["f"], pa.float32()),
            "s": pa.array(rows["s"], pa.large_string()),
            "b": pa.array(rows["b"], pa.bool_()),
            "ts": pa.array(rows["ts"], pa.timestamp("ns", tz="UTC")),
            "d": pa.array(rows["d"], pa.date32()),
        }
    )
    m = draw(st.integers(1, 10))
    use_dates = draw(st.booleans())
    days = [draw(st.integers(-4, 4)) for _ in range(m)]
    times = (
        pa.array([date(2024, 1, 1) + timedelta(days=d) for d in days], pa.date32())
        if use_dates
        else pa.array(
            [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=d, microseconds=draw(st.integers(-1, 1))) for d in days],
            pa.timestamp("us", tz="Asia/Tokyo"),
        )
    )
    # Most entity rows name a customer that has feature rows; some name nobody, a few have a null key.
    picks = [draw(st.one_of(st.integers(0, n - 1), st.none())) for _ in range(m)]
    keys = [
        (rows["region"][p], rows["cid"][p]) if p is not None else (draw(st.one_of(st.none(), region)), 9) for p in picks
    ]
    entity = pa.table(
        {
            "region": pa.array([k[0] for k in keys], pa.string()),
            "cid": pa.array([k[1] for k in keys], pa.int64()),
            "event_timestamp": times,
            "label": pa.array(range(m), pa.int8()),
        }
    )
    return features, entity, draw(st.booleans())


def _typed_view(rows: Any, ttl: bool) -> FeatureView:
    return FeatureView(
        "typed",
        [Entity("region", ["region"]), Entity("customer", ["cid"])],
        TableSource(rows),
        "et",
        ttl=timedelta(days=2) if ttl else None,
        features=[
            Feature("i", "int32"),
            Feature("f", "float64"),
            Feature("s", "string"),
            Feature("b", "bool"),
            Feature("ts", "timestamp"),
            Feature("d", "date"),
        ],
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_tables())
def test_engines_return_identical_tables(case: tuple[Any, Any, bool]) -> None:
    features, entity, ttl = case
    view = _typed_view(features, ttl)
    memory = get_training_set(entity, [view], engine="memory")
    duck = get_training_set(entity, [view], engine="duckdb")
    assert memory.data.schema.equals(duck.data.schema, check_metadata=True)
    assert memory.data.equals(duck.data)
    assert memory.report == duck.report
    assert memory.data.select(entity.column_names).equals(entity), "entity columns come back exactly as given"


def test_wide_time_ranges_and_many_keys_take_the_rank_path() -> None:
    """Times centuries apart with thousands of keys overflow code * span: the engine ranks times instead."""
    import numpy as np

    rng = np.random.default_rng(5)
    n = 5_000
    cids = rng.integers(0, 3_000, n)
    years = rng.choice(np.array(["1700-01-01", "2024-06-01", "2250-01-01"], dtype="datetime64[us]"), n)
    rows = pa.table(
        {"cid": cids, "et": years + rng.integers(0, 10**9, n).astype("timedelta64[us]"), "x": rng.random(n)}
    )
    view = FeatureView("old", [Entity("c", ["cid"])], TableSource(rows), "et", features=[Feature("x", "float64")])
    entity = pa.table(
        {
            "cid": rng.integers(0, 3_000, 2_000),
            "event_timestamp": rng.choice(years, 2_000) + rng.integers(0, 10**9, 2_000).astype("timedelta64[us]"),
        }
    )
    memory = get_training_set(entity, [view], engine="memory")
    assert memory.data.equals(get_training_set(entity, [view], engine="duckdb").data)
    assert memory.report.views["old"].matched > 1_000


def test_parquet_sources_are_joined_in_memory_across_files_and_row_groups(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    folder = tmp_path / "stats"
    folder.mkdir()
    for i in range(3):
        n = 4_000
        part = pa.table(
            {
                "cid": rng.integers(0, 500, n),
                "et": pa.array(hours(0) + rng.integers(0, 100, n) * timedelta(hours=1), pa.timestamp("us")),
                "x": rng.random(n),
                "y": rng.integers(0, 100, n).astype(np.int32),
            }
        )
        pq.write_table(part, folder / f"part-{i}.parquet", row_group_size=700)
    view = FeatureView(
        "stats",
        [Entity("c", ["cid"])],
        ParquetSource(str(folder / "*.parquet")),
        "et",
        ttl=timedelta(hours=30),
        features=[Feature("x", "float64"), Feature("y", "int64")],
    )
    entity = pa.table(
        {
            "cid": rng.integers(0, 520, 3_000),
            "event_timestamp": pa.array(
                hours(0) + rng.integers(-5, 140, 3_000) * timedelta(minutes=60), pa.timestamp("us")
            ),
        }
    )
    memory = get_training_set(entity, [view], engine="memory")
    duck = get_training_set(entity, [view], engine="duckdb")
    assert memory.data.equals(duck.data)
    assert memory.report == duck.report
    assert memory.report.views["stats"].ttl_expired > 0


def test_auto_falls_back_to_duckdb_and_memory_says_why(tmp_path: Path, make_view: Any) -> None:
    pq.write_table(table(cid=[1, 1], et=[hours(0), hours(2)], x=[1.0, 2.0]), tmp_path / "t.parquet")
    sql = SqlSource("SELECT * FROM t", inputs={"t": ParquetSource(tmp_path / "t.parquet")})
    view = FeatureView("q", [Entity("c", ["cid"])], sql, "et", features=[Feature("x", "float64")])
    entity = table(cid=[1], event_timestamp=[hours(3)])
    assert get_training_set(entity, [view]).data.column("x").to_pylist() == [2.0]
    with pytest.raises(InvalidInputError, match="engine='memory' cannot join these inputs: SqlSource") as exc:
        get_training_set(entity, [view], engine="memory")
    assert exc.value.field == "engine"
    small = make_view(table(cid=[1], et=[hours(0)], x=[1.0]))
    with pytest.raises(InvalidInputError, match="over the memory budget"):
        get_training_set(entity, [small], engine="memory", memory_limit="100B")
    # the same limit under "auto" runs DuckDB instead (which has room for one row)
    assert get_training_set(entity, [small], memory_limit="100MB").data.column("x").to_pylist() == [1.0]
    with pytest.raises(InvalidInputError, match="engine: expected"):
        get_training_set(entity, [small], engine="spark")  # type: ignore[arg-type]


def test_materialize_engines_fall_back_the_same_way(tmp_path: Path) -> None:
    from mlpilot.features import materialize, open_online_store

    pq.write_table(table(cid=[1, 1], et=[hours(0), hours(2)], x=[1.0, 2.0]), tmp_path / "t.parquet")
    sql = SqlSource("SELECT * FROM t", inputs={"t": ParquetSource(tmp_path / "t.parquet")})
    view = FeatureView("q", [Entity("c", ["cid"])], sql, "et", features=[Feature("x", "float64")])
    with open_online_store("sqlite:///:memory:") as store:
        with pytest.raises(InvalidInputError, match="engine='memory' cannot materialize 'q': SqlSource") as exc:
            materialize([view], end=hours(3), now=hours(3), store=store, engine="memory")
        assert exc.value.field == "engine"
        assert store.read_watermark("q") is None, "nothing written"
        [result] = materialize([view], end=hours(3), now=hours(3), store=store)  # auto: DuckDB
        assert result.rows_written == 1


def test_unsigned_keys_beyond_int64_are_left_to_duckdb() -> None:
    big = 2**63 + 5
    rows = pa.table(
        {"cid": pa.array([big, 1], pa.uint64()), "et": pa.array([hours(0)] * 2, pa.timestamp("us")), "x": [1.0, 2.0]}
    )
    view = FeatureView("u", [Entity("c", ["cid"])], TableSource(rows), "et", features=[Feature("x", "float64")])
    entity = pa.table(
        {"cid": pa.array([big], pa.uint64()), "event_timestamp": pa.array([hours(1)], pa.timestamp("us"))}
    )
    with pytest.raises(InvalidInputError, match="do not fit the in-memory engine"):
        get_training_set(entity, [view], engine="memory")
    assert get_training_set(entity, [view]).data.column("x").to_pylist() == [1.0]


@pytest.mark.parametrize("memory_limit", ["2GB", "5MB"])
def test_wide_parquet_features_with_and_without_read_ahead(tmp_path: Path, memory_limit: str) -> None:
    """2GB: the feature columns are decoded in the background while matching; 5MB: too wide to read ahead
    (over a quarter of the budget), so only the row groups holding a winner are decoded, batch by batch."""
    import numpy as np

    rng = np.random.default_rng(11)
    n, names = 20_000, [f"f{i}" for i in range(12)]
    rows = {
        "cid": rng.integers(0, 3_000, n),
        "et": pa.array(hours(0) + rng.integers(0, 50, n) * timedelta(hours=1), pa.timestamp("us")),
    }
    rows.update({name: rng.random(n) for name in names})
    table_ = pa.table(rows)
    for i, part in enumerate((table_.slice(0, 8_000), table_.slice(8_000))):
        pq.write_table(part, tmp_path / f"p{i}.parquet", row_group_size=1_500)
    view = FeatureView(
        "wide",
        [Entity("c", ["cid"])],
        ParquetSource(str(tmp_path / "p*.parquet")),
        "et",
        features=[Feature(name, "float64") for name in names],
    )
    entity = pa.table(
        {
            "cid": rng.integers(0, 3_100, 2_000),
            "event_timestamp": pa.array(hours(0) + rng.integers(0, 60, 2_000) * timedelta(hours=1), pa.timestamp("us")),
        }
    )
    memory = get_training_set(entity, [view], engine="memory", memory_limit=memory_limit)
    assert memory.data.equals(get_training_set(entity, [view], engine="duckdb").data)
    assert memory.report.views["wide"].matched > 1_500
