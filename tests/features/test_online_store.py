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


@pytest.mark.parametrize("cutoff", [None, -5, 10, 11, 20, 21, 10**15])
def test_read_payloads_is_read_with_the_ttl_filter(online_store: Any, cutoff: int | None) -> None:
    online_store.write_batch("v", [row("[1]", 10, payload=b"a"), row("[2]", 20, payload=b"b"), row('["x"]', 0)])
    keys = ["[2]", "[9]", "[1]", "[2]", '["x"]']
    expected = [
        r.payload if r and (cutoff is None or r.event_time >= cutoff) else None for r in online_store.read("v", keys)
    ]
    assert online_store.read_payloads("v", keys, min_event_time=cutoff) == expected
    assert online_store.read_payloads("v", keys[:1], min_event_time=cutoff) == expected[:1]
    assert online_store.read_payloads("v", [], min_event_time=cutoff) == []
    assert online_store.read_payloads("other", keys, min_event_time=cutoff) == [None] * len(keys)


def test_read_payloads_in_large_batches_keeps_key_order(online_store: Any) -> None:
    # 2,600 keys cross every store's chunk size (SQLite 500, Redis 1,000 per statement or script call).
    online_store.write_batch("v", [row(f"[{i}]", i, payload=str(i).encode()) for i in range(2_500)])
    keys = [f"[{i}]" for i in range(2_599, -1, -1)]
    assert online_store.read_payloads("v", keys, min_event_time=1_000) == [
        str(i).encode() if 1_000 <= i < 2_500 else None for i in range(2_599, -1, -1)
    ]


def test_sqlite_reads_from_many_threads(tmp_path: Any) -> None:
    import threading

    from mlpilot.errors import StoreError

    store = open_online_store(f"sqlite:///{tmp_path / 'online.db'}")
    store.write_batch("v", [row("[1]", 0, payload=b"0")])
    seen: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    go, done = threading.Barrier(5), threading.Event()

    def reader(n: int) -> None:
        try:
            go.wait()
            while not done.is_set():
                [got] = store.read_payloads("v", ["[1]"])
                seen.setdefault(n, []).append(int(got or b"-1"))
            seen.setdefault(n, []).append(int(store.read_payloads("v", ["[1]", "[2]"])[0] or b"-1"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    go.wait()
    for version in range(1, 51):  # every write commits before the next read starts on any thread
        store.write_batch("v", [row("[1]", version, payload=str(version).encode())])
    done.set()
    for t in threads:
        t.join()
    assert not errors
    for values in seen.values():
        assert values == sorted(values)  # never an older row after a newer one
        assert values[-1] == 50  # a read after the last commit sees it
    store.close()
    with pytest.raises(StoreError, match="read failed"):
        store.read_payloads("v", ["[1]"])
    other: list[BaseException] = []
    thread = threading.Thread(target=lambda: other.extend(_raises(lambda: store.read("v", ["[1]", "[2]"]))))
    thread.start()
    thread.join()
    assert len(other) == 1
    assert isinstance(other[0], StoreError)


def _raises(call: Any) -> list[BaseException]:
    try:
        call()
    except BaseException as exc:
        return [exc]
    return []
