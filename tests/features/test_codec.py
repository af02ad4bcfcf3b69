"""The online encoding: entity keys and binary feature payloads."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.features import Entity, Feature, FeatureView, TableSource
from mlpilot.features._codec import PayloadCodec, encode_key

from .conftest import hours, table

ALL = {
    "b": "bool",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "f32": "float32",
    "f64": "float64",
    "s": "string",
    "ts": "timestamp",
    "d": "date",
    "s2": "string",
}


def view_of(features: dict[str, str]) -> FeatureView:
    rows = table(cid=[1], et=[hours(0)])
    return FeatureView(
        "v", [Entity("c", ["cid"])], TableSource(rows), "et", features=[Feature(n, d) for n, d in features.items()]
    )


@pytest.mark.parametrize(
    "values",
    [
        [True, -5, 300, -70000, 2**62, 0.5, 1e300, "héllo", 1_704_067_200_000_000, 19_723, ""],
        [None] * 11,
        [False, None, None, 1, None, float("inf"), None, None, -1, None, "x" * 1000],
    ],
)
def test_payloads_round_trip(values: list[Any]) -> None:
    codec = PayloadCodec(view_of(ALL))
    assert codec.decode(codec.encode(values)) == values


def test_nan_round_trips() -> None:
    codec = PayloadCodec(view_of({"x": "float64"}))
    [value] = codec.decode(codec.encode([float("nan")])) or [None]
    assert math.isnan(value)


def test_another_layout_reads_as_missing() -> None:
    old = PayloadCodec(view_of({"x": "float64", "y": "float64"}))
    new = PayloadCodec(view_of({"x": "float64", "y": "float32"}))
    assert new.decode(old.encode([1.0, 2.0])) is None
    assert old.decode(old.encode([1.0, 2.0])) == [1.0, 2.0]


def test_keys_are_canonical() -> None:
    import numpy as np

    assert encode_key([42]) == encode_key([np.int64(42)]) == "[42]"
    assert encode_key(["42"]) == '["42"]'
    assert encode_key(["ü", 3]) == '["ü",3]'
    with pytest.raises(InvalidInputError, match="cid: join key values must be integers or strings"):
        encode_key([True], ["cid"])
    with pytest.raises(InvalidInputError, match="integers or strings"):
        encode_key([None])
