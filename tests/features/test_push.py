"""push: fresh values online at once, and the same rows in the offline log the training set reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.features import (
    Entity,
    Feature,
    FeatureView,
    ParquetSource,
    get_online_features,
    get_training_set,
    materialize,
    push,
)

from .conftest import hours, table

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def logged_view(tmp_path: Path) -> FeatureView:
    (tmp_path / "history").mkdir()
    pq.write_table(table(cid=[1, 2], et=[hours(0), hours(0)], x=[1.0, 2.0]), tmp_path / "history" / "h.parquet")
    return FeatureView(
        "txn",
        [Entity("customer", ["cid"])],
        ParquetSource([str(tmp_path / "history" / "*.parquet"), str(tmp_path / "log" / "txn" / "*.parquet")]),
        "et",
        ttl=timedelta(hours=12),
        features=[Feature("x", "float64")],
    )


def test_pushed_values_are_online_and_offline(logged_view: FeatureView, online_store: Any, tmp_path: Path) -> None:
    materialize([logged_view], end=hours(1), now=hours(1), store=online_store)
    result = push(
        logged_view,
        [
            {"cid": 1, "et": hours(2), "x": 10.0},
            {"cid": 1, "et": hours(3), "x": 11.0},
            {"cid": 3, "et": hours(2), "x": 30.0},
        ],
        store=online_store,
        offline_log=tmp_path / "log",
        now=hours(3),
    )
    assert (result.rows, result.online_rows) == (3, 2)
    assert result.log_file is not None
    assert result.log_file.parent == tmp_path / "log" / "txn"
    online = get_online_features({"cid": [1, 2, 3]}, [logged_view], store=online_store, now=hours(4))
    assert online["x"] == [11.0, 2.0, 30.0]
    offline = get_training_set(table(cid=[1, 2, 3], event_timestamp=[hours(4)] * 3), [logged_view]).data
    assert offline.column("x").to_pylist() == online["x"]


def test_an_older_push_does_not_roll_back(logged_view: FeatureView, online_store: Any, tmp_path: Path) -> None:
    push(logged_view, [{"cid": 1, "et": hours(5), "x": 5.0}], store=online_store)
    push(logged_view, [{"cid": 1, "et": hours(4), "x": 4.0}], store=online_store)
    assert get_online_features([{"cid": 1}], [logged_view], store=online_store, now=hours(6))["x"] == [5.0]
    assert not (tmp_path / "log").exists(), "no offline log unless asked"


def test_availability_defaults_to_the_push_time(online_store: Any, tmp_path: Path) -> None:
    view = FeatureView(
        "bi",
        [Entity("customer", ["cid"])],
        ParquetSource(str(tmp_path / "log" / "bi" / "*.parquet")),
        "et",
        available_at_field="loaded_at",
        features=[Feature("x", "float64")],
    )
    push(
        view,
        [{"cid": 1, "et": hours(1), "x": 1.0}],
        store=online_store,
        offline_log=tmp_path / "log",
        now=hours(9),
    )
    offline = get_training_set(table(cid=[1, 1], event_timestamp=[hours(8), hours(9)]), [view]).data
    assert offline.column("x").to_pylist() == [None, 1.0], "not usable before it was pushed"


def test_bad_pushes_are_refused_before_writing(logged_view: FeatureView, online_store: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="missing column 'x'") as exc:
        push(logged_view, [{"cid": 1, "et": hours(1)}], store=online_store, offline_log=tmp_path / "log")
    assert exc.value.field == "data.x"
    with pytest.raises(InvalidInputError, match=r"column 'x' \(feature float64\) cannot be read"):
        push(
            logged_view,
            [{"cid": 1, "et": hours(1), "x": "high"}],
            store=online_store,
            offline_log=tmp_path / "log",
        )
    with pytest.raises(InvalidInputError, match="timestamp_field 'et' has nulls"):
        push(logged_view, [{"cid": 1, "et": None, "x": 1.0}], store=online_store, offline_log=tmp_path / "log")
    assert not (tmp_path / "log").exists()
    assert get_online_features([{"cid": 1}], [logged_view], store=online_store, now=hours(1))["x"] == [None]


def test_push_accepts_pandas(logged_view: FeatureView, online_store: Any) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"cid": [7], "et": [datetime(2024, 1, 1, 1)], "x": [0.25]})
    push(logged_view, frame, store=online_store)
    assert get_online_features([{"cid": 7}], [logged_view], store=online_store, now=hours(2))["x"] == [0.25]
