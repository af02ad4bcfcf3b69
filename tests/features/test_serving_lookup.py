"""FeatureLookup: what a model server does with entity keys, on both online stores, and its lookup log."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
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
    TableSource,
    materialize,
    plan,
)
from mlpilot.features.lookup_log import LOOKUP_METADATA_KEY

from .conftest import hours, table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

T = hours(10)
T_US = int((T - hours(0)).total_seconds() * 1_000_000) + 1_704_067_200_000_000


def definitions() -> Definitions:
    customer = Entity("customer", ["cid"])
    profile = FeatureView(
        "profile",
        [customer],
        TableSource(
            table(cid=[1, 2, 3], et=[hours(0), hours(1), hours(2)], tenure=[3.0, 5.0, 8.0], plan=["a", "b", "c"])
        ),
        "et",
        ttl=timedelta(hours=9),
        features=[Feature("tenure", "float64"), Feature("plan", "string")],
    )
    return Definitions([customer, profile, FeatureService("churn", [profile])])


@pytest.fixture
def lookup(online_store: Any, tmp_path: Path) -> Any:
    defs = definitions()
    materialize([defs.view("profile")], end=T, now=T, store=online_store)
    made = FeatureLookup(defs.service("churn"), store=online_store, definitions=defs, log_url=str(tmp_path / "log"))
    yield made
    made.close()


def test_entity_keys_in_model_inputs_out(lookup: Any) -> None:
    got = lookup.lookup([{"cid": 2, "channel": "web"}, {"channel": "app", "cid": 1}, {"cid": 9}], now_us=T_US)
    assert list(got) == ["cid", "channel", "tenure", "plan"]
    assert got == {
        "cid": [2, 1, 9],
        "channel": ["web", "app", None],
        "tenure": [5.0, None, None],
        "plan": ["b", None, None],
    }
    # customer 1's row is 10 hours old at T: past the 9-hour TTL, exactly as the offline join would say
    columns = lookup.lookup({"cid": [3], "channel": ["web"]}, now_us=T_US)
    assert columns == {"cid": [3], "channel": ["web"], "tenure": [8.0], "plan": ["c"]}
    assert lookup.features == ("tenure", "plan")
    assert lookup.join_keys == ("cid",)


def test_bad_requests_name_the_input(lookup: Any) -> None:
    with pytest.raises(InvalidInputError, match="cid: missing entity key") as exc:
        lookup.lookup([{"channel": "web"}])
    assert exc.value.field == "cid"
    with pytest.raises(InvalidInputError, match="tenure: this feature is looked up from the feature store") as exc:
        lookup.lookup([{"cid": 1, "tenure": 99.0}])
    assert exc.value.field == "tenure"
    with pytest.raises(InvalidInputError, match="join key values must be integers or strings") as exc:
        lookup.lookup([{"cid": None}])
    assert exc.value.field == "cid"
    with pytest.raises(InvalidInputError, match=r"instances\[1\]"):
        lookup.lookup([{"cid": 1}, 5])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="differ in length"):
        lookup.lookup({"cid": [1, 2], "channel": ["web"]})


def test_async_lookup_matches_and_offloads_network_stores(lookup: Any, online_url: str) -> None:
    assert lookup.offload is online_url.startswith("redis")

    async def many() -> list[dict[str, list[Any]]]:
        return await asyncio.gather(*(lookup.alookup([{"cid": c}], now_us=T_US) for c in (1, 2, 3)))

    results = asyncio.run(many())
    assert [r["tenure"] for r in results] == [[None], [5.0], [8.0]]


def test_built_from_registered_specs(online_store: Any) -> None:
    defs = definitions()
    materialize([defs.view("profile")], end=T, now=T, store=online_store)
    specs = plan([], defs).specs  # what a registry holds: no data, no source files needed to look up
    lookup = FeatureLookup.from_specs(specs, "churn", store=online_store)
    assert lookup.lookup([{"cid": 3}], now_us=T_US)["plan"] == ["c"]
    with pytest.raises(InvalidInputError, match="unknown feature service 'nope'"):
        FeatureLookup.from_specs(specs, "nope", store=online_store)


def test_lookup_log_records_keys_time_and_values(lookup: Any, tmp_path: Path) -> None:
    lookup.lookup([{"cid": 2}, {"cid": 3}], now_us=T_US, request_id="req-1")
    lookup.lookup([{"cid": 9}], now_us=T_US + 5, request_id="req-2")
    lookup.close()
    files = sorted((tmp_path / "log").rglob("*.parquet"))
    assert len(files) == 1
    assert files[0].parent.name == "date=2024-01-01"
    logged = pq.read_table(files[0])
    assert logged.column_names == ["request_id", "row", "time", "cid", "tenure", "plan"]
    assert logged.column("request_id").to_pylist() == ["req-1", "req-1", "req-2"]
    assert logged.column("row").to_pylist() == [0, 1, 0]
    assert logged.column("time").cast(pa.int64()).to_pylist() == [T_US, T_US, T_US + 5]
    assert logged.column("tenure").to_pylist() == [5.0, 8.0, None]
    meta = json.loads(logged.schema.metadata[LOOKUP_METADATA_KEY])
    assert meta["join_keys"] == ["cid"]
    assert meta["features"][1] == {"column": "plan", "view": "profile", "feature": "plan", "dtype": "string"}


def test_a_full_buffer_drops_and_counts(online_store: Any, tmp_path: Path) -> None:
    defs = definitions()
    lookup = FeatureLookup(
        ["profile:tenure"],
        store=online_store,
        definitions=defs,
        log_url=str(tmp_path / "log"),
        log_options={"max_buffer_rows": 2, "flush_interval": 60},
    )
    lookup.lookup([{"cid": 1}, {"cid": 2}], now_us=T_US)
    lookup.lookup([{"cid": 3}], now_us=T_US)
    assert lookup.log is not None
    assert lookup.log.dropped == 1
    lookup.close()
    assert pq.read_table(next((tmp_path / "log").rglob("*.parquet"))).num_rows == 2
