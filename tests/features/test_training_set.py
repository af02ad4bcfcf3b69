"""get_training_set: worked examples, sources, outputs, the leakage report, and refusals."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.features import (
    Entity,
    Feature,
    FeatureView,
    LeakageReport,
    ParquetSource,
    SqlSource,
    TableSource,
    get_training_set,
)

from .conftest import hours, table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(params=["memory", "duckdb"])
def join(request: pytest.FixtureRequest) -> Any:
    """get_training_set on each engine: every worked example must hold on both."""
    return functools.partial(get_training_set, engine=request.param)


def corrected_rows() -> Any:
    """Customer 1: a value at 00:00, then an event at 05:00 first loaded at 09:00 and corrected at 12:00."""
    return table(
        cid=[1, 1, 1],
        et=[hours(0), hours(5), hours(5)],
        av=[hours(0), hours(9), hours(12)],
        x=[1.0, 2.0, 3.0],
    )


def entities(*rows: tuple[int, float]) -> Any:
    return table(cid=[c for c, _ in rows], event_timestamp=[hours(t) for _, t in rows])


def test_bitemporal_join_never_uses_values_not_yet_available(make_view: Any, join: Any) -> None:
    view = make_view(corrected_rows(), available_at="av")
    result = join(entities((1, 4), (1, 6), (1, 9), (1, 13)), [view])
    assert result.data.column("x").to_pylist() == [1.0, 1.0, 2.0, 3.0]
    report = result.report.views["txn"]
    # at 06:00 the 05:00 event existed but was unknown; at 09:00 its correction was still unknown
    assert report.excluded_by_availability == 2
    assert report.equal_timestamp == 1  # 09:00: available exactly at the entity time
    assert report.matched == 4
    assert report.no_match == 0


def test_without_availability_the_correction_leaks(make_view: Any, join: Any) -> None:
    """The same data without its availability column: what bitemporality prevents."""
    view = make_view(corrected_rows())
    result = join(entities((1, 6)), [view])
    assert result.data.column("x").to_pylist() == [3.0]


def test_strict_excludes_rows_at_the_entity_time(make_view: Any, join: Any) -> None:
    view = make_view(table(cid=[1, 1], et=[hours(0), hours(5)], x=[1.0, 2.0]))
    loose = join(entities((1, 5)), [view])
    strict = join(entities((1, 5)), [view], strict=True)
    assert loose.data.column("x").to_pylist() == [2.0]
    assert loose.report.equal_timestamp == 1
    assert strict.data.column("x").to_pylist() == [1.0]
    assert strict.report.equal_timestamp == 0


def test_embargo_moves_the_as_of_time_back(make_view: Any, join: Any) -> None:
    view = make_view(table(cid=[1, 1], et=[hours(0), hours(5)], x=[1.0, 2.0]))
    result = join(entities((1, 6), (1, 7)), [view], embargo=timedelta(hours=1, minutes=30))
    assert result.data.column("x").to_pylist() == [1.0, 2.0]
    assert result.report.embargo_seconds == 5400


def test_ttl_edge_is_inclusive(make_view: Any, join: Any) -> None:
    view = make_view(table(cid=[1], et=[hours(0)], x=[1.0]), ttl=timedelta(hours=2))
    edge = hours(2)
    late = edge + timedelta(microseconds=1)
    entity_df = table(cid=[1, 1], event_timestamp=[edge, late])
    result = join(entity_df, [view])
    assert result.data.column("x").to_pylist() == [1.0, None]
    assert result.report.ttl_expired == 1


def test_time_zones_compare_instants(make_view: Any, join: Any) -> None:
    view = make_view(table(cid=[1, 1], et=[hours(10), hours(12)], x=[1.0, 2.0]))  # naive = UTC
    paris = pa.array([datetime(2024, 1, 1, 12, 30, tzinfo=UTC)], pa.timestamp("us", tz="Europe/Paris"))
    result = join(pa.table({"cid": [1], "event_timestamp": paris}), [view])
    assert result.data.column("x").to_pylist() == [2.0]


def test_outputs_and_report_travel_with_the_data(make_view: Any, tmp_path: Path, join: Any) -> None:
    view = make_view(table(cid=[1], et=[hours(0)], x=[1.0]))
    result = join(entities((1, 1), (2, 1)), [view])
    pq.write_table(result.data, tmp_path / "train.parquet")
    stored = LeakageReport.from_arrow(pq.read_table(tmp_path / "train.parquet"))
    assert stored == result.report
    frame = join(entities((1, 1)), [view], output="pandas").data
    assert frame["x"].tolist() == [1.0]
    assert frame.attrs["mlpilot.leakage_report"]["views"]["txn"]["matched"] == 1
    polars = pytest.importorskip("polars")
    pl_frame = join(entities((1, 1)), [view], output="polars").data
    assert isinstance(pl_frame, polars.DataFrame)
    assert pl_frame["x"].to_list() == [1.0]


def test_pandas_entity_frame_keeps_its_columns_and_order(make_view: Any, join: Any) -> None:
    pd = pytest.importorskip("pandas")
    view = make_view(table(cid=[1, 2], et=[hours(0), hours(0)], x=[1.0, 2.0]))
    frame = pd.DataFrame({"label": [1, 0, 1], "cid": [2, 1, 2], "event_timestamp": [hours(1), hours(1), hours(0)]})
    data = join(frame, [view], output="pandas").data
    assert list(data.columns) == ["label", "cid", "event_timestamp", "x"]
    assert data["x"].tolist() == [2.0, 1.0, 2.0]


def test_parquet_glob_later_file_wins_exact_duplicates(tmp_path: Path, join: Any) -> None:
    (tmp_path / "txn").mkdir()
    pq.write_table(table(cid=[1, 2], et=[hours(0), hours(0)], x=[1.0, 5.0]), tmp_path / "txn" / "a.parquet")
    pq.write_table(table(cid=[1], et=[hours(0)], x=[9.0]), tmp_path / "txn" / "b.parquet")
    view = FeatureView(
        "txn",
        [Entity("customer", ["cid"])],
        ParquetSource("txn/*.parquet", base_dir=tmp_path),
        "et",
        features=[Feature("x", "float64")],
    )
    entity_path = tmp_path / "entities.parquet"
    pq.write_table(entities((1, 1), (2, 1), (1, 0)), entity_path)
    result = join(str(entity_path), [view])
    assert result.data.column("cid").to_pylist() == [1, 2, 1]
    assert result.data.column("x").to_pylist() == [9.0, 5.0, 9.0]


def test_sql_source_over_parquet_and_a_table(tmp_path: Path) -> None:
    pq.write_table(
        table(cid=[1, 1], et=[hours(0), hours(2)], amount=[10.0, 20.0], cur=["EUR", "USD"]),
        tmp_path / "t.parquet",
    )
    rates = pa.table({"cur": ["EUR", "USD"], "rate": [1.0, 0.5]})
    source = SqlSource(
        "SELECT cid, et, amount * rate AS amount_eur FROM txn JOIN fx USING (cur)",
        inputs={"txn": ParquetSource(tmp_path / "t.parquet"), "fx": TableSource(rates)},
    )
    view = FeatureView("eur", [Entity("customer", ["cid"])], source, "et", features=[Feature("amount_eur", "float64")])
    result = get_training_set(entities((1, 1), (1, 3)), [view])
    assert result.data.column("amount_eur").to_pylist() == [10.0, 10.0]


def test_composite_keys_and_two_views(make_view: Any, join: Any) -> None:
    store = Entity("store", ["sid"])
    customer = Entity("customer", ["cid"])
    pair = FeatureView(
        "pair",
        [customer, store],
        TableSource(table(cid=[1, 1], sid=["a", "b"], et=[hours(0), hours(0)], visits=[3, 4])),
        "et",
        features=[Feature("visits", "int64")],
    )
    profile = make_view(
        table(cid=[1], et=[hours(0)], age=pa.array([40], pa.int16())),
        name="profile",
        features={"age": "int32"},
    )
    entity_df = table(cid=[1, 1, 1], sid=["b", "a", "c"], event_timestamp=[hours(1)] * 3)
    data = join(entity_df, [pair, profile]).data
    assert data.column("visits").to_pylist() == [4, 3, None]
    assert data.column("age").to_pylist() == [40, 40, 40]
    assert data.schema.field("age").type == pa.int32()


def test_feature_refs_and_full_names(make_view: Any, join: Any) -> None:
    a = make_view(table(cid=[1], et=[hours(0)], x=[1.0], y=[2.0]), name="a", features={"x": "float64", "y": "float64"})
    b = make_view(table(cid=[1], et=[hours(0)], x=[5.0]), name="b")
    with pytest.raises(InvalidInputError, match=r"clashes with feature view 'a'.*full_names=True"):
        join(entities((1, 1)), [a, b])
    data = join(entities((1, 1)), [a["y"], b], full_names=True).data
    assert data.column_names == ["cid", "event_timestamp", "a__y", "b__x"]


def test_memory_limited_run_spills_and_matches(tmp_path: Path) -> None:
    import numpy as np

    n = 300_000
    rng = np.random.default_rng(3)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    rows = pa.table(
        {
            "cid": rng.integers(0, 5_000, n),
            "et": start + rng.integers(0, 10**6, n).astype("timedelta64[s]"),
            "x": rng.random(n),
        }
    )
    view = FeatureView("big", [Entity("c", ["cid"])], TableSource(rows), "et", features=[Feature("x", "float64")])
    entity_df = pa.table(
        {
            "cid": rng.integers(0, 5_000, 50_000),
            "event_timestamp": start + rng.integers(0, 10**6, 50_000).astype("timedelta64[s]"),
        }
    )
    spill = tmp_path / "spill"
    small = get_training_set(entity_df, [view], memory_limit="24MB", temp_directory=spill, threads=1)
    roomy = get_training_set(entity_df, [view])
    assert small.data.equals(roomy.data)


def test_refusals_name_the_field(make_view: Any, join: Any) -> None:
    view = make_view(table(cid=[1], et=[hours(0)], x=[1.0]))
    with pytest.raises(InvalidInputError, match="no column 'event_timestamp'") as exc:
        join(table(cid=[1], ts=[hours(0)]), [view])
    assert exc.value.field == "timestamp_field"
    with pytest.raises(InvalidInputError, match="no column 'cid', a join key of feature view 'txn'"):
        join(table(customer=[1], event_timestamp=[hours(0)]), [view])
    with pytest.raises(InvalidInputError, match="join key 'cid' has type VARCHAR but feature view 'txn' has BIGINT"):
        join(table(cid=["1"], event_timestamp=[hours(0)]), [view])
    with pytest.raises(InvalidInputError, match="expected a timestamp or date"):
        join(table(cid=[1], event_timestamp=["2024-01-01"]), [view])
    with pytest.raises(InvalidInputError, match="embargo"):
        join(entities((1, 0)), [view], embargo=timedelta(hours=-1))
    with pytest.raises(InvalidInputError, match="'txn' is a name; pass definitions"):
        join(entities((1, 0)), ["txn:x"])


def test_source_drifting_from_its_declaration_is_refused(make_view: Any, join: Any) -> None:
    view = make_view(table(cid=[1], et=[hours(0)], x=["not a float"]))
    with pytest.raises(
        InvalidInputError,
        match="feature view 'txn': feature 'x' is declared float64 but its source column is VARCHAR",
    ) as exc:
        join(entities((1, 0)), [view])
    assert exc.value.field == "feature_views.txn.features.x"


def test_sources_without_stable_positions_are_materialized_once(tmp_path: Path, online_store: Any) -> None:
    """A bitemporal SQL source, and Parquet files whose own columns shadow DuckDB's position columns."""
    from mlpilot.features import get_online_features, materialize

    rows = table(
        cid=[1, 1, 1],
        et=[hours(0), hours(5), hours(5)],
        av=[hours(0), hours(9), hours(12)],
        x=[1.0, 2.0, 3.0],
        file_row_number=[7, 8, 9],
    )
    pq.write_table(rows, tmp_path / "t.parquet")
    customer = Entity("customer", ["cid"])
    sql = SqlSource("SELECT * FROM t WHERE x > 0", inputs={"t": ParquetSource(tmp_path / "t.parquet")})
    for source in (sql, ParquetSource(tmp_path / "t.parquet")):
        view = FeatureView("txn", [customer], source, "et", available_at_field="av", features=[Feature("x", "float64")])
        result = get_training_set(entities((1, 4), (1, 6), (1, 9), (1, 13)), [view])
        assert result.data.column("x").to_pylist() == [1.0, 1.0, 2.0, 3.0]
        materialize([view], end=hours(10), now=hours(10), incremental=False, store=online_store)
        assert get_online_features([{"cid": 1}], [view], store=online_store, now=hours(10))["x"] == [2.0]
