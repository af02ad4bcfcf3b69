"""DuckDB runs within the configured memory limit: over data many times larger it spills instead of failing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mlpilot.config import memory_size_bytes
from mlpilot.features import (
    Entity,
    Feature,
    FeatureView,
    ParquetSource,
    get_online_features,
    get_training_set,
    materialize,
)
from mlpilot.features._duckdb import DuckSession

pa = pytest.importorskip("pyarrow")
np = pytest.importorskip("numpy")

ROWS = 3_000_000
KEYS = 50_000
FEATURES = [f"f{j}" for j in range(8)]
LIMIT = "32MB"


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~170MB of Parquet (~240MB decoded): 3M rows of 8 float features over 50k keys and a year, from DuckDB."""
    import duckdb

    folder = tmp_path_factory.mktemp("big")
    values = ", ".join(f"(hash(i * {j + 11}) % 1000000)::DOUBLE / 7.0 AS {name}" for j, name in enumerate(FEATURES))
    with duckdb.connect() as con:
        for i in range(3):
            con.execute(
                f"COPY (SELECT (hash(i) % {KEYS})::BIGINT AS cid, "
                f"TIMESTAMP '2024-01-01' + to_microseconds((hash(i * 7 + 1) % 31536000000000)::BIGINT) AS et, "
                f"{values} FROM range({i * ROWS // 3}, {(i + 1) * ROWS // 3}) t(i)) "
                f"TO '{folder}/part-{i}.parquet' (FORMAT parquet, ROW_GROUP_SIZE 100000)"
            )
    return folder


def big_view(folder: Path) -> FeatureView:
    return FeatureView(
        "big",
        [Entity("c", ["cid"])],
        ParquetSource(str(folder / "*.parquet")),
        "et",
        features=[Feature(name, "float64") for name in FEATURES],
    )


def entity_rows(n: int) -> Any:
    rng = np.random.default_rng(7)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    return pa.table(
        {
            "cid": rng.integers(0, KEYS + 100, n),  # a few keys without any feature row
            "event_timestamp": start + rng.integers(0, 370 * 86400, n).astype("timedelta64[s]"),
        }
    )


def data_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.parquet"))


def test_sessions_take_memory_limit_and_spill_folder_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPILOT_FEATURES_MEMORY_LIMIT", "48MB")
    monkeypatch.setenv("MLPILOT_FEATURES_TEMP_DIRECTORY", str(tmp_path / "spill"))
    with DuckSession() as session:
        [(limit, folder, threads)] = session.fetchall(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory'), current_setting('threads')"
        )
    assert limit == "45.7 MiB"  # 48MB in DuckDB's binary units
    assert Path(folder).parent == tmp_path / "spill"
    assert threads == 1  # each thread needs its own buffers: 48MB is room for one
    with DuckSession(memory_limit="2GB") as session:
        assert session.fetchall("SELECT current_setting('memory_limit')") == [("1.8 GiB",)]


@pytest.mark.slow
def test_join_and_materialization_spill_within_a_memory_limit_far_below_the_data(
    big_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert data_bytes(big_files) > 4 * memory_size_bytes(LIMIT)
    view = big_view(big_files)
    entity_df = entity_rows(100_000)

    small = get_training_set(entity_df, [view], engine="duckdb", memory_limit=LIMIT)
    reference = get_training_set(entity_df, [view], engine="memory", memory_limit="4GB")
    assert small.data.equals(reference.data)
    assert small.report.to_dict() == reference.report.to_dict()
    assert small.report.views["big"].matched > 90_000

    now = datetime(2025, 2, 1)
    # Materialization takes the limit from the setting alone.
    monkeypatch.setenv("MLPILOT_FEATURES_MEMORY_LIMIT", LIMIT)
    [spilled] = materialize([view], store=f"sqlite:///{tmp_path / 'small.db'}", engine="duckdb", now=now)
    [roomy] = materialize(
        [view], store=f"sqlite:///{tmp_path / 'roomy.db'}", engine="memory", memory_limit="4GB", now=now
    )
    assert spilled.rows_written == roomy.rows_written == KEYS
    keys = {"cid": [*range(0, KEYS, 10), *range(KEYS, KEYS + 10)]}
    online = get_online_features(keys, [view], store=f"sqlite:///{tmp_path / 'small.db'}", now=now)
    expected = get_online_features(keys, [view], store=f"sqlite:///{tmp_path / 'roomy.db'}", now=now)
    assert online == expected
    assert online["f0"][-10:] == [None] * 10
