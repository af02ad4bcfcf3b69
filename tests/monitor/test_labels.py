"""Late labels joined to logged predictions: by request id (and row), by entity and time, all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlpilot.errors import InvalidInputError, NotFoundError
from mlpilot.monitor import LabelBatch, log_labels
from mlpilot.monitor.windows import WindowSpec
from tests.monitor.conftest import T0, Platform, features


def _label_files(platform: Platform) -> list[Path]:
    return sorted(Path(platform.log_url, "_labels").rglob("*.parquet"))


def test_labels_by_request_id_join_the_window(platform: Platform) -> None:
    ids = platform.serve("churn", features(20, seed=1))
    receipt = platform.monitor.log_labels(LabelBatch.from_request_ids(ids[:15], [1, 0, 1] * 5))
    assert (receipt.stored, receipt.endpoints) == (15, {"churn": 15})
    window = platform.monitor.window("churn", WindowSpec())
    assert window.labeled_rows == 15
    labels = window.table.column("label").to_pylist()
    assert labels[:15] == [1.0, 0.0, 1.0] * 5
    assert labels[15:] == [None] * 5
    with platform.store.read() as session:
        from mlpilot.store.audit import list_events

        events = list_events(session, kind="monitor.labels_logged")
    assert [(e.subject, e.payload) for e in events] == [("endpoints/churn", {"count": 15})]


def test_unknown_request_ids_reject_the_whole_batch_and_store_nothing(sqlite_platform: Platform) -> None:
    ids = sqlite_platform.serve("churn", features(5, seed=2))
    batch = LabelBatch.from_request_ids([*ids, "never-served", "nor-this"], [1] * 7)
    with pytest.raises(NotFoundError) as info:
        sqlite_platform.monitor.log_labels(batch)
    assert info.value.field == "request_id"
    assert "never-served" in info.value.message
    assert "nothing was stored" in info.value.message
    assert info.value.details["unknown"] == ["never-served", "nor-this"]
    assert _label_files(sqlite_platform) == []
    assert sqlite_platform.monitor.window("churn", WindowSpec()).labeled_rows == 0


def test_labels_by_entity_and_time_match_the_latest_prediction_before(sqlite_platform: Platform) -> None:
    cols = features(3, seed=3)
    # user-0 is predicted at T0 in request "a0", and again an hour later in request "b0".
    sqlite_platform.serve("churn", cols, prefix="a")
    sqlite_platform.serve("churn", cols, prefix="b", start_ms=T0 + 3_600_000)
    receipt = log_labels(
        labels=[1, 0],
        entity_ids=["user-0", "user-1"],
        times=[T0 + 1_800_000, T0 + 7_200_000],
        backend=sqlite_platform.monitor,
    )
    assert receipt.stored == 2
    table = sqlite_platform.monitor.window("churn", WindowSpec()).table
    labeled = {
        (rid, label) for rid, label in zip(table["request_id"].to_pylist(), table["label"].to_pylist(), strict=True)
    }
    assert ("a0", 1.0) in labeled  # half an hour after a0, before b0
    assert ("b1", 0.0) in labeled  # two hours later: the second prediction of user-1
    assert ("a1", None) in labeled


def test_entity_without_a_prediction_before_the_label_is_rejected(sqlite_platform: Platform) -> None:
    sqlite_platform.serve("churn", features(2, seed=4))
    with pytest.raises(NotFoundError, match="entity_id"):
        log_labels(labels=[1], entity_ids=["user-0"], times=[T0 - 1], backend=sqlite_platform.monitor)
    with pytest.raises(NotFoundError, match="user-99"):
        log_labels(labels=[1], entity_ids=["user-99"], times=[T0 + 10_000], backend=sqlite_platform.monitor)
    assert _label_files(sqlite_platform) == []


def test_multi_row_requests_need_the_row(sqlite_platform: Platform) -> None:
    ids = sqlite_platform.serve("churn", features(6, seed=5), rows_per_request=3)
    with pytest.raises(InvalidInputError) as info:
        sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids([ids[0]], [1]))
    assert info.value.field == "row"
    with pytest.raises(InvalidInputError, match="row 3 does not exist"):
        sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids([ids[0]], [1], rows=[3]))
    sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids([ids[0], ids[0], ids[1]], [1, 0, 1], rows=[0, 2, 1]))
    table = sqlite_platform.monitor.window("churn", WindowSpec()).table
    assert table.column("label").to_pylist() == [1.0, None, 0.0, None, 1.0, None]


def test_a_prediction_labeled_twice_in_one_batch_is_rejected(sqlite_platform: Platform) -> None:
    ids = sqlite_platform.serve("churn", features(3, seed=6))
    with pytest.raises(InvalidInputError, match="more than once"):
        sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids([ids[0], ids[0]], [1, 0]))
    assert _label_files(sqlite_platform) == []


def test_a_newer_label_replaces_an_older_one(sqlite_platform: Platform) -> None:
    ids = sqlite_platform.serve("churn", features(2, seed=7))
    sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(ids, [1, 1]))
    sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(ids[:1], [0]))
    table = sqlite_platform.monitor.window("churn", WindowSpec()).table
    assert table.column("label").to_pylist() == [0.0, 1.0]


def test_text_labels_stay_text_and_endpoint_scopes_the_lookup(sqlite_platform: Platform) -> None:
    ids = sqlite_platform.serve("churn", features(3, seed=8))
    sqlite_platform.serve("fraud", features(2, seed=9), prefix="f")
    sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(ids, ["yes", "no", True]))
    assert sqlite_platform.monitor.window("churn", WindowSpec()).table.column("label").to_pylist() == [
        "yes",
        "no",
        "true",
    ]
    with pytest.raises(NotFoundError, match="f0"):
        sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(["f0"], [1], endpoint="churn"))
    assert sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(["f0"], [1])).endpoints == {"fraud": 1}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: LabelBatch.from_request_ids(["a", "b"], [1]), "labels"),
        (lambda: LabelBatch.from_request_ids(["a"], [float("nan")]), "label"),
        (lambda: LabelBatch.from_request_ids([], []), "labels"),
        (lambda: LabelBatch.from_entities(["u"], [1, 2], [1]), "times"),
        (lambda: log_labels(["a"], None), "labels"),
        (lambda: log_labels(None, [1]), "request_ids"),
    ],
)
def test_malformed_label_batches_name_the_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        call()  # type: ignore[operator]
    assert info.value.field is not None
    assert info.value.field.startswith(field) or field in info.value.field


def test_labels_for_an_empty_log_are_rejected(sqlite_platform: Platform) -> None:
    with pytest.raises(NotFoundError, match="empty"):
        sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(["x"], [1]))
    with pytest.raises(NotFoundError, match="endpoint"):
        sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(["x"], [1], endpoint="churn"))


def test_numpy_labels_are_accepted(sqlite_platform: Platform) -> None:
    ids = sqlite_platform.serve("churn", features(3, seed=10))
    receipt = sqlite_platform.monitor.log_labels(LabelBatch.from_request_ids(ids, np.array([1, 0, 1])))
    assert receipt.stored == 3
