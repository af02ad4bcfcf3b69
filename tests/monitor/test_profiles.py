"""Reference profiles: any table type in, mergeable, JSON round trip, checks run from the stored profile."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from mlpilot.monitor import Profile, ProfileOptions, compare, profile
from mlpilot.monitor.profiles import CategoricalProfile, NumericProfile
from mlpilot.monitor.sketch import NumericSketch


def test_every_table_type_gives_the_same_profile(make_table: Callable[..., dict[str, Any]]) -> None:
    data = make_table(500, seed=1, numeric=2, categorical=1)
    data["x0"][[3, 7]] = np.nan
    frames = [data, pd.DataFrame(data), pl.DataFrame(data), pa.table(data)]
    dicts = [profile(frame).to_dict() for frame in frames]
    assert all(d == dicts[0] for d in dicts[1:])
    x0 = dicts[0]["columns"]["x0"]
    assert (x0["count"], x0["missing"]) == (498, 2)
    assert x0["mean"] == pytest.approx(np.nanmean(data["x0"]))


def test_numeric_summary_and_categories() -> None:
    p = profile({"v": np.array([1.0, 2.0, 2.0, np.inf, 5.0]), "c": np.array(["a", "b", "a", None, "a"], dtype=object)})
    v, c = p.columns["v"], p.columns["c"]
    assert isinstance(v, NumericProfile)
    assert isinstance(c, CategoricalProfile)
    assert (v.count, v.missing, v.min, v.max) == (4, 1, 1.0, 5.0)  # infinity counts as missing
    assert v.std == pytest.approx(np.std([1.0, 2.0, 2.0, 5.0]))
    assert (c.categories.counts, c.missing) == ({"a": 3.0, "b": 1.0}, 1)


def test_top_k_keeps_frequent_categories_and_an_other_bucket() -> None:
    values = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 5 + ["d"] * 3 + ["e"] * 2)
    c = profile({"c": values}, options=ProfileOptions(top_k=2)).columns["c"]
    assert isinstance(c, CategoricalProfile)
    assert c.categories.counts == {"a": 50.0, "b": 30.0}
    assert c.categories.other == 10.0


def test_merge_equals_profile_of_the_concatenation(make_table: Callable[..., dict[str, Any]]) -> None:
    a = make_table(700, seed=2, numeric=2, categorical=1)
    b = make_table(500, seed=3, numeric=2, categorical=1, shift={"x0": 3.0})
    both = {k: np.concatenate((a[k], b[k])) for k in a}
    merged, whole = profile(a).merge(profile(b)), profile(both)
    for name in ("x0", "x1"):
        m, w = merged.columns[name], whole.columns[name]
        assert isinstance(m, NumericProfile)
        assert isinstance(w, NumericProfile)
        assert (m.count, m.min, m.max) == (w.count, w.min, w.max)
        assert m.mean == pytest.approx(w.mean)
        assert m.std == pytest.approx(w.std)
        np.testing.assert_array_equal(m.sketch.values, w.sketch.values)  # exact sketches merge exactly
    assert merged.columns["c0"] == whole.columns["c0"]
    assert merged.rows == 1200
    assert merged.sample is not None
    assert merged.sample.rows.shape == (1200, 2)


def test_compressed_sketch_cdf_within_its_bound() -> None:
    x = np.random.default_rng(4).lognormal(size=200_000)
    size = 512
    sketch = NumericSketch.from_values(x, size)
    assert not sketch.exact
    assert len(sketch.values) <= size
    grid = np.quantile(x, np.linspace(0.001, 0.999, 997))
    true_cdf = np.searchsorted(np.sort(x), grid, side="right") / x.size
    assert np.max(np.abs(sketch.cdf(grid) - true_cdf)) <= 1 / (2 * size) + 1e-9
    # merging two compressed sketches stays close to the data's CDF
    half = NumericSketch.from_values(x[:100_000], size).merge(NumericSketch.from_values(x[100_000:], size), size)
    assert np.max(np.abs(half.cdf(grid) - true_cdf)) <= 2 / size


def test_json_round_trip_and_checks_from_the_stored_profile(
    make_table: Callable[..., dict[str, Any]],
) -> None:
    ref = make_table(3000, seed=5, numeric=3, categorical=2)
    ref["region"] = np.random.default_rng(5).choice(np.array(["EU", "US"]), size=3000)
    ref["pred"] = (ref["x0"] > 0).astype(int)
    ref["label"] = (ref["x0"] + ref["x1"] > 0).astype(int)
    stored = json.loads(json.dumps(profile(ref, prediction="pred", target="label", segments=["region"]).to_dict()))
    restored = Profile.from_dict(stored)
    assert restored.to_dict() == stored
    assert restored.columns["pred"].kind == "numeric"  # the prediction distribution is part of the profile
    cur = {k: v[:1500] for k, v in make_table(3000, seed=6, numeric=3, categorical=2, shift={"x1": 0.3}).items()}
    cur["region"], cur["pred"], cur["label"] = ref["region"][:1500], ref["pred"][:1500], ref["label"][:1500]
    from_table = compare(ref, cur, prediction="pred", target="label", segments=["region"])
    from_profile = compare(restored, cur)
    assert from_profile.drifted_features == from_table.drifted_features == ["x1"]
    for name in ("x0", "x1", "x2", "c0", "c1"):
        assert from_profile.features[name].p_value == pytest.approx(from_table.features[name].p_value)
    assert [s.label for s in from_profile.segments] == [s.label for s in from_table.segments]


def test_malformed_profile_dict_is_rejected() -> None:
    from mlpilot.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="format"):
        Profile.from_dict({"rows": 3})
    good = profile({"x": np.arange(10.0)}).to_dict()
    del good["columns"]["x"]["sketch"]
    with pytest.raises(InvalidInputError, match="malformed"):
        Profile.from_dict(good)


def test_parquet_paths_give_the_same_profile_and_report(
    make_table: Callable[..., dict[str, Any]], tmp_path: Any
) -> None:
    import pyarrow.parquet as pq

    ref = make_table(3000, seed=31, numeric=3, categorical=2)
    cur = make_table(3000, seed=32, numeric=3, categorical=2, shift={"x1": 0.3})
    ref["x0"][[5, 9]] = np.nan
    cur["c1"] = np.where(np.arange(3000) % 50 == 0, None, cur["c1"]).astype(object)
    ref_path, cur_path = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    # Several row groups and a column with nulls: the reader must stitch chunks and keep the missing values.
    pq.write_table(pa.table(ref), ref_path, row_group_size=700)
    pq.write_table(pa.table(cur), cur_path, row_group_size=700)
    assert profile(str(ref_path)).to_dict() == profile(pa.table(ref)).to_dict()
    from_files = compare(ref_path, str(cur_path), segments=["c0"]).to_dict()
    from_tables = compare(pa.table(ref), pa.table(cur), segments=["c0"]).to_dict()
    assert from_files == from_tables
    assert from_files["drifted_features"] == ["x1"]


def test_an_unreadable_parquet_path_names_the_table(tmp_path: Any) -> None:
    from mlpilot.errors import InvalidInputError

    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(InvalidInputError) as info:
        profile(str(bad))
    assert info.value.field == "table"
