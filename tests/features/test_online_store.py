"""One suite for every online store: SQLite and Redis must behave identically."""

from __future__ import annotations

from typing import Any

import pytest

from mlpilot.errors import InvalidInputError, MissingDependencyError
from mlpilot.features import OnlineStore, StoredRow, open_online_store


def row(key: str, et: int, av: int | None = None, payload: bytes = b"{}") -> StoredRow:
    return StoredRow(key, et, et if av is None else av, payload)


def test_store_satisfies_the_protocol(online_store: Any) -> None:
    assert isinstance(online_store, OnlineStore)


def test_write_then_read_in_key_order(online_store: Any) -> None:
    online_store.write_batch("v", [row("[1]", 10, payload=b"one"), row('["a",2]', 20, payload=b"two")])
    got = online_store.read("v", ['["a",2]', "[3]", "[1]"])
    assert got == [row('["a",2]', 20, payload=b"two"), None, row("[1]", 10, payload=b"one")]
    assert online_store.read("v", ["[1]"]) == [row("[1]", 10, payload=b"one")]
    assert online_store.read("other", ["[1]"]) == [None]


def test_older_rows_never_replace_newer_ones(online_store: Any) -> None:
    online_store.write_batch("v", [row("[1]", 10, 15, b"new")])
    online_store.write_batch("v", [row("[1]", 9, 30, b"late but older")])
    online_store.write_batch("v", [row("[1]", 10, 14, b"older correction")])
    assert online_store.read("v", ["[1]"])[0].payload == b"new"
    online_store.write_batch("v", [row("[1]", 10, 15, b"replay")])  # equal rank: the later write wins
    assert online_store.read("v", ["[1]"])[0].payload == b"replay"
    online_store.write_batch("v", [row("[1]", 10, 16, b"correction")])
    online_store.write_batch("v", [row("[1]", 11, 11, b"newer event")])
    assert online_store.read("v", ["[1]"])[0] == row("[1]", 11, 11, b"newer event")


def test_within_one_batch_the_newest_row_wins(online_store: Any) -> None:
    online_store.write_batch("v", [row("[1]", 5, payload=b"b"), row("[1]", 3, payload=b"a")])
    assert online_store.read("v", ["[1]"])[0].payload == b"b"


def test_watermark_only_moves_forward(online_store: Any) -> None:
    assert online_store.read_watermark("v") is None
    online_store.write_batch("v", [], watermark=100)
    online_store.write_batch("v", [row("[1]", 1)], watermark=50)
    assert online_store.read_watermark("v") == 100
    online_store.write_batch("v", [row("[2]", 1)], watermark=200)
    assert online_store.read_watermark("v") == 200
    assert online_store.read_watermark("w") is None


def test_large_batches_and_reads(online_store: Any) -> None:
    rows = [row(f"[{i}]", i, payload=str(i).encode()) for i in range(2_500)]
    online_store.write_batch("v", rows, watermark=7)
    keys = [f"[{i}]" for i in range(0, 2_600, 2)]
    got = online_store.read("v", keys)
    assert [g.payload if g else None for g in got] == [
        str(i).encode() if i < 2_500 else None for i in range(0, 2_600, 2)
    ]
    assert online_store.read_watermark("v") == 7


def test_data_survives_reopening(online_url: str) -> None:
    with open_online_store(online_url) as store:
        store.write_batch("v", [row("[1]", 1, payload=b"kept")], watermark=1)
    with open_online_store(online_url) as store:
        assert store.read("v", ["[1]"])[0].payload == b"kept"
        assert store.read_watermark("v") == 1


def test_redis_prefixes_isolate_stores(redis_url: str) -> None:
    import uuid

    a = f"{redis_url}?prefix=iso-{uuid.uuid4().hex}:"
    b = f"{redis_url}?prefix=iso-{uuid.uuid4().hex}:"
    with open_online_store(a) as store_a, open_online_store(b) as store_b:
        try:
            store_a.write_batch("v", [row("[1]", 1)], watermark=1)
            assert store_b.read("v", ["[1]"]) == [None]
            assert store_b.read_watermark("v") is None
        finally:
            store_a._client.delete(store_a._row_key("v", "[1]"), store_a._watermark_key("v"))


def test_urls_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="unsupported scheme 'mysql'"):
        open_online_store("mysql://x")
    with pytest.raises(InvalidInputError, match="expected sqlite:///path"):
        open_online_store("online.db")


def test_default_store_lives_under_mlpilot_home(tmp_path: Any) -> None:
    with open_online_store() as store:
        store.write_batch("v", [row("[1]", 1)])
    assert (tmp_path / "mlpilot-home" / "features" / "online.db").is_file()


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'mlpilot\[redis\]'"):
        open_online_store("redis://127.0.0.1:6379/0")
