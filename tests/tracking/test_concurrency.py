"""Real processes against one store: concurrent writers, and a writer killed with SIGKILL mid-run."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text

from mlpilot.store import Store
from mlpilot.store.schema import LatestMetric, Metric
from mlpilot.tracking import RunSpec, RunStatus, TrackingService

WORKER = Path(__file__).with_name("logging_worker.py")


def spawn(
    db_url: str, tmp_path: Path, mode: str, points: int, flush_interval: float, max_batch: int, *gate: str
) -> subprocess.Popen[str]:
    args = [db_url, str(tmp_path / "art"), mode, str(points), str(flush_interval), str(max_batch), *gate]
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_processes_logging_to_one_sqlite_store_lose_nothing(tmp_path: Path) -> None:
    # A brand-new database: the eight processes also race to create the schema.
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    points = 4_000
    gate = tmp_path / "go"
    procs = [spawn(db_url, tmp_path, "with", points, 0.005, 100, str(gate)) for _ in range(8)]
    # Every worker has started its run before any logs a point, so their batches contend for the lock.
    run_ids = [p.stdout.readline().strip() if p.stdout else "" for p in procs]
    gate.touch()
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err.lower(), err
    assert len(set(run_ids)) == 8

    store = Store(db_url)
    service = TrackingService(store)
    for run_id in run_ids:
        run = service.get_run(run_id)
        assert run.info.status == RunStatus.FINISHED
        assert run.metrics == {"k0": points - 2.0, "k1": points - 1.0}
        values = sorted(p.value for k in ("k0", "k1") for p in service.get_metric_history(run_id, k))
        assert values == [float(i) for i in range(points)]
    with store.read() as session:
        writers = list(session.scalars(select(Metric.run_id).order_by(Metric.id)))
    assert len(writers) == 8 * points
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    assert switches > 7, "the workers' batches did not interleave: the test did not exercise contention"
    assert [e.name for e in service.list_experiments()] == ["workers"]
    store.close()


def _wait_for_points(service: TrackingService, run_id: str, at_least: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(service.get_metric_history(run_id, "k0")) < at_least:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the worker never wrote enough points"
        time.sleep(0.02)


def test_a_writer_killed_mid_run_leaves_the_store_consistent(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    service = TrackingService(store)
    proc = spawn(db_url, tmp_path, "forever", 0, 0.001, 50)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    _wait_for_points(service, run_id, 500, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if proc.stdout:
        proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()

    if store.dialect == "sqlite":
        with store.read() as session:
            assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    run = service.get_run(run_id)
    assert run.info.status == RunStatus.RUNNING  # nobody ended it
    assert run.params == {"mode": "forever", "points": "0"}
    # Batches are atomic and written in order: the durable points are exactly a prefix of what was logged.
    history = {k: service.get_metric_history(run_id, k) for k in ("k0", "k1")}
    values = sorted(p.value for points in history.values() for p in points)
    assert len(values) >= 1_000
    assert values == [float(i) for i in range(len(values))]
    # ... and each latest value matches the last durable point, written in the same transactions.
    with store.read() as session:
        latest = dict(
            session.execute(select(LatestMetric.key, LatestMetric.value).where(LatestMetric.run_id == run_id)).all()
        )
        assert session.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run_id)) == len(values)
    assert latest == {k: points[-1].value for k, points in history.items()}

    # The store takes writes again at once: the dead run can be closed and new runs logged.
    assert service.end_run(run_id, "KILLED").status == RunStatus.KILLED
    fresh = service.create_run(RunSpec(experiment="workers"))
    service.log_batch(fresh.id, metrics=[("m", 1.0, 0, 1)])
    assert service.get_run(fresh.id).metrics == {"m": 1.0}
    store.close()
