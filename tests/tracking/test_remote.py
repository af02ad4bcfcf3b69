"""The same SDK against a real ``mlpilot server`` on 127.0.0.1 (the live_server fixture)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlpilot.errors import (
    AuthenticationError,
    ConflictError,
    FilterSyntaxError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from mlpilot.remote.artifacts import RestArtifactStore
from mlpilot.remote.http import HttpTransport
from mlpilot.remote.tracking import RestTracking
from mlpilot.tracking import RunSpec, RunStatus, TrackingBackend, WriterError, start_run
from mlpilot.tracking.service import TrackingService


@pytest.fixture
def transport(live_server: Any) -> Iterator[HttpTransport]:
    t = HttpTransport(live_server.url)
    yield t
    t.close()


@pytest.fixture
def remote(transport: HttpTransport) -> RestTracking:
    return RestTracking(transport)


@pytest.fixture
def local(live_server: Any) -> TrackingService:
    """The server's own service, to check what actually reached its store."""
    return live_server.services.tracking  # type: ignore[no-any-return]


def test_rest_tracking_meets_the_protocol(remote: RestTracking) -> None:
    assert isinstance(remote, TrackingBackend)


def test_a_run_logged_through_the_server_lands_in_its_store(
    remote: RestTracking, transport: HttpTransport, local: TrackingService
) -> None:
    artifacts = RestArtifactStore(transport)
    frame = pd.DataFrame({"x": [1, 2, 3]})
    with start_run(remote, artifacts, experiment="churn", tags={"team": "growth"}, max_batch=700) as run:
        run.log_params({"max_depth": 6, "lr": 0.1})
        for step in range(2_000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("weird", math.nan)
        run.log_metric("huge", math.inf)
        run.log_metric("tiny", -math.inf)
        dataset = run.log_dataset(frame, name="train")
        with start_run(remote, artifacts, experiment="churn", nested=True) as child:
            child.log_metric("auc", 0.93)

    stored = local.get_run(run.id)
    assert stored.info.status == RunStatus.FINISHED
    assert stored.params == {"max_depth": "6", "lr": "0.1"}
    assert stored.tags == {"team": "growth"}
    assert stored.metrics["loss"] == 1.0 / 2_000
    assert math.isnan(stored.metrics["weird"])
    assert (stored.metrics["huge"], stored.metrics["tiny"]) == (math.inf, -math.inf)
    assert stored.inputs[0].dataset == dataset
    assert local.get_run(child.id).info.parent_id == run.id
    assert stored.environment is not None
    assert "packages" in stored.environment

    # Reading back through the server gives the same values as reading the store directly.
    fetched = remote.get_run(run.id)
    assert fetched.info == stored.info
    assert fetched.params == stored.params
    assert math.isnan(fetched.metrics["weird"])
    assert fetched.metrics["huge"] == math.inf
    assert fetched.inputs == stored.inputs
    assert fetched.environment == stored.environment
    history = remote.get_metric_history(run.id, "loss")
    assert [p.step for p in history] == list(range(2_000))
    assert history == local.get_metric_history(run.id, "loss")


def test_artifacts_logged_through_the_server(
    remote: RestTracking, transport: HttpTransport, local: TrackingService, tmp_path: Path
) -> None:
    artifacts = RestArtifactStore(transport)
    plot = tmp_path / "roc.png"
    plot.write_bytes(b"png bytes")
    with start_run(remote, artifacts, experiment="churn") as run:
        ref = run.log_artifact(plot, name="plots/roc.png")
    assert [(a.path, a.sha256) for a in local.get_run(run.id).artifacts] == [("plots/roc.png", ref.sha256)]
    assert artifacts.get_bytes(ref.sha256) == b"png bytes"


def test_search_and_pagination_through_the_server(remote: RestTracking) -> None:
    ids = []
    for i in range(7):
        info = remote.create_run(RunSpec(experiment="e", name=f"r{i}", start_time=1_000 + i))
        remote.log_batch(info.id, metrics=[("auc", i / 10, 0, 1)], params={"depth": str(i)}, tags={"t": "x"})
        ids.append(info.id)
    seen: list[str] = []
    token = None
    while True:
        page = remote.search_runs(
            "metrics.auc >= 0.2 and (params.depth <= 5 or tags.t = 'y')",
            experiment=["e"],
            order_by=["metrics.auc DESC"],
            max_results=2,
            page_token=token,
        )
        seen += [r.info.name for r in page.runs]
        token = page.next_page_token
        if token is None:
            break
    assert seen == ["r5", "r4", "r3", "r2"]
    assert [e.name for e in remote.list_experiments()] == ["e"]
    assert remote.get_experiment("e") == remote.get_or_create_experiment("e")


def test_server_errors_come_back_as_the_same_types(remote: RestTracking) -> None:
    with pytest.raises(FilterSyntaxError) as syntax:
        remote.search_runs("metrics.auc >> 1")
    assert syntax.value.field == "filter"
    assert "position 14" in syntax.value.message
    with pytest.raises(NotFoundError):
        remote.get_run("0" * 32)
    with pytest.raises(NotFoundError):
        remote.get_experiment("missing")
    with pytest.raises(NotFoundError):
        remote.search_runs(None, experiment="missing")
    run_id = remote.create_run(RunSpec(experiment="e")).id
    remote.end_run(run_id)
    with pytest.raises(ConflictError):
        remote.end_run(run_id)
    with pytest.raises(InvalidInputError) as bad_token:
        remote.search_runs(None, page_token="nonsense")
    assert bad_token.value.field == "page_token"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/batch", {"metrics": [["m", "high", 0, 1]]}, "metrics[0][1]"),
        ("/batch", {"metrics": [["m", 1.0, 0]]}, "metrics[0][3]"),
        ("/batch", {"params": {"a": 1}}, "params.a"),
        ("/batch", {"bogus": 1}, "bogus"),
        ("/end", {"status": "RUNNING"}, "status"),
        ("/end", {"status": "FINISHED", "metrics": [["m", None, 0, 1]]}, "metrics[0][1]"),
        ("/datasets", {"dataset": {"name": "d", "digest": "xyz", "num_rows": 1}}, "dataset.digest"),
        ("/artifacts", {"path": "a", "sha256": "0" * 64, "size": -1}, "size"),
    ],
)
def test_invalid_bodies_get_a_400_naming_the_field(
    live_server: Any, remote: RestTracking, path: str, body: dict[str, Any], field: str
) -> None:
    run_id = remote.create_run(RunSpec(experiment="e")).id
    response = httpx.post(f"{live_server.url}/api/v1/runs/{run_id}{path}", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_unsafe_artifact_paths_are_refused_by_the_server(live_server: Any, remote: RestTracking) -> None:
    run_id = remote.create_run(RunSpec(experiment="e")).id
    response = httpx.post(
        f"{live_server.url}/api/v1/runs/{run_id}/artifacts",
        json={"path": "../x", "sha256": "0" * 64, "size": 1},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "UnsafePathError"


def test_a_conflicting_batch_surfaces_remotely_too(remote: RestTracking, transport: HttpTransport) -> None:
    run = start_run(remote, RestArtifactStore(transport), experiment="e", flush_interval=3600)
    remote.log_batch(run.id, params={"lr": "0.5"})
    run.log_param("lr", 0.1)
    with pytest.raises(WriterError) as info:
        run.flush()
    assert isinstance(info.value.cause, ConflictError)
    run.end()


def test_roles_guard_reads_and_writes(secured_server: Any) -> None:
    tokens = secured_server.services.tokens
    viewer, _ = tokens.create("reader", role="viewer")
    editor, _ = tokens.create("writer", role="editor")
    anonymous = RestTracking(HttpTransport(secured_server.url))
    reader = RestTracking(HttpTransport(secured_server.url, token=viewer))
    writer = RestTracking(HttpTransport(secured_server.url, token=editor))
    with pytest.raises(AuthenticationError):
        anonymous.search_runs(None)
    with pytest.raises(PermissionDeniedError):
        reader.create_run(RunSpec(experiment="e"))
    info = writer.create_run(RunSpec(experiment="e"))
    writer.log_batch(info.id, metrics=[("m", 1.0, 0, 1)])
    assert reader.get_run(info.id).metrics == {"m": 1.0}
    with pytest.raises(PermissionDeniedError):
        reader.log_batch(info.id, metrics=[("m", 2.0, 1, 2)])
    # The audit trail names the token that made the change.
    from mlpilot.store.audit import list_events

    with secured_server.services.store.read() as session:
        assert [e.actor for e in list_events(session, subject=f"runs/{info.id}")] == ["writer"]
    for client in (anonymous, reader, writer):
        client.transport.close()
