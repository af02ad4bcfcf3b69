from __future__ import annotations

import math
import random
import string

import pytest
from sqlalchemy import func, select

from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError, UnsafePathError
from mlpilot.store.audit import list_events
from mlpilot.store.schema import Dataset, Metric, Param, RunInput
from mlpilot.tracking import ArtifactRef, DatasetInfo, RunSpec, RunStatus, TrackingService
from mlpilot.tracking.service import numeric_value

SHA_A = "a" * 64
SHA_B = "b" * 64


def new_run(service: TrackingService, **kwargs: object) -> str:
    return service.create_run(RunSpec(experiment="exp", **kwargs)).id  # type: ignore[arg-type]


def test_experiments_are_created_once_by_name(service: TrackingService) -> None:
    first = service.get_or_create_experiment("churn")
    again = service.get_or_create_experiment("churn")
    assert first == again
    assert [e.name for e in service.list_experiments()] == ["churn"]
    assert service.get_experiment("churn").id == first.id
    with pytest.raises(NotFoundError, match="'nope'"):
        service.get_experiment("nope")


def test_create_run_records_its_attributes(service: TrackingService) -> None:
    info = service.create_run(
        RunSpec(
            experiment="churn",
            name="baseline",
            tags={"team": "growth"},
            user="ada",
            source="/code/train.py",
            git_commit="abc123",
            git_dirty=True,
            environment={"python": "3.11.7"},
            start_time=42,
        )
    )
    assert len(info.id) == 32
    int(info.id, 16)
    run = service.get_run(info.id)
    assert run.info == info
    assert (run.info.name, run.info.status, run.info.start_time, run.info.end_time) == (
        "baseline",
        RunStatus.RUNNING,
        42,
        None,
    )
    assert (run.info.user, run.info.source, run.info.git_commit, run.info.git_dirty) == (
        "ada",
        "/code/train.py",
        "abc123",
        True,
    )
    assert run.tags == {"team": "growth"}
    assert run.environment == {"python": "3.11.7"}
    assert service.get_experiment("churn").id == info.experiment_id


def test_runs_get_a_default_name(service: TrackingService) -> None:
    info = service.create_run(RunSpec(experiment="e"))
    assert info.name == f"run-{info.id[:8]}"


def test_unknown_parent_is_refused(service: TrackingService) -> None:
    with pytest.raises(NotFoundError) as info:
        new_run(service, parent_id="f" * 32)
    assert info.value.field == "parent_id"


def test_end_run_sets_status_and_end_time_once(service: TrackingService) -> None:
    run_id = new_run(service)
    ended = service.end_run(run_id, "failed", end_time=777)
    assert (ended.status, ended.end_time) == (RunStatus.FAILED, 777)
    with pytest.raises(ConflictError, match="already ended as FAILED"):
        service.end_run(run_id, RunStatus.FINISHED)
    assert service.get_run(run_id).info.status == RunStatus.FAILED


@pytest.mark.parametrize("status", ["RUNNING", "DONE", ""])
def test_end_run_refuses_non_terminal_statuses(service: TrackingService, status: str) -> None:
    run_id = new_run(service)
    with pytest.raises(InvalidInputError) as info:
        service.end_run(run_id, status)
    assert info.value.field == "status"


def test_run_lifecycle_is_audited(service: TrackingService) -> None:
    run_id = new_run(service)
    service.end_run(run_id, "KILLED")
    with service.store.read() as session:
        events = list_events(session, subject=f"runs/{run_id}")
        assert [(e.kind, e.payload.get("status")) for e in events] == [
            ("run.created", None),
            ("run.ended", "KILLED"),
        ]
        assert [e.kind for e in list_events(session, kind="experiment.created")] == ["experiment.created"]


def test_unknown_run_is_not_found_everywhere(service: TrackingService) -> None:
    missing = "0" * 32
    calls = [
        lambda: service.get_run(missing),
        lambda: service.end_run(missing),
        lambda: service.log_batch(missing, metrics=[("m", 1.0, 0, 1)]),
        lambda: service.log_batch(missing),
        lambda: service.get_metric_history(missing, "m"),
        lambda: service.log_artifact(missing, ArtifactRef(path="a", sha256=SHA_A, size=1)),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.field == "run_id"


def test_metric_history_comes_back_in_step_order(service: TrackingService) -> None:
    run_id = new_run(service)
    service.log_batch(run_id, metrics=[("loss", 0.3, 2, 30), ("loss", 0.5, 0, 10), ("acc", 0.1, 0, 10)])
    service.log_batch(run_id, metrics=[("loss", 0.4, 1, 20)])
    history = service.get_metric_history(run_id, "loss")
    assert [(p.step, p.timestamp, p.value) for p in history] == [(0, 10, 0.5), (1, 20, 0.4), (2, 30, 0.3)]
    assert service.get_metric_history(run_id, "never") == []


def test_latest_value_only_moves_forward(service: TrackingService) -> None:
    run_id = new_run(service)
    service.log_batch(run_id, metrics=[("m", 5.0, 5, 100)])
    service.log_batch(run_id, metrics=[("m", 3.0, 3, 200)])  # an older step arriving late
    assert service.get_run(run_id).metrics == {"m": 5.0}
    service.log_batch(run_id, metrics=[("m", 6.0, 5, 150)])  # same step, later time
    assert service.get_run(run_id).metrics == {"m": 6.0}
    service.log_batch(run_id, metrics=[("m", 1.0, 5, 120), ("m", 9.0, 7, 10), ("m", 2.0, 6, 999)])
    assert service.get_run(run_id).metrics == {"m": 9.0}


def test_non_finite_values_round_trip(service: TrackingService) -> None:
    run_id = new_run(service)
    service.log_batch(run_id, metrics=[("nan", math.nan, 0, 1), ("inf", math.inf, 0, 1), ("ninf", -math.inf, 0, 1)])
    metrics = service.get_run(run_id).metrics
    assert math.isnan(metrics["nan"])
    assert metrics["inf"] == math.inf
    assert metrics["ninf"] == -math.inf
    assert math.isnan(service.get_metric_history(run_id, "nan")[0].value)


@pytest.mark.parametrize(
    "point",
    [
        ("m", "high", 0, 1),
        ("m", 1.0, "zero", 1),
        ("m", 1.0),
        ("", 1.0, 0, 1),
        ("k" * 257, 1.0, 0, 1),
        (3, 1.0, 0, 1),
    ],
)
def test_bad_metric_points_are_refused_and_nothing_is_written(service: TrackingService, point: tuple) -> None:
    run_id = new_run(service)
    with pytest.raises(InvalidInputError):
        service.log_batch(run_id, metrics=[("ok", 1.0, 0, 1), point])
    assert service.get_metric_history(run_id, "ok") == []


def test_params_get_a_numeric_view(service: TrackingService) -> None:
    run_id = new_run(service)
    service.log_batch(run_id, params={"depth": "8", "lr": "1e-3", "opt": "adam", "flag": "True"})
    with service.store.read() as session:
        rows = dict(session.execute(select(Param.key, Param.value_num).where(Param.run_id == run_id)).all())
    assert rows == {"depth": 8.0, "lr": 0.001, "opt": None, "flag": None}


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("8", 8.0),
        (" -2.5 ", -2.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("3.", 3.0),
        ("nan", None),
        ("inf", None),
        ("1_000", None),
        ("0x10", None),
        ("True", None),
        ("", None),
        ("1e999", None),
    ],
)
def test_numeric_value(text: str, number: float | None) -> None:
    assert numeric_value(text) == number


def test_params_are_write_once(service: TrackingService) -> None:
    run_id = new_run(service)
    service.log_batch(run_id, params={"lr": "0.1"})
    service.log_batch(run_id, params={"lr": "0.1"})  # the same value again is fine
    with pytest.raises(ConflictError, match="write-once") as info:
        service.log_batch(run_id, params={"lr": "0.2"}, metrics=[("m", 1.0, 0, 1)])
    assert info.value.field == "param"
    # The whole batch was refused: no metric point slipped through.
    assert service.get_metric_history(run_id, "m") == []
    assert service.get_run(run_id).params == {"lr": "0.1"}


def test_tags_are_overwritten(service: TrackingService) -> None:
    run_id = new_run(service, tags={"stage": "dev"})
    service.log_batch(run_id, tags={"stage": "prod", "team": "a"})
    assert service.get_run(run_id).tags == {"stage": "prod", "team": "a"}


def test_logging_to_an_ended_run_is_allowed(service: TrackingService) -> None:
    run_id = new_run(service)
    service.end_run(run_id)
    service.log_batch(run_id, metrics=[("late_eval", 0.7, 0, 1)])
    assert service.get_run(run_id).metrics == {"late_eval": 0.7}


def test_datasets_are_stored_once_and_linked_per_context(service: TrackingService) -> None:
    first, second = new_run(service), new_run(service)
    data = DatasetInfo(name="train", digest=SHA_A, num_rows=10, schema={"columns": []}, source="s3://b/train")
    service.log_dataset(first, data, context="train")
    service.log_dataset(first, data, context="train")  # idempotent
    service.log_dataset(first, data, context="eval")
    service.log_dataset(second, data)
    run = service.get_run(first)
    assert [(i.dataset, i.context) for i in run.inputs] == [(data, "eval"), (data, "train")]
    with service.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 1
        assert session.scalar(select(func.count()).select_from(RunInput)) == 3


def test_artifacts_point_logical_paths_at_blobs(service: TrackingService) -> None:
    run_id = new_run(service)
    service.log_artifact(run_id, ArtifactRef(path="plots//roc.png", sha256=SHA_A, size=3))
    service.log_artifact(run_id, ArtifactRef(path="model.bin", sha256=SHA_A, size=3))
    service.log_artifact(run_id, ArtifactRef(path="plots/roc.png", sha256=SHA_B, size=5))
    assert [(a.path, a.sha256, a.size) for a in service.get_run(run_id).artifacts] == [
        ("model.bin", SHA_A, 3),
        ("plots/roc.png", SHA_B, 5),
    ]
    with pytest.raises(UnsafePathError):
        service.log_artifact(run_id, ArtifactRef(path="../escape", sha256=SHA_A, size=1))


def test_a_batch_is_one_transaction_of_many_points(service: TrackingService) -> None:
    run_id = new_run(service)
    points = [(f"m{i % 5}", float(i), i // 5, 1_000 + i) for i in range(5_000)]
    service.log_batch(run_id, metrics=points)
    with service.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run_id)) == 5_000
    assert service.get_run(run_id).metrics == {f"m{k}": 4995.0 + k for k in range(5)}


def test_end_run_commits_the_last_batch_with_the_status(service: TrackingService) -> None:
    run_id = new_run(service)
    service.end_run(run_id, metrics=[("m", 1.0, 0, 1)], params={"p": "1"}, tags={"t": "x"})
    run = service.get_run(run_id)
    assert (run.info.status, run.metrics, run.params, run.tags) == (
        RunStatus.FINISHED,
        {"m": 1.0},
        {"p": "1"},
        {"t": "x"},
    )


def test_a_refused_end_writes_none_of_its_batch(service: TrackingService) -> None:
    run_id = new_run(service)
    service.end_run(run_id)
    with pytest.raises(ConflictError):
        service.end_run(run_id, metrics=[("m", 1.0, 0, 1)])
    with pytest.raises(InvalidInputError):
        service.end_run(new_run(service), metrics=[("m", "bad", 0, 1)])
    assert service.get_metric_history(run_id, "m") == []


def test_long_tag_values_are_stored_and_matched_exactly(service: TrackingService) -> None:
    # Incompressible text: PostgreSQL refuses B-tree rows over ~2.7 kB, so only a prefix of tag values is indexed.
    rng = random.Random(1)
    head = "".join(rng.choices(string.ascii_letters, k=300))
    note_a = head + "".join(rng.choices(string.ascii_letters, k=6_000))
    note_b = head + "".join(rng.choices(string.ascii_letters, k=6_000))
    run_a = new_run(service, tags={"note": note_a})
    run_b = new_run(service)
    service.log_batch(run_b, tags={"note": note_b})
    assert service.get_run(run_a).tags == {"note": note_a}
    assert [r.id for r in service.search_runs(f"tags.note = '{note_a}'").runs] == [run_a]
    assert [r.id for r in service.search_runs(f"tags.note IN ('{note_b}', 'other')").runs] == [run_b]
    assert service.search_runs(f"tags.note = '{head}'").runs == []


@pytest.mark.parametrize("context", ["", "c" * 65])
def test_bad_dataset_contexts_are_refused(service: TrackingService, context: str) -> None:
    data = DatasetInfo(name="d", digest=SHA_A, num_rows=1)
    with pytest.raises(InvalidInputError) as info:
        service.log_dataset(new_run(service), data, context=context)
    assert info.value.field == "context"
