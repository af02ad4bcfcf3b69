"""Experiment tracking: mlpilot vs MLflow on the same workloads, locally (SQLite) and through each one's server.

(a) Logging: runs x 10 params x STEPS steps x 5 metrics, one call per param and per point, timed from the first
    run's start until the last run has ended (for both tools the data is durable then: MLflow writes each call
    synchronously; mlpilot's run end flushes its background writer). MLflow is far slower, so its workload is
    scaled down (fewer runs, and fewer steps through its server) and the tools are compared by calls per second.
    MLflow's optional asynchronous logging (``mlflow.config.enable_async_logging``) is measured as an extra row.
(b) Search: 10,000 runs (5 params, 3 metrics, 2 tags each, the same values for both tools) are created without
    timing through each tool's own ORM, then one filtered, ordered search fetching every match is timed (median
    of several repeats after a warm-up). Both tools must return the same runs in the same order.

Each measurement runs in its own subprocess: MLflow's with the Python of its own virtualenv, mlpilot's with this
one. This file is also the worker (``--worker``), importing each tool only there. Create MLflow's virtualenv first::

    python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow

Run:  .venv/bin/python bench/tracking_vs_mlflow.py [--mlflow-python /tmp/mlflow-venv/bin/python] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PARAMS, METRICS = 10, 5
LOG_EXPERIMENT, SEARCH_EXPERIMENT = "bench-log", "bench-search"
SEARCH_FILTER = "metrics.auc > 0.9 and params.optimizer = 'adam' and tags.team = 'growth'"
ORDER_BY = ["metrics.auc DESC"]
START_MS = 1_700_000_000_000


def search_runs_data(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The runs searched in (b): deterministic, so both tools hold identical data."""
    rng = random.Random(seed)
    for i in range(n):
        yield {
            "name": f"run-{i:05d}",
            "start": START_MS + i * 1000,
            "params": {
                "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
                "max_depth": str(rng.randint(2, 12)),
                "lr": rng.choice(["0.001", "0.01", "0.1"]),
                "n_estimators": str(rng.choice([100, 200, 500])),
                "seed": str(i),
            },
            "metrics": {"auc": rng.uniform(0.5, 1.0), "loss": rng.uniform(0.0, 1.0), "accuracy": rng.random()},
            "tags": {"team": rng.choice(["growth", "core"]), "stage": rng.choice(["dev", "prod"])},
        }


# -- workers: mlpilot -------------------------------------------------------------------------------------------


def _mlpilot_backend(target: str, artifact_dir: str) -> tuple[Any, Any]:
    if target.startswith("http"):
        from mlpilot.remote.artifacts import RestArtifactStore
        from mlpilot.remote.http import HttpTransport
        from mlpilot.remote.tracking import RestTracking

        transport = HttpTransport(target)
        return RestTracking(transport), RestArtifactStore(transport)
    from mlpilot.artifacts import FsspecArtifactStore
    from mlpilot.store import Store
    from mlpilot.tracking import TrackingService

    return TrackingService(Store(target)), FsspecArtifactStore(artifact_dir)


def mlpilot_log(target: str, artifact_dir: str, runs: int, steps: int) -> dict[str, Any]:
    from mlpilot.tracking import start_run

    backend, artifacts = _mlpilot_backend(target, artifact_dir)
    backend.get_or_create_experiment(LOG_EXPERIMENT)  # opening and migrating the store is not timed
    t0 = time.perf_counter()
    for _ in range(runs):
        with start_run(backend, artifacts, experiment=LOG_EXPERIMENT) as run:
            for p in range(PARAMS):
                run.log_param(f"param_{p}", p * 0.5)
            for step in range(steps):
                for m in range(METRICS):
                    run.log_metric(f"metric_{m}", 1.0 / (step + m + 1), step=step)
    seconds = time.perf_counter() - t0
    durable = len(backend.get_metric_history(run.id, f"metric_{METRICS - 1}"))
    assert durable == steps, f"only {durable} of {steps} points are durable"
    return {"calls": runs * (PARAMS + steps * METRICS), "seconds": seconds, "runs": runs, "steps": steps}


def mlpilot_setup_search(target: str, n: int) -> dict[str, Any]:
    from sqlalchemy import insert

    from mlpilot.store import Store
    from mlpilot.store.schema import LatestMetric, Metric, Param, Run, Tag
    from mlpilot.tracking import TrackingService
    from mlpilot.tracking.service import numeric_value

    t0 = time.perf_counter()
    store = Store(target)
    exp_id = TrackingService(store).get_or_create_experiment(SEARCH_EXPERIMENT).id
    runs, params, metrics, tags = [], [], [], []
    for i, data in enumerate(search_runs_data(n)):
        run_id = hashlib.md5(data["name"].encode()).hexdigest()
        runs.append(
            {
                "id": run_id,
                "experiment_id": exp_id,
                "parent_id": None,
                "name": data["name"],
                "status": "FINISHED",
                "start_time": data["start"],
                "end_time": data["start"] + 500,
                "user": "bench",
                "source": "bench",
                "git_commit": None,
                "git_dirty": None,
                "environment": {},
            }
        )
        params += [
            {"run_id": run_id, "key": k, "value": v, "value_num": numeric_value(v)} for k, v in data["params"].items()
        ]
        metrics += [
            {"run_id": run_id, "key": k, "value": v, "step": 0, "timestamp": data["start"] + i}
            for k, v in data["metrics"].items()
        ]
        tags += [{"run_id": run_id, "key": k, "value": v} for k, v in data["tags"].items()]
    with store.write() as session:
        session.execute(insert(Run), runs)
        session.execute(insert(Param), params)
        session.execute(insert(Metric), metrics)
        session.execute(insert(LatestMetric), metrics)
        session.execute(insert(Tag), tags)
    store.close()
    return {"seconds": time.perf_counter() - t0}


def mlpilot_search(target: str, artifact_dir: str, repeats: int) -> dict[str, Any]:
    backend, _ = _mlpilot_backend(target, artifact_dir)

    def once() -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = backend.search_runs(
                SEARCH_FILTER, experiment=SEARCH_EXPERIMENT, order_by=ORDER_BY, max_results=1000, page_token=token
            )
            names += [r.info.name for r in page.runs]
            token = page.next_page_token
            if token is None:
                return names

    return _time_search(once, repeats)


# -- workers: MLflow --------------------------------------------------------------------------------------------


def mlflow_log(target: str, artifact_dir: str, runs: int, steps: int, async_logging: bool) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(target)
    if async_logging:
        mlflow.config.enable_async_logging(True)
    mlflow.set_experiment(LOG_EXPERIMENT)  # creating and migrating the store is not timed
    t0 = time.perf_counter()
    for _ in range(runs):
        with mlflow.start_run() as run:
            for p in range(PARAMS):
                mlflow.log_param(f"param_{p}", p * 0.5)
            for step in range(steps):
                for m in range(METRICS):
                    mlflow.log_metric(f"metric_{m}", 1.0 / (step + m + 1), step=step)
    if async_logging:
        mlflow.flush_async_logging()
    seconds = time.perf_counter() - t0
    history = mlflow.MlflowClient(target).get_metric_history(run.info.run_id, f"metric_{METRICS - 1}")
    assert len(history) == steps, f"only {len(history)} of {steps} points are durable"
    return {"calls": runs * (PARAMS + steps * METRICS), "seconds": seconds, "runs": runs, "steps": steps}


def mlflow_setup_search(target: str, artifact_dir: str, n: int) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    t0 = time.perf_counter()
    exp_id = MlflowClient(target).create_experiment(SEARCH_EXPERIMENT, artifact_location=artifact_dir)
    runs, params, metrics, tags = [], [], [], []
    for i, data in enumerate(search_runs_data(n)):
        run_id = hashlib.md5(data["name"].encode()).hexdigest()
        runs.append(
            {
                "run_uuid": run_id,
                "name": data["name"],
                "source_type": "LOCAL",
                "source_name": "bench",
                "entry_point_name": "",
                "user_id": "bench",
                "status": "FINISHED",
                "start_time": data["start"],
                "end_time": data["start"] + 500,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": f"{artifact_dir}/{run_id}",
                "experiment_id": int(exp_id),
            }
        )
        params += [{"run_uuid": run_id, "key": k, "value": v} for k, v in data["params"].items()]
        metrics += [
            {"run_uuid": run_id, "key": k, "value": v, "step": 0, "timestamp": data["start"] + i, "is_nan": False}
            for k, v in data["metrics"].items()
        ]
        tags += [{"run_uuid": run_id, "key": k, "value": v} for k, v in data["tags"].items()]
        tags.append({"run_uuid": run_id, "key": "mlflow.runName", "value": data["name"]})
    store = SqlAlchemyStore(target, artifact_dir)
    with store.ManagedSessionMaker() as session:
        session.execute(insert(SqlRun), runs)
        session.execute(insert(SqlParam), params)
        session.execute(insert(SqlMetric), metrics)
        session.execute(insert(SqlLatestMetric), metrics)
        session.execute(insert(SqlTag), tags)
    return {"seconds": time.perf_counter() - t0}


def mlflow_search(target: str, repeats: int) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(target)
    exp_id = client.get_experiment_by_name(SEARCH_EXPERIMENT).experiment_id

    def once() -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = client.search_runs([exp_id], SEARCH_FILTER, order_by=ORDER_BY, max_results=1000, page_token=token)
            names += [r.info.run_name for r in page]
            token = page.token
            if not token:
                return names

    return _time_search(once, repeats)


def _time_search(once: Any, repeats: int) -> dict[str, Any]:
    names = once()  # warm-up: connections, caches, imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        again = once()
        times.append(time.perf_counter() - t0)
        assert again == names
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return {"seconds": statistics.median(times), "matches": len(names), "results": digest}


# -- orchestration ----------------------------------------------------------------------------------------------


def child(python: str, *args: Any) -> dict[str, Any]:
    """Run one worker in a fresh process and return the JSON it prints last."""
    done = subprocess.run([python, str(HERE), "--worker", *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess in its own process group, ready once ``health`` answers 200."""

    def __init__(self, cmd: list[str], health: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"server {cmd[0]} did not start; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def rate_row(label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, float]:
    ours_rate = ours["calls"] / ours["seconds"]
    their_rate = theirs["calls"] / theirs["seconds"]
    ratio = ours_rate / their_rate
    return (
        f"{label:<34} {ours['calls']:>7,} calls {ours['seconds']:7.2f}s {ours_rate:>10,.0f}/s | "
        f"{theirs['calls']:>6,} calls {theirs['seconds']:7.2f}s {their_rate:>8,.1f}/s | {ratio:>7,.0f}x",
        ratio,
    )


def search_row(label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, float]:
    same = (
        "same runs"
        if (ours["matches"], ours["results"]) == (theirs["matches"], theirs["results"])
        else "DIFFERENT RUNS"
    )
    ratio = theirs["seconds"] / ours["seconds"]
    return (
        f"{label:<34} {ours['seconds'] * 1000:>9.1f} ms | {theirs['seconds'] * 1000:>9.1f} ms | {ratio:>6.1f}x "
        f"({ours['matches']} matches, {same})",
        ratio,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlflow-python", default="/tmp/mlflow-venv/bin/python")
    parser.add_argument("--runs", type=int, default=100, help="mlpilot runs in (a)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--mlflow-runs", type=int, default=5, help="MLflow runs in (a), local")
    parser.add_argument("--mlflow-async-runs", type=int, default=5, help="MLflow runs in (a) with async logging")
    parser.add_argument("--mlflow-server-runs", type=int, default=1)
    parser.add_argument("--mlflow-server-steps", type=int, default=20)
    parser.add_argument("--search-runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument(
        "--only", choices=["local-log", "local-search", "server"], action="append", help="run only these parts"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps, args.mlflow_runs, args.mlflow_async_runs = 5, 10, 1, 1
        args.mlflow_server_steps, args.search_runs, args.repeats = 5, 500, 1
    ours_py, theirs_py = sys.executable, args.mlflow_python
    version = subprocess.run(
        [theirs_py, "-c", "import mlflow; print(mlflow.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    rows: list[tuple[str, float]] = []
    print(
        f"mlpilot vs MLflow {version} | {time.strftime('%Y-%m-%d %H:%M')} | {platform.platform()} | "
        f"{os.cpu_count()} cores | python {platform.python_version()}"
    )
    print(
        f"(a) runs x {PARAMS} params x steps x {METRICS} metrics, one call each, until durable; MLflow's workload "
        "is scaled down: compare the rates"
    )
    print(
        f"(b) search over {args.search_runs:,} runs: {SEARCH_FILTER!r} order by {ORDER_BY}, all pages; median of "
        f"{args.repeats} after a warm-up"
    )
    print(f"{'':<34} {'mlpilot':^42} | {'mlflow':^38} | ratio")

    parts = set(args.only or ["local-log", "local-search", "server"])
    if "local-log" in parts:
        log_locally(args, ours_py, theirs_py, tmp, rows)
    b_ours_db, b_theirs_db = f"sqlite:///{tmp / 'b-mlpilot.db'}", f"sqlite:///{tmp / 'b-mlflow.db'}"
    if parts & {"local-search", "server"}:
        setup_ours = child(ours_py, "mlpilot-setup", b_ours_db, args.search_runs)
        setup_theirs = child(theirs_py, "mlflow-setup", b_theirs_db, tmp / "b-mlruns", args.search_runs)
        print(
            f"    (setup, untimed: {args.search_runs:,} runs in {setup_ours['seconds']:.1f}s for mlpilot, "
            f"{setup_theirs['seconds']:.1f}s for MLflow, each through its own ORM)"
        )
    if "local-search" in parts:
        b_ours = child(ours_py, "mlpilot-search", b_ours_db, tmp / "b-art", args.repeats)
        b_theirs = child(theirs_py, "mlflow-search", b_theirs_db, args.repeats)
        rows.append(search_row("(b) search, local", b_ours, b_theirs))
        print(rows[-1][0], flush=True)
    if "server" in parts:
        through_servers(args, ours_py, theirs_py, tmp, b_ours_db, b_theirs_db, rows)
    for kind, goal in (("(a)", 100), ("(b)", 10)):
        ratios = [ratio for text, ratio in rows if text.startswith(kind)]
        if ratios:
            verdict = "met" if min(ratios) >= goal else "NOT met"
            print(f"goal {kind} >= {goal}x MLflow (synchronous default): lowest {min(ratios):,.1f}x, {verdict}")
    print(f"total bench time {time.perf_counter() - started:.0f}s; data in {tmp}")


def log_locally(
    args: argparse.Namespace, ours_py: str, theirs_py: str, tmp: Path, rows: list[tuple[str, float]]
) -> None:
    """(a) on embedded SQLite, MLflow synchronous and asynchronous."""
    a_ours = child(ours_py, "mlpilot-log", f"sqlite:///{tmp / 'a-mlpilot.db'}", tmp / "a-art", args.runs, args.steps)
    a_theirs = child(
        theirs_py, "mlflow-log", f"sqlite:///{tmp / 'a-mlflow.db'}", tmp / "a-mlruns", args.mlflow_runs, args.steps, 0
    )
    rows.append(rate_row(f"(a) logging, local ({a_ours['runs']} vs {a_theirs['runs']} runs)", a_ours, a_theirs))
    print(rows[-1][0], flush=True)
    a_async = child(
        theirs_py,
        "mlflow-log",
        f"sqlite:///{tmp / 'a-mlflow-async.db'}",
        tmp / "a-mlruns-async",
        args.mlflow_async_runs,
        args.steps,
        1,
    )
    rows.append(rate_row(f"    vs MLflow async ({a_async['runs']} runs)", a_ours, a_async))
    print(rows[-1][0], flush=True)


def through_servers(
    args: argparse.Namespace,
    ours_py: str,
    theirs_py: str,
    tmp: Path,
    b_ours_db: str,
    b_theirs_db: str,
    rows: list[tuple[str, float]],
) -> None:
    """(b) then (a) through `mlpilot server` and `mlflow server`, each serving its database of (b)."""
    mlpilot_cli = str(Path(ours_py).with_name("mlpilot"))
    mlflow_cli = str(Path(theirs_py).with_name("mlflow"))
    ours_port, theirs_port = free_port(), free_port()
    ours_server = Server(
        [mlpilot_cli, "server", "--host", "127.0.0.1", "--port", str(ours_port)],
        f"http://127.0.0.1:{ours_port}/healthz",
        tmp / "mlpilot-server.log",
        env={"MLPILOT_HOME": str(tmp / "server-home"), "MLPILOT_DB_URL": b_ours_db},
    )
    theirs_server = Server(
        [
            mlflow_cli,
            "server",
            "--backend-store-uri",
            b_theirs_db,
            "--default-artifact-root",
            str(tmp / "b-mlruns"),
            "--host",
            "127.0.0.1",
            "--port",
            str(theirs_port),
        ],
        f"http://127.0.0.1:{theirs_port}/health",
        tmp / "mlflow-server.log",
    )
    try:
        ours_url, theirs_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}"
        b_ours = child(ours_py, "mlpilot-search", ours_url, tmp / "unused", args.repeats)
        b_theirs = child(theirs_py, "mlflow-search", theirs_url, args.repeats)
        rows.append(search_row("(b) search, through the server", b_ours, b_theirs))
        print(rows[-1][0], flush=True)
        a_ours = child(ours_py, "mlpilot-log", ours_url, tmp / "unused", args.runs, args.steps)
        a_theirs = child(
            theirs_py, "mlflow-log", theirs_url, tmp / "unused", args.mlflow_server_runs, args.mlflow_server_steps, 0
        )
        rows.append(
            rate_row(
                f"(a) logging, through the server ({a_ours['runs']} vs {a_theirs['runs']} runs, "
                f"{a_ours['steps']} vs {a_theirs['steps']} steps)",
                a_ours,
                a_theirs,
            )
        )
        print(rows[-1][0], flush=True)
    finally:
        ours_server.stop()
        theirs_server.stop()


def worker(argv: list[str]) -> None:
    name, rest = argv[0], argv[1:]
    if name == "mlpilot-log":
        out = mlpilot_log(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif name == "mlpilot-setup":
        out = mlpilot_setup_search(rest[0], int(rest[1]))
    elif name == "mlpilot-search":
        out = mlpilot_search(rest[0], rest[1], int(rest[2]))
    elif name == "mlflow-log":
        out = mlflow_log(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4] == "1")
    elif name == "mlflow-setup":
        out = mlflow_setup_search(rest[0], rest[1], int(rest[2]))
    elif name == "mlflow-search":
        out = mlflow_search(rest[0], int(rest[1]))
    else:
        raise SystemExit(f"unknown worker {name}")
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
