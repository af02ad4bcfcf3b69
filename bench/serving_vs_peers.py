"""Model serving: mlpilot serve vs `mlflow models serve` vs BentoML (adaptive batching), driven by wrk.

All three serve the same scikit-learn HistGradientBoostingClassifier trained on the breast-cancer data bundled
with scikit-learn (same library versions, same seed), each in its default configuration and its own virtualenv:

    MLflow   /tmp/mlflow-venv   (python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow scikit-learn)
    BentoML  /tmp/bentoml-venv  (python3 -m venv /tmp/bentoml-venv && /tmp/bentoml-venv/bin/pip install bentoml scikit-learn)
    mlpilot  this interpreter   (pip install 'mlpilot[serve,sklearn]')

Each server gets the same `wrk` load of one-row requests (MLflow and mlpilot the very same /invocations body),
at 1 connection and at 64, after a warm-up; the script prints requests/s, p50, p99 and errors side by side, the
ratios, and the in-process predict_proba cost of 1 and 64 rows (the floor no server can beat).

    python bench/serving_vs_peers.py [--duration 15] [--out results.md] [--only mlpilot,mlflow,bentoml]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

MLFLOW_PY = Path("/tmp/mlflow-venv/bin/python")
BENTOML_PY = Path("/tmp/bentoml-venv/bin/python")
SEED = 0

TRAIN = """
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
X, y = load_breast_cancer(return_X_y=True)
model = HistGradientBoostingClassifier(random_state={seed}).fit(X, y)
"""

MLFLOW_SETUP = (
    TRAIN
    + """
import sys, mlflow.sklearn
# MLflow's default format (skops) asks the saver to vouch for the tree type of this model.
trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
mlflow.sklearn.save_model(model, sys.argv[1], input_example=X[:5], skops_trusted_types=trusted)
"""
)

BENTOML_SETUP = (
    TRAIN
    + """
import sys, joblib
joblib.dump(model, sys.argv[1])
"""
)

BENTOML_SERVICE = """
import os
import joblib
import numpy as np
import bentoml


@bentoml.service
class BreastCancer:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api(batchable=True)
    def predict(self, input: np.ndarray) -> np.ndarray:
        return self.model.predict(input)
"""

MLPILOT_SETUP = (
    TRAIN
    + """
import mlpilot
mlpilot.Client().log_model(model, "bc", input_example=X[:5], aliases=["champion"])
"""
)

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
"""


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    url: str
    ready_path: str
    body: dict[str, object]
    check: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, body_file: Path, lua: Path, connections: int, seconds: int) -> Run:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
        env={**os.environ, "BENCH_BODY": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return Run(rps, p50, p99, errors, requests)


def floor() -> dict[str, float]:
    """In-process cost of the model itself, in this interpreter, default threading as each peer has it."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(random_state=SEED).fit(X, y)

    def median_ms(rows: int, n: int = 1000, repeats: int = 3) -> float:
        # The best of a few medians: on a shared machine the floor is what the model costs when left alone.
        batch = X[:rows]
        for _ in range(100):
            model.predict_proba(batch)
        medians = []
        for _ in range(repeats):
            times = []
            for _ in range(n):
                start = time.perf_counter()
                model.predict_proba(batch)
                times.append(time.perf_counter() - start)
            medians.append(float(np.median(times) * 1000))
        return min(medians)

    return {"1 row": median_ms(1), "64 rows": median_ms(64)}


def start(server: Server, log: Path, timeout: float = 180.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server on a fresh port; returns the process and its base URL once it answers."""
    port = str(free_port())
    command = [part.replace("{port}", port) for part in server.command]
    url = server.url.replace("{port}", port)
    with log.open("wb") as fh:
        proc = subprocess.Popen(command, env=server.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + server.ready_path, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{server.name} did not become ready: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group of a server we started (MLflow execs uvicorn, BentoML forks workers) and wait
    until every process of it is gone."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def prepare(work: Path, only: set[str]) -> list[Server]:
    X = __import__("sklearn.datasets", fromlist=["load_breast_cancer"]).load_breast_cancer(return_X_y=True)[0]
    row = [float(v) for v in X[0]]
    servers: list[Server] = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MLPILOT_")}
    if "mlpilot" in only:
        home = work / "mlpilot-home"
        env = {**base_env, "MLPILOT_HOME": str(home)}
        subprocess.run([sys.executable, "-c", MLPILOT_SETUP.format(seed=SEED)], env=env, check=True)
        mlpilot = shutil.which("mlpilot", path=str(Path(sys.executable).parent)) or "mlpilot"
        servers.append(
            Server(
                "mlpilot",
                [mlpilot, "serve", "bc@champion", "--port", "{port}"],
                env,
                "http://127.0.0.1:{port}",
                "/v2/health/ready",
                {"inputs": [row]},
                "/invocations",
            )
        )
    if "mlflow" in only:
        if not MLFLOW_PY.exists():
            sys.exit(f"MLflow is expected in {MLFLOW_PY.parent.parent} (see this script's docstring)")
        model_dir = work / "mlflow-model"
        subprocess.run([str(MLFLOW_PY), "-c", MLFLOW_SETUP.format(seed=SEED), str(model_dir)], check=True)
        # --env-manager local: use the venv as it is (the alternative builds a new environment from the internet).
        cmd = [
            str(MLFLOW_PY.parent / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--port",
            "{port}",
            "--env-manager",
            "local",
        ]
        env = {**base_env, "PATH": f"{MLFLOW_PY.parent}:{base_env.get('PATH', '')}"}  # as in an activated venv
        servers.append(
            Server("MLflow", cmd, env, "http://127.0.0.1:{port}", "/ping", {"inputs": [row]}, "/invocations")
        )
    if "bentoml" in only:
        if not BENTOML_PY.exists():
            sys.exit(f"BentoML is expected in {BENTOML_PY.parent.parent} (see this script's docstring)")
        model_file = work / "bentoml-model.joblib"
        subprocess.run([str(BENTOML_PY), "-c", BENTOML_SETUP.format(seed=SEED), str(model_file)], check=True)
        service_dir = work / "bentoml-service"
        service_dir.mkdir()
        (service_dir / "service.py").write_text(BENTOML_SERVICE)
        env = {
            **base_env,
            "BENCH_MODEL": str(model_file),
            "BENTOML_HOME": str(work / "bentoml-home"),
            "BENTOML_DO_NOT_TRACK": "true",
            "PATH": f"{BENTOML_PY.parent}:{base_env.get('PATH', '')}",
        }
        cmd = [
            str(BENTOML_PY.parent / "bentoml"),
            "serve",
            "service:BreastCancer",
            "--port",
            "{port}",
            "--working-dir",
            str(service_dir),
        ]
        servers.append(Server("BentoML", cmd, env, "http://127.0.0.1:{port}", "/readyz", {"input": [row]}, "/predict"))
    return servers


def fmt(run: Run | None) -> str:
    if run is None:
        return "n/a"
    return f"{run.rps:>8.0f} req/s  p50 {run.p50_ms:>7.2f} ms  p99 {run.p99_ms:>8.2f} ms  errors {run.errors}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per measurement")
    # BentoML's adaptive batching learns its wait from the traffic: with 5 s of warm-up it measured ~100 req/s
    # at 64 connections here, with 15 s ~500. Every server gets the long warm-up.
    parser.add_argument("--warmup", type=int, default=15, help="seconds of the same load before measuring")
    parser.add_argument("--only", default="mlpilot,mlflow,bentoml")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as Markdown here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    only = {s.strip().lower() for s in args.only.split(",")}
    results: dict[str, dict[int, Run]] = {}
    base = floor()  # before any server runs
    print(f"floor: predict_proba 1 row {base['1 row']:.2f} ms, 64 rows {base['64 rows']:.2f} ms", flush=True)
    with tempfile.TemporaryDirectory(prefix="mlpilot-serving-bench-") as tmp:
        work = Path(tmp)
        lua = work / "post.lua"
        lua.write_text(LUA)
        for server in prepare(work, only):
            body_file = work / f"{server.name}.json"
            body_file.write_text(json.dumps(server.body))
            results[server.name] = {}
            # A fresh server per load level, warmed up at that level: an adaptive batcher tuned by one load
            # (BentoML's learns its wait from the traffic) does not carry its state into the next measurement.
            for connections in (1, 64):
                print(f"== {server.name}, {connections} connection(s): starting", flush=True)
                proc, url = start(server, work / f"{server.name}-{connections}.log")
                try:
                    answer = httpx.post(url + server.check, json=server.body, timeout=30)
                    answer.raise_for_status()
                    print(f"   answer to one row: {answer.text.strip()[:80]}", flush=True)
                    target = url + server.check
                    wrk(target, body_file, lua, connections, args.warmup)
                    run = wrk(target, body_file, lua, connections, args.duration)
                    results[server.name][connections] = run
                    print(f"   {fmt(run)}", flush=True)
                finally:
                    stop(proc)
    lines = report(results, base, args.duration)
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


def report(results: dict[str, dict[int, Run]], base: dict[str, float], duration: int) -> list[str]:
    cpu = platform.processor() or platform.machine()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"## Model serving: mlpilot serve vs MLflow vs BentoML ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB; Python {platform.python_version()}. "
        f"wrk, one-row requests, {duration} s per measurement after a warm-up at the same load, a fresh server "
        "process per load level; each server in its default configuration; HistGradientBoostingClassifier on the "
        "breast-cancer data. The load generator shares the 2 cores with the server.",
        "",
        "| server | connections | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        for connections, run in runs.items():
            lines.append(
                f"| {name} | {connections} | {run.rps:.0f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | {run.errors} |"
            )
    lines += [
        "",
        f"In-process predict_proba floor: 1 row {base['1 row']:.2f} ms, 64 rows {base['64 rows']:.2f} ms.",
        "",
    ]
    ours = results.get("mlpilot", {})
    for peer, goal in (("MLflow", 15.0), ("BentoML", 5.0)):
        if peer in results and 64 in ours:
            ratio = ours[64].rps / results[peer][64].rps
            lines.append(
                f"- 64 connections: mlpilot {ratio:.1f}x {peer}'s throughput (goal >= {goal:.0f}x): "
                f"{'met' if ratio >= goal else 'NOT met'}"
            )
        if peer in results and 1 in ours:
            lines.append(
                f"- 1 connection: mlpilot p50 {ours[1].p50_ms:.2f} ms vs {peer} {results[peer][1].p50_ms:.2f} ms"
            )
    if 64 in ours:
        ok = ours[64].p99_ms <= 50 and ours[64].errors == 0
        lines.append(
            f"- 64 connections: mlpilot p99 {ours[64].p99_ms:.1f} ms, {ours[64].errors} errors "
            f"(goal p99 <= 50 ms, no errors): {'met' if ok else 'NOT met'}"
        )
    if 1 in ours:
        gap = ours[1].p50_ms - base["1 row"]
        lines.append(
            f"- 1 connection: mlpilot p50 {ours[1].p50_ms:.2f} ms is {gap:+.2f} ms from the single-row floor "
            f"(goal within 0.5 ms): {'met' if gap <= 0.5 else 'NOT met'}"
        )
    return lines


if __name__ == "__main__":
    main()
