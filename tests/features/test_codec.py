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


FIXED = {k: v for k, v in ALL.items() if v != "string"}


def _row_by_row(codec: PayloadCodec, payloads: list[bytes | None], positions: list[int]) -> list[list[Any]]:
    decoded = [None if p is None else codec.decode(p) for p in payloads]
    return [[None if values is None else values[at] for values in decoded] for at in positions]


def _sample_values(features: dict[str, str], seed: int) -> list[Any]:
    samples = {
        "bool": [True, False],
        "int8": [-5, 7],
        "int16": [300, -2],
        "int32": [-70000, 5],
        "int64": [2**62, -1],
        "float32": [0.5, -2.25],
        "float64": [1e300, float("inf")],
        "string": ["héllo", ""],
        "timestamp": [1_704_067_200_000_000, -1],
        "date": [19_723, 0],
    }
    return [samples[dtype][(seed + i) % 2] for i, dtype in enumerate(features.values())]


@pytest.mark.parametrize("features", [FIXED, ALL, {"x": "float64"}], ids=["fixed", "with-strings", "one"])
def test_decode_columns_matches_decoding_row_by_row(features: dict[str, str]) -> None:
    codec = PayloadCodec(view_of(features))
    other = PayloadCodec(view_of({**features, "extra": "int8"}))  # another layout: reads as missing
    twin = PayloadCodec(view_of({f"{n}_2": d for n, d in features.items()}))  # renamed: same widths
    width = len(features)
    with_null = _sample_values(features, 1)
    with_null[width // 2] = None
    payloads: list[bytes | None] = [
        codec.encode(_sample_values(features, 0)),
        None,
        codec.encode(with_null),
        codec.encode([None] * width),
        other.encode([*_sample_values(features, 1), 3]),
        twin.encode(_sample_values(features, 1)),  # same length as ours: only the header differs
        codec.encode(_sample_values(features, 1)),
    ]
    positions = list(range(width - 1, -1, -1))
    for batch in (payloads, payloads[:1], payloads[-1:], [None, None], [payloads[0]] * 50, []):
        expected = _row_by_row(codec, batch, positions)
        assert codec.decode_columns(batch, positions) == expected
    assert codec.decode_columns(payloads, positions)[-1][0] == _sample_values(features, 0)[0]


def test_decode_columns_keeps_nan() -> None:
    codec = PayloadCodec(view_of({"x": "float64", "y": "float64"}))
    [xs, ys] = codec.decode_columns([codec.encode([float("nan"), 1.0]), codec.encode([2.0, None])], [0, 1])
    assert math.isnan(xs[0])
    assert xs[1] == 2.0
    assert ys == [1.0, None]
