"""Shared pieces of the rollout benchmarks: a real control plane (``mlpilot server``) and a real data plane
(``mlpilot deploy serve``), each in its own process, and an open-loop load driver recording every answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Stack:
    control_url: str
    serve_url: str
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _mlpilot(args: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLPILOT_HOME": str(home)}
    env.pop("MLPILOT_SERVER_URL", None)
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "mlpilot.cli", *args], env=env, stdout=out, stderr=out)


@contextmanager
def stack(
    name: str,
    versions: int = 2,
    *,
    poll_interval: float = 0.2,
    threads: int = 0,
    model: str = "logistic",
    serve_options: Sequence[str] = (),
) -> Iterator[Stack]:
    """A control plane with ``versions`` versions of a small scikit-learn model registered as ``name``, a
    deployment ``name`` serving version 1, and a data plane following it. ``model="boosted"`` registers
    gradient-boosted trees instead (about a millisecond per call rather than tens of microseconds).
    ``serve_options`` are more options of ``mlpilot deploy serve`` (e.g. ``--shadow nice=0``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    import mlpilot

    with tempfile.TemporaryDirectory(prefix="mlpilot-bench-") as tmp:
        home = Path(tmp)
        cport, sport = free_port(), free_port()
        control = f"http://127.0.0.1:{cport}"
        procs = [_mlpilot(["server", "--port", str(cport)], home / "control", home / "control.log")]
        try:
            wait_http(f"{control}/healthz", procs[0])
            client = mlpilot.Client(control)
            rng = np.random.default_rng(0)
            X = rng.normal(size=(500, 8))
            y = (X[:, 0] + X[:, 1] > 0).astype(int)
            for i in range(versions):
                if model == "boosted":
                    fitted: Any = HistGradientBoostingClassifier(max_iter=200 + i, random_state=i).fit(X, y)
                else:
                    fitted = LogisticRegression(C=1.0 + i).fit(X, y)
                client.log_model(fitted, name, input_example=X[:20])
            from mlpilot.remote.deploy import RestDeployments
            from mlpilot.remote.http import HttpTransport

            RestDeployments(HttpTransport(control)).create(name, model=name, version=1)
            serve_args = ["deploy", "serve", name, "--control-plane", control, "--port", str(sport)]
            # no access log: the published figures were measured without one (a data plane writes one by default)
            serve_args += ["--poll-interval", str(poll_interval), "--threads", str(threads), "--no-access-log"]
            serve_args += list(serve_options)
            procs.append(_mlpilot(serve_args, home / "serve", home / "serve.log"))
            serve = f"http://127.0.0.1:{sport}"
            wait_http(f"{serve}/v2/health/ready", procs[1])
            client.close()
            yield Stack(control, serve, home, procs)
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@dataclass
class Answer:
    start: float
    end: float
    status: int
    variant: str


class Driver:
    """``threads`` threads, each sending one-row predictions at ``rate / threads`` per second (open loop:
    a slow answer does not slow the schedule down, so queueing shows up in the latencies)."""

    def __init__(self, url: str, name: str, *, rate: float, threads: int = 4) -> None:
        self.url, self.name, self.rate, self.threads = url, name, rate, threads
        self.answers: list[Answer] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _work(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        interval = self.threads / self.rate
        body = [{"instances": [rng.normal(size=8).tolist()]} for _ in range(64)]
        with httpx.Client(base_url=self.url, timeout=30) as http:
            due = time.perf_counter() + rng.random() * interval
            i = 0
            while not self._stop.is_set():
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                due += interval
                start = time.time()
                try:
                    r = http.post(f"/v1/models/{self.name}:predict", json=body[i % 64])
                    answer = Answer(start, time.time(), r.status_code, r.headers.get("x-mlpilot-variant", ""))
                except httpx.HTTPError:
                    with self._lock:
                        self.errors += 1
                    continue
                i += 1
                with self._lock:
                    self.answers.append(answer)

    def __enter__(self) -> Driver:
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)
