"""Feature views over ``s3://…/*.parquet`` globs, against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mlpilot.errors import InvalidInputError, MissingDependencyError
from mlpilot.features import (
    Definitions,
    Entity,
    Feature,
    FeatureView,
    LocalJsonRegistry,
    ParquetSource,
    SqlSource,
    apply_definitions,
    get_online_features,
    get_training_set,
    materialize,
    open_online_store,
)

from .conftest import hours, table

pytestmark = pytest.mark.s3
pq = pytest.importorskip("pyarrow.parquet")

CUSTOMER = Entity("customer", join_keys=["cid"])


@pytest.fixture
def s3(s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An s3fs client of the test bucket; mlpilot finds the endpoint through its own setting."""
    import s3fs

    monkeypatch.setenv("MLPILOT_S3_ENDPOINT_URL", s3_endpoint)
    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)


def part(i: int) -> Any:
    """Rows of part ``i``: keys 1..4, one row per key and hour, values telling part, key and hour apart."""
    rows = [(cid, h) for cid in range(1, 5) for h in range(i * 3, i * 3 + 3)]
    return table(
        cid=[cid for cid, _ in rows],
        et=[hours(h) for _, h in rows],
        x=[100.0 * i + 10 * cid + h for cid, h in rows],
    )


def upload(s3: Any, bucket: str, local: Path, i: int) -> None:
    local.mkdir(parents=True, exist_ok=True)
    pq.write_table(part(i), local / f"part-{i}.parquet")
    s3.put_file(str(local / f"part-{i}.parquet"), f"{bucket}/txn/part-{i}.parquet")


def views(paths: str) -> list[Any]:
    plain = FeatureView("txn", [CUSTOMER], ParquetSource(paths), "et", features=[Feature("x", "float64")])
    query = SqlSource("SELECT cid, et, x * 2 AS x2 FROM t WHERE cid <> 4", inputs={"t": ParquetSource(paths)})
    doubled = FeatureView("doubled", [CUSTOMER], query, "et", features=[Feature("x2", "float64")])
    return [CUSTOMER, plain, doubled]


def test_an_s3_glob_view_applies_joins_and_materializes_like_the_same_files_read_locally(
    s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "txn"
    for i in range(3):
        upload(s3, s3_bucket, local, i)
    registry = LocalJsonRegistry(tmp_path / "features.json")
    apply_definitions(registry, views(f"s3://{s3_bucket}/txn/*.parquet"))  # validates the schema over S3
    remote = Definitions.from_specs(registry.load_specs().specs)
    on_disk = Definitions(views(str(local / "*.parquet")))
    entity_df = table(
        cid=[1, 2, 3, 4, 5, 1, 2, 4],
        event_timestamp=[hours(h) for h in (0.5, 2, 4.5, 8, 8, 20, 7.5, 3)],
    )
    refs = ["txn:x", "doubled:x2"]
    from_s3 = get_training_set(entity_df, refs, definitions=remote)
    from_disk = get_training_set(entity_df, refs, definitions=on_disk)
    assert from_s3.data.equals(from_disk.data)
    assert from_s3.data.column("x").to_pylist() == [10.0, 22.0, 134.0, 248.0, None, 218.0, 227.0, 143.0]
    assert from_s3.report.to_dict() == from_disk.report.to_dict()

    online = open_online_store(f"sqlite:///{tmp_path / 'online.db'}")
    try:
        at = hours(12)
        results = materialize(["txn", "doubled"], definitions=remote, store=online, now=at)
        assert [r.rows_written for r in results] == [4, 3]
        served = get_online_features({"cid": [1, 2, 3, 4, 5]}, refs, definitions=remote, store=online, now=at)
        offline = get_training_set(table(cid=[1, 2, 3, 4, 5], event_timestamp=[at] * 5), refs, definitions=on_disk)
        assert served["x"] == offline.data.column("x").to_pylist() == [218.0, 228.0, 238.0, 248.0, None]
        assert served["x2"] == offline.data.column("x2").to_pylist() == [436.0, 456.0, 476.0, None, None]

        # A part landing later is seen by the next run of the same process (no stale listing).
        upload(s3, s3_bucket, local, 3)
        [later] = materialize(["txn"], definitions=remote, store=online, now=hours(24))
        assert later.rows_written == 4
        served = get_online_features({"cid": [1, 4]}, ["txn:x"], definitions=remote, store=online, now=hours(24))
        assert served["x"] == [321.0, 351.0]
    finally:
        online.close()


def test_a_glob_matching_nothing_is_refused_naming_the_view_and_the_source(
    s3: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-shown-secret")
    upload(s3, s3_bucket, tmp_path / "txn", 0)
    missing = f"s3://{s3_bucket}/nothing/*.parquet"
    definitions = views(missing)
    with pytest.raises(InvalidInputError) as applying:
        apply_definitions(LocalJsonRegistry(tmp_path / "features.json"), definitions)
    assert f"feature view 'txn': cannot read its source {missing}: " in applying.value.message
    assert "no Parquet file matches" in applying.value.message
    assert applying.value.field == "feature_views.txn.source"
    view = definitions[1]
    with pytest.raises(
        InvalidInputError, match=re.escape(f"feature view 'txn': cannot read its source {missing}: ")
    ) as joining:
        get_training_set(table(cid=[1], event_timestamp=[hours(1)]), [view])
    assert joining.value.field == "feature_views.txn.source"
    with pytest.raises(InvalidInputError, match=re.escape(f"feature view 'txn': cannot read its source {missing}: ")):
        materialize([view], store=f"sqlite:///{tmp_path / 'online.db'}", now=hours(1))
    no_bucket = f"s3://no-such-bucket-{s3_bucket}/txn/*.parquet"
    with pytest.raises(InvalidInputError, match=re.escape(f"cannot read its source {no_bucket}: ")) as unlisted:
        get_training_set(table(cid=[1], event_timestamp=[hours(1)]), [views(no_bucket)[1]])
    for error in (applying.value, joining.value, unlisted.value):
        assert "never-shown-secret" not in str(error.to_dict())


def test_without_s3fs_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if the s3 extra were not installed
    view = views("s3://bucket/txn/*.parquet")[1]
    with pytest.raises(MissingDependencyError, match=r"pip install 'mlpilot\[s3\]'"):
        get_training_set(table(cid=[1], event_timestamp=[datetime(2024, 1, 1)]), [view])
