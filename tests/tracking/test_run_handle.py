from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError
from mlpilot.tracking import RunStatus, TrackingService, WriterError, active_run, start_run

WORKER = Path(__file__).with_name("logging_worker.py")


def run_in(service: TrackingService, artifacts: FsspecArtifactStore, **kwargs: object):  # type: ignore[no-untyped-def]
    return start_run(service, artifacts, experiment="exp", capture_environment=False, **kwargs)  # type: ignore[arg-type]


def test_normal_exit_finishes_and_flushes(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with run_in(service, artifacts, name="ok", tags={"team": "growth", "n": 3}) as run:
        run.log_params({"max_depth": 6, "lr": 0.1})
        run.log_param("opt", "adam")
        for step in range(100):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"auc": 0.9, "f1": 0.8})
        run.set_tag("stage", "dev")
    stored = service.get_run(run.id)
    assert stored.info.status == RunStatus.FINISHED
    assert stored.info.end_time is not None
    assert run.info == stored.info
    assert stored.params == {"max_depth": "6", "lr": "0.1", "opt": "adam"}
    assert stored.tags == {"team": "growth", "n": "3", "stage": "dev"}
    assert stored.metrics == {"loss": 0.01, "auc": 0.9, "f1": 0.8}
    assert [p.step for p in service.get_metric_history(run.id, "loss")] == list(range(100))


def test_an_exception_marks_the_run_failed_and_still_flushes(
    service: TrackingService, artifacts: FsspecArtifactStore
) -> None:
    started = []

    def train() -> None:
        with run_in(service, artifacts) as run:
            started.append(run)
            run.log_metric("loss", 0.5)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        train()
    stored = service.get_run(started[0].id)
    assert stored.info.status == RunStatus.FAILED
    assert stored.metrics == {"loss": 0.5}


def test_ctrl_c_marks_the_run_killed(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with pytest.raises(KeyboardInterrupt), run_in(service, artifacts) as run:
        raise KeyboardInterrupt
    assert service.get_run(run.id).info.status == RunStatus.KILLED


def test_explicit_end_is_idempotent(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    run = run_in(service, artifacts)
    first = run.end("KILLED")
    assert run.end() == first
    assert first.status == RunStatus.KILLED
    with pytest.raises(ConflictError, match="has ended"):
        run.log_metric("m", 1.0)
    with pytest.raises(ConflictError):
        run.log_params({"a": 1})


def test_nested_runs_take_the_innermost_active_run_as_parent(
    service: TrackingService, artifacts: FsspecArtifactStore
) -> None:
    with run_in(service, artifacts, name="outer") as outer:
        assert active_run() is outer
        with run_in(service, artifacts, name="inner", nested=True) as inner:
            assert active_run() is inner
            with run_in(service, artifacts, name="leaf", nested=True) as leaf:
                assert leaf.info.parent_id == inner.id
        assert active_run() is outer
        sibling = run_in(service, artifacts, name="sibling")  # nested=False: a top-level run
        sibling.end()
        explicit = run_in(service, artifacts, name="explicit", parent=inner.id)
        explicit.end()
    assert active_run() is None
    parents = {r.info.name: r.info.parent_id for r in service.search_runs(None).runs}
    assert parents == {
        "outer": None,
        "inner": outer.id,
        "leaf": inner.id,
        "sibling": None,
        "explicit": inner.id,
    }
    assert service.search_runs(f"attributes.parent_id = '{outer.id}'").runs[0].id == inner.id


def test_each_thread_has_its_own_run_stack(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    seen: list[object] = []
    with run_in(service, artifacts, name="main"):
        thread = threading.Thread(target=lambda: seen.append(active_run()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_no_point_is_lost_across_many_batches(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with run_in(service, artifacts, flush_interval=0.01, max_batch=500) as run:
        for i in range(20_000):
            run.log_metric(f"k{i % 4}", float(i), step=i // 4)
    for k in range(4):
        history = service.get_metric_history(run.id, f"k{k}")
        assert [p.value for p in history] == [float(i) for i in range(k, 20_000, 4)]
    assert service.get_run(run.id).metrics == {f"k{k}": float(19_996 + k) for k in range(4)}


def test_points_from_many_threads_all_arrive(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with run_in(service, artifacts, flush_interval=0.01, max_batch=300) as run:

        def log(worker: int) -> None:
            for step in range(2_000):
                run.log_metric(f"t{worker}", float(step), step=step)

        threads = [threading.Thread(target=log, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for w in range(4):
        assert [p.step for p in service.get_metric_history(run.id, f"t{w}")] == list(range(2_000))


def test_steps_default_to_the_next_step_per_key(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with run_in(service, artifacts) as run:
        run.log_metric("a", 1.0)
        run.log_metric("a", 2.0)
        run.log_metric("b", 1.0, step=10)
        run.log_metric("b", 2.0)
        run.log_metric("a", 3.0, timestamp=123)
    assert [(p.step, p.value) for p in service.get_metric_history(run.id, "a")] == [
        (0, 1.0),
        (1, 2.0),
        (2, 3.0),
    ]
    assert [p.step for p in service.get_metric_history(run.id, "b")] == [10, 11]
    assert service.get_metric_history(run.id, "a")[2].timestamp == 123


def test_flush_makes_points_durable_while_the_run_goes_on(
    service: TrackingService, artifacts: FsspecArtifactStore
) -> None:
    with run_in(service, artifacts, flush_interval=3600) as run:
        run.log_metric("m", 1.0)
        assert service.get_metric_history(run.id, "m") == []  # still buffered: the interval is an hour
        run.flush()
        assert [p.value for p in service.get_metric_history(run.id, "m")] == [1.0]


def test_the_writer_flushes_in_the_background(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with run_in(service, artifacts, flush_interval=0.02) as run:
        run.log_metric("m", 1.0)
        deadline = time.monotonic() + 30
        while not service.get_metric_history(run.id, "m"):
            assert time.monotonic() < deadline, "the background writer never flushed"
            time.sleep(0.01)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda r: r.log_metric("", 1.0), "metric"),
        (lambda r: r.log_metric("m", "0.5"), "value"),
        (lambda r: r.log_metric("m", None), "value"),
        (lambda r: r.log_metric("m", 1.0, step="3"), "step"),
        (lambda r: r.log_metric("m", 1.0, step=1.5), "step"),
        (lambda r: r.log_metric("m", 1.0, timestamp="now"), "timestamp"),
        (lambda r: r.log_params({"": 1}), "param"),
        (lambda r: r.set_tags({"k" * 300: "v"}), "tag"),
    ],
)
def test_bad_calls_fail_at_the_call(
    service: TrackingService, artifacts: FsspecArtifactStore, call: object, field: str
) -> None:
    with run_in(service, artifacts) as run:
        with pytest.raises(InvalidInputError) as info:
            call(run)  # type: ignore[operator]
        assert info.value.field == field


def test_params_are_write_once_in_the_handle(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    with run_in(service, artifacts) as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", "0.1")
        with pytest.raises(ConflictError, match="write-once"):
            run.log_param("lr", 0.2)


def test_a_failed_batch_surfaces_at_the_next_call(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    run = run_in(service, artifacts, flush_interval=3600)
    service.log_batch(run.id, params={"lr": "0.5"})  # another writer got there first
    run.log_param("lr", 0.1)
    run.log_metric("m", 1.0)
    with pytest.raises(WriterError, match=r"1 metric point\(s\) and 1 param\(s\) were not written") as info:
        run.flush()
    assert isinstance(info.value.cause, ConflictError)
    run.log_metric("m", 2.0)  # the error was reported once; logging goes on
    run.end()
    assert [p.value for p in service.get_metric_history(run.id, "m")] == [2.0]


def test_a_failed_final_flush_fails_the_run_and_raises(
    service: TrackingService, artifacts: FsspecArtifactStore
) -> None:
    run = run_in(service, artifacts, flush_interval=3600)
    service.log_batch(run.id, params={"lr": "0.5"})
    run.log_param("lr", 0.1)
    with pytest.raises(WriterError):
        run.__exit__(None, None, None)
    assert service.get_run(run.id).info.status == RunStatus.FAILED


def test_log_dataset_records_the_fingerprint(service: TrackingService, artifacts: FsspecArtifactStore) -> None:
    frame = pd.DataFrame({"age": [31, 45], "plan": ["basic", "pro"]})
    with run_in(service, artifacts) as run:
        info = run.log_dataset(frame, name="train")
        run.log_dataset(frame.head(1), name="holdout", context="eval")
    inputs = service.get_run(run.id).inputs
    assert [(i.dataset.name, i.context, i.dataset.num_rows) for i in inputs] == [
        ("train", "train", 2),
        ("holdout", "eval", 1),
    ]
    assert inputs[0].dataset == info


def test_log_artifact_stores_verified_bytes(
    service: TrackingService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    plot = tmp_path / "roc.png"
    plot.write_bytes(b"\x89PNG fake")
    folder = tmp_path / "report"
    (folder / "sub").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>hi</h1>")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    with run_in(service, artifacts) as run:
        ref = run.log_artifact(plot)
        run.log_artifact(plot, name="plots/roc.png")
        refs = run.log_artifacts(folder)
        with pytest.raises(InvalidInputError, match="log_artifacts"):
            run.log_artifact(folder)
        with pytest.raises(NotFoundError):
            run.log_artifact(tmp_path / "missing.txt")
    assert artifacts.get_bytes(ref.sha256) == b"\x89PNG fake"
    assert [r.path for r in refs] == ["report/index.html", "report/sub/data.csv"]
    stored = {a.path: a for a in service.get_run(run.id).artifacts}
    assert sorted(stored) == ["plots/roc.png", "report/index.html", "report/sub/data.csv", "roc.png"]
    assert stored["roc.png"].size == len(b"\x89PNG fake")
    assert artifacts.get_bytes(stored["report/sub/data.csv"].sha256) == b"a,b\n1,2\n"


def test_environment_and_git_state_are_captured(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'meta.db'}"  # capture does not depend on the backend
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    script = repo / "train.py"
    script.write_text(
        "import sys\n"
        "from mlpilot.store import Store\n"
        "from mlpilot.artifacts import FsspecArtifactStore\n"
        "from mlpilot.tracking import TrackingService, start_run\n"
        "with start_run(TrackingService(Store(sys.argv[1])), FsspecArtifactStore(sys.argv[2])) as run:\n"
        "    print(run.id)\n"
    )
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "train.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)

    def train() -> str:
        done = subprocess.run(
            [sys.executable, str(script), db_url, str(tmp_path / "art")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    clean_id = train()
    with script.open("a") as fh:
        fh.write("# an uncommitted change\n")
    dirty_id = train()
    service = TrackingService(__import__("mlpilot.store", fromlist=["Store"]).Store(db_url))
    clean, dirty = service.get_run(clean_id), service.get_run(dirty_id)
    assert (clean.info.git_commit, clean.info.git_dirty) == (head.stdout.strip(), False)
    assert (dirty.info.git_commit, dirty.info.git_dirty) == (head.stdout.strip(), True)
    assert clean.info.source == str(script)
    assert clean.info.user
    env = clean.environment or {}
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "sqlalchemy" in env["packages"]
    assert clean.info.experiment == "default"
    service.store.close()


def test_outside_a_git_tree_no_commit_is_recorded(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'meta.db'}"
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\n"
        "from mlpilot.store import Store\n"
        "from mlpilot.artifacts import FsspecArtifactStore\n"
        "from mlpilot.tracking import TrackingService, start_run\n"
        "with start_run(TrackingService(Store(sys.argv[1])), FsspecArtifactStore(sys.argv[2])) as run:\n"
        "    print(run.id)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), db_url, str(tmp_path / "art")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    from mlpilot.store import Store

    store = Store(db_url)
    info = TrackingService(store).get_run(done.stdout.strip()).info
    store.close()
    assert (info.git_commit, info.git_dirty) == (None, None)


@pytest.mark.parametrize(("mode", "status"), [("atexit", RunStatus.FINISHED), ("crash", RunStatus.FAILED)])
def test_open_runs_are_flushed_and_ended_at_exit(tmp_path: Path, mode: str, status: RunStatus) -> None:
    db_url = f"sqlite:///{tmp_path / 'meta.db'}"  # the exit hook does not depend on the backend
    done = subprocess.run(
        [sys.executable, str(WORKER), db_url, str(tmp_path / "art"), mode, "30000", "3600"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == (0 if mode == "atexit" else 1), done.stderr
    from mlpilot.store import Store

    store = Store(db_url)
    service = TrackingService(store)
    run = service.get_run(done.stdout.split()[0])
    assert run.info.status == status
    assert run.metrics == {"k0": 29_998.0, "k1": 29_999.0}
    assert len(service.get_metric_history(run.id, "k0")) == 15_000
    assert run.params == {"mode": mode, "points": "30000"}
    store.close()
