"""Windows of the prediction log, as written by the model server's log writer, read back through DuckDB."""

from __future__ import annotations

import numpy as np
import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.monitor._logfs import LogLocation
from mlpilot.monitor.windows import WindowSpec, latest_version, read_window
from tests.monitor.conftest import REGIONS, T0, Platform, features


def test_window_by_rows_keeps_the_newest_rows_in_time_order(sqlite_platform: Platform) -> None:
    cols = features(50, seed=3)
    sqlite_platform.serve("churn", cols, regions=np.resize(REGIONS, 50))
    loc = LogLocation(sqlite_platform.log_url)
    window = read_window(loc, "churn", WindowSpec(last_rows=10), segments=["region"])
    assert window.rows == 10
    assert window.version == 1
    assert window.table.column("request_id").to_pylist() == [f"r{i}" for i in range(40, 50)]
    np.testing.assert_allclose(window.table.column("age").to_numpy(), cols["age"][40:])
    assert window.table.column("region").to_pylist() == list(np.resize(REGIONS, 50)[40:])
    assert window.inputs == ["age", "income"]
    assert window.outputs == ["output"]
    assert (window.start_ms, window.end_ms) == (T0 + 40_000, T0 + 49_000)


def test_window_by_time_is_half_open(sqlite_platform: Platform) -> None:
    sqlite_platform.serve("churn", features(30, seed=4))
    window = read_window(
        LogLocation(sqlite_platform.log_url), "churn", WindowSpec(since_ms=T0 + 10_000, until_ms=T0 + 20_000)
    )
    assert window.table.column("request_id").to_pylist() == [f"r{i}" for i in range(10, 20)]


def test_window_spans_days_and_defaults_to_the_newest_version(sqlite_platform: Platform) -> None:
    day = 86_400_000
    sqlite_platform.serve("churn", features(5, seed=5), version=1, start_ms=T0, prefix="a")
    sqlite_platform.serve("churn", features(5, seed=6), version=2, start_ms=T0 + day, step_ms=day, prefix="b")
    loc = LogLocation(sqlite_platform.log_url)
    assert latest_version(loc, "churn") == 2
    newest = read_window(loc, "churn", WindowSpec())
    assert newest.version == 2
    assert newest.rows == 5  # five requests on five different days, one partition each
    older = read_window(loc, "churn", WindowSpec(version=1))
    assert older.table.column("request_id").to_pylist() == [f"a{i}" for i in range(5)]


def test_missing_log_gives_an_empty_window(sqlite_platform: Platform) -> None:
    window = read_window(LogLocation(sqlite_platform.log_url), "nothing-here", WindowSpec(last_rows=5))
    assert window.rows == 0
    assert window.version is None
    assert latest_version(LogLocation(sqlite_platform.log_url), "nothing-here") is None


def test_segment_field_falls_back_to_an_input_of_that_name(sqlite_platform: Platform) -> None:
    cols = {**features(6, seed=7), "plan": np.array(["basic", "pro"] * 3, dtype=object)}
    regions = np.array(["EU", "EU", "US", "US", "EU", "US"])
    sqlite_platform.serve("churn", cols, regions=regions)
    window = read_window(LogLocation(sqlite_platform.log_url), "churn", WindowSpec(), segments=["plan", "region"])
    assert window.table.column("plan").to_pylist() == ["basic", "pro"] * 3
    assert window.table.column("region").to_pylist() == list(regions)


def test_multi_row_requests_keep_their_row_index(sqlite_platform: Platform) -> None:
    sqlite_platform.serve("churn", features(9, seed=8), rows_per_request=3)
    table = read_window(LogLocation(sqlite_platform.log_url), "churn", WindowSpec()).table
    assert table.column("request_id").to_pylist() == ["r0"] * 3 + ["r1"] * 3 + ["r2"] * 3
    assert table.column("row").to_pylist() == [0, 1, 2] * 3
    assert table.column("entity_id").to_pylist() == [f"user-{i}" for i in range(9)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"last_rows": 0}, "last_rows"),
        ({"since_ms": 10, "until_ms": 5}, "until"),
        ({"version": 0}, "version"),
        ({"since_ms": -1}, "since"),
        ({"until_ms": 10**16}, "until"),
    ],
)
def test_bad_window_specs_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        WindowSpec(**kwargs)
    assert info.value.field == field


def test_endpoint_names_are_checked(sqlite_platform: Platform) -> None:
    with pytest.raises(InvalidInputError, match="endpoint"):
        read_window(LogLocation(sqlite_platform.log_url), "../etc", WindowSpec())


def test_a_corrupt_segment_is_a_clear_error(sqlite_platform: Platform) -> None:
    from pathlib import Path

    from mlpilot.errors import ArtifactError

    sqlite_platform.serve("churn", features(5, seed=9))
    folder = next(Path(sqlite_platform.log_url, "model=churn", "version=1").iterdir())
    (folder / "part-0-broken.parquet").write_bytes(b"PAR1 this is not a Parquet file")
    with pytest.raises(ArtifactError, match="prediction log at"):
        read_window(LogLocation(sqlite_platform.log_url), "churn", WindowSpec())
