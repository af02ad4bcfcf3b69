"""Deterministic routing: weights honoured, assignments sticky, monotone as a canary grows, process-independent."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from mlpilot.deploy import RouteTable, RoutingConfig, Variant
from mlpilot.deploy.routing import bucket, key_from_body


def _table(canary: float, *, shadow: float = 0.0, salt: str = "") -> RouteTable:
    variants = [Variant(version=1, role="primary", weight=100 - canary)]
    if canary:
        variants.append(Variant(version=2, role="canary", weight=canary))
    if shadow:
        variants.append(Variant(version=3, role="shadow", weight=shadow))
    return RouteTable.build("churn", variants, routing=RoutingConfig(salt=salt))


@pytest.mark.parametrize("weight", [0.5, 5, 25, 50, 90])
def test_split_matches_the_weights(weight: float) -> None:
    table = _table(weight)
    n = 50_000
    share = sum(table.choose(f"req-{i}") == 2 for i in range(n)) / n
    assert abs(share - weight / 100) < 0.01


def test_assignment_is_sticky_and_monotone_as_the_canary_grows() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    small, large = _table(5), _table(25)
    in_small = {k for k in keys if small.choose(k) == 2}
    in_large = {k for k in keys if large.choose(k) == 2}
    assert in_small <= in_large  # nobody who saw the canary is moved back
    assert all(small.choose(k) == small.choose(k) for k in keys[:100])


def test_salt_makes_experiments_independent() -> None:
    keys = [f"user-{i}" for i in range(4000)]
    a = {k for k in keys if _table(50, salt="exp-a").choose(k) == 2}
    b = {k for k in keys if _table(50, salt="exp-b").choose(k) == 2}
    overlap = len(a & b) / len(keys)
    assert abs(overlap - 0.25) < 0.03


def test_shadow_mirroring_is_independent_of_the_split() -> None:
    table = _table(50, shadow=20)
    keys = [f"k{i}" for i in range(20_000)]
    mirrored = [k for k in keys if table.mirrors(k) == [3]]
    assert abs(len(mirrored) / len(keys) - 0.2) < 0.01
    canary_share = sum(table.choose(k) == 2 for k in mirrored) / len(mirrored)
    assert abs(canary_share - 0.5) < 0.03
    assert _table(50).mirrors("k1") == []


def test_zero_weight_canary_gets_no_traffic_and_tables_list_versions() -> None:
    table = _table(0)
    assert all(table.choose(f"k{i}") == 1 for i in range(1000))
    preview = RouteTable.build(
        "churn", [Variant(version=1, role="primary", weight=100), Variant(version=2, role="canary", weight=0)]
    )
    assert all(preview.choose(f"k{i}") == 1 for i in range(1000))
    assert _table(10, shadow=5).versions == [1, 2, 3]


def test_buckets_do_not_depend_on_the_process() -> None:
    here = [bucket("churn", f"user-{i}") for i in range(20)]
    code = "from mlpilot.deploy.routing import bucket; print([bucket('churn', f'user-{i}') for i in range(20)])"
    # another interpreter with another string-hash seed computes the same buckets
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345"}
    )
    assert out.stdout.strip() == str(here)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        # top level: /v1's entity_id
        ({"instances": [[1, 2]], "entity_id": "c-42"}, "c-42"),
        ({"instances": [[1, 2], [3, 4]], "entity_id": ["c-1", "c-2"]}, "c-1"),  # one per row: the first row's
        # request parameters: OIP v2's parameters, /invocations' params
        ({"inputs": [], "parameters": {"customer_id": "c-7"}}, "c-7"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1]]}, "params": {"customer_id": 7}}, "7"),
        # the first row's column
        ({"instances": [{"customer_id": 42, "tenure": 3}, {"customer_id": 43, "tenure": 1}]}, "42"),
        ({"dataframe_records": [{"tenure": 3, "customer_id": "c-9"}]}, "c-9"),
        ({"inputs": {"customer_id": [11.0, 12.0], "tenure": [1, 2]}}, "11"),  # columns; 11.0 is the key 11
        ({"dataframe_split": {"columns": ["tenure", "customer_id"], "data": [[3, "c-5"], [1, "c-6"]]}}, "c-5"),
        (
            {
                "inputs": [
                    {"name": "tenure", "datatype": "INT64", "shape": [1], "data": [3]},
                    {"name": "customer_id", "datatype": "BYTES", "shape": [1, 1], "data": [["c-3"]]},
                ]
            },
            "c-3",
        ),
        # the top level wins over a row's column
        ({"instances": [{"customer_id": 1}], "customer_id": "top"}, "top"),
        # nothing usable: the router falls back to the request id
        ({"instances": [[1, 2]]}, None),
        ({"instances": [{"customer_id": True}]}, None),
        ({"instances": [{"customer_id": 0.5}]}, None),
        ({"customer_id": ""}, None),
        ({"customer_id": {"nested": 1}}, None),
        ({"inputs": [{"name": "tenure", "datatype": "INT64", "shape": [1], "data": [3]}]}, None),
        ({"dataframe_split": {"columns": ["customer_id"], "data": []}}, None),
        ([{"customer_id": "c-1"}], None),
    ],
)
def test_key_field_is_found_where_each_protocol_carries_it(body: object, key: str | None) -> None:
    field = "entity_id" if "entity_id" in str(body) else "customer_id"
    assert key_from_body(orjson.dumps(body), field) == key


def test_key_field_tolerates_bodies_that_are_not_json_and_cuts_long_keys() -> None:
    assert key_from_body(b"\x00\x01 not json", "customer_id") is None
    assert key_from_body(orjson.dumps({"customer_id": "x" * 1000}), "customer_id") == "x" * 256
