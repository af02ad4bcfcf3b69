"""A training set's leakage report travels with the run that logs it: SDK, search, REST, remote client and CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.cli.context import settings
from mlpilot.cli.main import cli
from mlpilot.errors import InvalidInputError
from mlpilot.tracking import DatasetInfo, RunSpec, TrackingService, describe_dataset, start_run
from mlpilot.tracking.leakage import LEAKAGE_REPORT_KEY, MAX_REPORT_BYTES

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb", reason="needs the features extra: pip install 'mlpilot[features]'")

from mlpilot.features import (  # noqa: E402
    Entity,
    Feature,
    FeatureView,
    LeakageReport,
    TableSource,
    TrainingSet,
    get_training_set,
)

T0 = datetime(2024, 1, 1)
SUMMARY = "1 equal-timestamp match, 2 excluded by availability, 1 TTL null"


def _ts(hours: list[float]) -> Any:
    return pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us"))


def training_set(output: str = "arrow", *, strict: bool = False) -> TrainingSet:
    """Customer 1's 05:00 event is loaded at 09:00 and corrected at 12:00; customer 2's only row expires."""
    rows = pa.table(
        {
            "cid": [1, 1, 1, 2],
            "et": _ts([0, 5, 5, 0]),
            "av": _ts([0, 9, 12, 0]),
            "x": [1.0, 2.0, 3.0, 7.0],
        }
    )
    view = FeatureView(
        "txn",
        [Entity("customer", join_keys=["cid"])],
        TableSource(rows),
        timestamp_field="et",
        available_at_field="av",
        ttl=timedelta(hours=10),
        features=[Feature("x", "float64")],
    )
    entities = pa.table({"cid": [1, 1, 1, 2], "event_timestamp": _ts([6, 9, 13, 11])})
    return get_training_set(entities, [view], output=output, strict=strict)  # type: ignore[arg-type]


def _report(**totals: Any) -> dict[str, Any]:
    counts = {"equal_timestamp": 0, "excluded_by_availability": 0, "ttl_expired": 0, **totals}
    return {"entity_rows": 3, "totals": counts}


@pytest.fixture
def run_artifacts(tmp_path: Path) -> FsspecArtifactStore:
    return FsspecArtifactStore(str(tmp_path / "artifacts"))


def _log(service: Any, artifacts: Any, data: Any, **kwargs: Any) -> str:
    with start_run(service, artifacts, experiment="leak", capture_environment=False) as run:
        run.log_dataset(data, name="train", **kwargs)
    return run.id


def test_the_worked_example_counts_what_the_summary_says() -> None:
    report = training_set().report
    assert (report.equal_timestamp, report.excluded_by_availability, report.ttl_expired) == (1, 2, 1)


@pytest.mark.parametrize(
    ("output", "logged"),
    [
        ("arrow", lambda ts: ts.data),  # schema metadata
        ("arrow", lambda ts: ts.data.to_batches()[0]),  # a record batch keeps it too
        ("pandas", lambda ts: ts.data),  # df.attrs
        ("polars", lambda ts: ts),  # polars frames carry no metadata: the TrainingSet does
    ],
)
def test_the_report_is_stored_with_the_run_input(
    service: TrackingService, run_artifacts: FsspecArtifactStore, output: str, logged: Any
) -> None:
    ts = training_set(output)
    run_id = _log(service, run_artifacts, logged(ts))
    [entry] = service.get_run(run_id).inputs
    assert entry.dataset.leakage_report == ts.report.to_dict()
    assert LeakageReport.from_dict(entry.dataset.leakage_report) == ts.report
    assert entry.dataset.leakage_summary == SUMMARY
    [found] = service.search_runs(experiment="leak").runs
    assert found.inputs[0].dataset.leakage_report == ts.report.to_dict()


def test_the_report_does_not_change_the_digest(service: TrackingService, run_artifacts: FsspecArtifactStore) -> None:
    ts = training_set()
    bare = ts.data.replace_schema_metadata(None)
    assert describe_dataset(bare, name="train").leakage_report is None
    with_report = _log(service, run_artifacts, ts.data)
    without = _log(service, run_artifacts, bare)
    a, b = (service.get_run(r).inputs[0].dataset for r in (with_report, without))
    assert a.digest == b.digest
    assert (a.leakage_report is not None, b.leakage_report) == (True, None)
    assert describe_dataset(training_set("polars"), name="train").digest == a.digest
    frame = training_set("pandas").data
    with_attrs = describe_dataset(frame, name="train")
    frame.attrs.clear()
    assert (with_attrs.digest, with_attrs.leakage_report is not None) == (
        describe_dataset(frame, name="t").digest,
        True,
    )


def test_a_dataset_without_a_report_has_none(service: TrackingService, run_artifacts: FsspecArtifactStore) -> None:
    run_id = _log(service, run_artifacts, {"x": [1, 2, 3]})
    [entry] = service.get_run(run_id).inputs
    assert entry.dataset.leakage_report is None
    assert entry.dataset.leakage_summary is None


def test_the_report_survives_parquet(
    service: TrackingService, run_artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    ts = training_set()
    pq.write_table(ts.data, tmp_path / "train.parquet")
    run_id = _log(service, run_artifacts, pq.read_table(tmp_path / "train.parquet"))
    assert service.get_run(run_id).inputs[0].dataset.leakage_report == ts.report.to_dict()


def test_runs_logging_the_same_rows_keep_their_own_reports(
    service: TrackingService, run_artifacts: FsspecArtifactStore
) -> None:
    loose, strict = training_set(), training_set(strict=True)
    assert loose.report != strict.report
    first, second = _log(service, run_artifacts, loose), _log(service, run_artifacts, strict)
    reports = [service.get_run(r).inputs[0].dataset.leakage_report for r in (first, second)]
    assert reports == [loose.report.to_dict(), strict.report.to_dict()]


def test_relogging_an_input_with_a_report_replaces_it_and_without_keeps_it(service: TrackingService) -> None:
    run_id = service.create_run(RunSpec(experiment="leak")).id
    info = describe_dataset({"x": [1, 2, 3]}, name="train", leakage_report=_report(ttl_expired=1))
    service.log_dataset(run_id, info)
    service.log_dataset(run_id, info.model_copy(update={"leakage_report": None}))
    assert service.get_run(run_id).inputs[0].dataset.leakage_report == _report(ttl_expired=1)
    service.log_dataset(run_id, describe_dataset({"x": [1, 2, 3]}, name="train", leakage_report=_report()))
    [entry] = service.get_run(run_id).inputs
    assert entry.dataset.leakage_report == _report()
    assert entry.dataset.leakage_summary == "0 equal-timestamp matches, 0 excluded by availability, 0 TTL nulls"


def test_an_explicit_report_wins_and_row_count_mismatches_are_shown() -> None:
    ts = training_set()
    info = describe_dataset(ts.data, name="train", leakage_report=_report(equal_timestamp=5))
    assert info.leakage_report == _report(equal_timestamp=5)
    assert info.leakage_summary == (
        "5 equal-timestamp matches, 0 excluded by availability, 0 TTL nulls (report covers 3 rows, dataset has 4)"
    )
    # the report object itself is accepted too
    assert describe_dataset(ts.data.to_pandas(), name="t", leakage_report=ts.report).leakage_report == (
        ts.report.to_dict()
    )


def _with_metadata(value: bytes) -> Any:
    return pa.table({"x": [1, 2, 3]}).replace_schema_metadata({LEAKAGE_REPORT_KEY.encode(): value})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"entity_rows": 3}', "'totals' object"),
        (json.dumps(_report(ttl_expired=-1)).encode(), "totals.ttl_expired"),
        (json.dumps(_report(equal_timestamp=True)).encode(), "totals.equal_timestamp"),
        (json.dumps(_report(equal_timestamp=1.5)).encode(), "totals.equal_timestamp"),
        (json.dumps({**_report(), "entity_rows": "3"}).encode(), "entity_rows"),
        (json.dumps({**_report(), "embargo_seconds": float("nan")}).encode(), "finite"),
        (json.dumps({**_report(), "pad": "x" * MAX_REPORT_BYTES}).encode(), "larger than"),
    ],
)
def test_a_malformed_report_is_refused_before_anything_is_stored(
    service: TrackingService, run_artifacts: FsspecArtifactStore, raw: bytes, message: str
) -> None:
    with start_run(service, run_artifacts, experiment="leak", capture_environment=False) as run:
        with pytest.raises(InvalidInputError, match=message) as caught:
            run.log_dataset(_with_metadata(raw), name="train")
        run.log_dataset({"y": [1]}, name="other")  # the run goes on
    assert caught.value.field == "leakage_report"
    assert [i.dataset.name for i in service.get_run(run.id).inputs] == ["other"]


@pytest.mark.parametrize("bad", [{"entity_rows": 1}, [1], {"entity_rows": 1, "totals": {}}])
def test_a_malformed_report_in_pandas_attrs_or_passed_explicitly_is_refused(bad: Any) -> None:
    frame = training_set("pandas").data
    frame.attrs[LEAKAGE_REPORT_KEY] = bad
    with pytest.raises(InvalidInputError) as caught:
        describe_dataset(frame, name="train")
    assert caught.value.field == "leakage_report"
    with pytest.raises(InvalidInputError):
        describe_dataset({"x": [1]}, name="train", leakage_report=bad)


def test_through_a_real_server_the_sdk_rest_and_cli_see_the_report(live_server: Any) -> None:
    ts = training_set("pandas")
    with live_server.client.start_run("leak") as run:
        info = run.log_dataset(ts.data, name="train")
    assert info.leakage_report == ts.report.to_dict()
    # what reached the server's store
    stored = live_server.services.tracking.get_run(run.id).inputs[0].dataset
    assert stored.leakage_report == ts.report.to_dict()
    assert stored.digest == info.digest
    # the remote client reads it back
    assert live_server.client.get_run(run.id).inputs[0].dataset.leakage_report == ts.report.to_dict()
    # plain REST
    body = httpx.get(f"{live_server.url}/api/v1/runs/{run.id}").json()
    assert body["inputs"][0]["dataset"]["leakage_report"] == ts.report.to_dict()
    # the CLI, against the same server
    settings.cache_clear()
    result = CliRunner().invoke(cli, ["runs", "show", run.id, "--url", live_server.url])
    assert result.exit_code == 0, result.output
    assert f"train (train) leakage: {SUMMARY}" in result.output
    result = CliRunner().invoke(cli, ["runs", "show", run.id, "--url", live_server.url, "--json"])
    assert json.loads(result.output)["inputs"][0]["dataset"]["leakage_report"] == ts.report.to_dict()


def test_the_server_refuses_a_malformed_report_naming_the_field(live_server: Any) -> None:
    tracking = live_server.services.tracking
    run_id = tracking.create_run(RunSpec(experiment="leak")).id
    dataset = describe_dataset({"x": [1]}, name="train").model_dump(mode="json")
    for bad in ({"entity_rows": 1, "totals": {"ttl_expired": -3}}, "not an object", {"entity_rows": 1}):
        response = httpx.post(
            f"{live_server.url}/api/v1/runs/{run_id}/datasets",
            json={"dataset": {**dataset, "leakage_report": bad}, "context": "train"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "dataset.leakage_report"
    assert tracking.get_run(run_id).inputs == []


def test_a_run_without_reports_shows_no_leakage_line(live_server: Any) -> None:
    with live_server.client.start_run("leak") as run:
        run.log_dataset({"x": [1, 2]}, name="plain")
    settings.cache_clear()
    result = CliRunner().invoke(cli, ["runs", "show", run.id, "--url", live_server.url])
    assert result.exit_code == 0, result.output
    assert "plain" in result.output
    assert "leakage" not in result.output
    assert isinstance(live_server.client.get_run(run.id).inputs[0].dataset, DatasetInfo)


def test_a_model_registered_from_the_run_carries_the_report_in_its_lineage(
    service: TrackingService, run_artifacts: FsspecArtifactStore
) -> None:
    from mlpilot.registry import NewModelVersion, RegistryService

    ts = training_set()
    with_report = _log(service, run_artifacts, ts.data)
    without = _log(service, run_artifacts, ts.data.replace_schema_metadata(None))
    registry = RegistryService(service.store)
    versions = [
        registry.create_model_version(
            "leaky", NewModelVersion(flavor="pyfunc", artifact_sha256=f"{i:064x}", artifact_size=1, run_id=run_id)
        )
        for i, run_id in enumerate((with_report, without), start=1)
    ]
    [reported], [bare] = (v.lineage["datasets"] for v in versions)
    assert reported["leakage_report"] == ts.report.to_dict()
    assert "leakage_report" not in bare
    assert registry.get_model_version("leaky", 1).lineage == versions[0].lineage
