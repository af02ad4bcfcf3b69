from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.store import Store


@pytest.fixture
def make_table() -> Callable[..., dict[str, Any]]:
    """A factory of tables: `numeric` N(0, 1) columns x0.., `categorical` columns c0.. with values a..e."""

    def make(
        n: int, *, seed: int, numeric: int = 5, categorical: int = 0, shift: dict[str, float] | None = None
    ) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        table: dict[str, Any] = {f"x{i}": rng.normal(size=n) for i in range(numeric)}
        for i in range(categorical):
            table[f"c{i}"] = rng.choice(np.array(list("abcde")), size=n, p=[0.35, 0.25, 0.2, 0.12, 0.08])
        for name, delta in (shift or {}).items():
            table[name] = table[name] + delta
        return table

    return make


# -- the platform around the engine: a registered model, its prediction log, a Monitor ----------------------

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
REGIONS = np.array(["EU", "US", "APAC"])


def features(n: int, seed: int, *, income_shift: float = 0.0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"age": rng.normal(40, 10, n), "income": rng.normal(50 + income_shift, 15, n)}


def truth(cols: dict[str, np.ndarray[Any, Any]], seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    score = (cols["age"] - 40) / 10 + (cols["income"] - 50) / 15 + rng.normal(0, 0.3, cols["age"].size)
    return (score > 0).astype(np.int64)


class Threshold:
    """A tiny deterministic classifier (pyfunc flavor): 1 when the standardized age + income is positive."""

    def predict(self, data: Any) -> Any:
        age = np.asarray(data["age"], dtype=float)
        income = np.asarray(data["income"], dtype=float)
        return (((age - 40) / 10 + (income - 50) / 15) > 0).astype(np.int64)


@dataclass
class Platform:
    """A metadata store, an artifact store, a registered model and a prediction log written by the real
    model-server log writer; ``monitor`` is built over them."""

    store: Store
    artifacts: FsspecArtifactStore
    log_url: str
    monitor: Any
    registry: Any
    served: dict[str, list[str]] = field(default_factory=dict)

    def register(self, name: str = "churn", rows: int = 3000, seed: int = 1) -> int:
        from mlpilot.registry import log_model

        train = features(rows, seed)
        info = log_model(
            Threshold(),
            name,
            registry=self.registry,
            artifacts=self.artifacts,
            input_example={k: v[:5] for k, v in train.items()},
            training_data=train,
            flavor="pyfunc",
        )
        return int(info.version)

    def serve(
        self,
        endpoint: str,
        cols: dict[str, np.ndarray[Any, Any]],
        *,
        version: int = 1,
        start_ms: int = T0,
        step_ms: int = 1000,
        regions: np.ndarray[Any, Any] | None = None,
        predictions: np.ndarray[Any, Any] | None = None,
        prefix: str = "r",
        rows_per_request: int = 1,
    ) -> list[str]:
        """Log one request per ``rows_per_request`` rows through the serving PredictionLog; return request ids."""
        from mlpilot.serving.predlog import LogRecord, PredictionLog

        n = next(iter(cols.values())).size
        preds = Threshold().predict(cols) if predictions is None else predictions
        log = PredictionLog(self.log_url)
        ids: list[str] = []
        for k, start in enumerate(range(0, n, rows_per_request)):
            stop = min(start + rows_per_request, n)
            rid = f"{prefix}{k}"
            ids.append(rid)
            segments = {"region": str(regions[start])} if regions is not None else {}
            log.record(
                LogRecord(
                    rid,
                    start_ms + k * step_ms,
                    "v1",
                    endpoint,
                    version,
                    stop - start,
                    {name: values[start:stop] for name, values in cols.items()},
                    {"output": preds[start:stop]},
                    0.002,
                    [f"user-{i}" for i in range(start, stop)],
                    segments,
                )
            )
        log.close()
        self.served.setdefault(endpoint, []).extend(ids)
        return ids


@pytest.fixture
def platform(store: Store, tmp_path: Path) -> Iterator[Platform]:
    """The platform on each metadata backend (SQLite, PostgreSQL)."""
    yield from _platform(store, tmp_path)


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Iterator[Platform]:
    """The platform on SQLite only, for tests about the log and the engine rather than the database."""
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    yield from _platform(store, tmp_path)
    store.close()


def _platform(store: Store, tmp_path: Path) -> Iterator[Platform]:
    from mlpilot.monitor import Monitor
    from mlpilot.registry import RegistryService, load_model

    artifacts = FsspecArtifactStore(str(tmp_path / "artifacts"))
    registry = RegistryService(store)
    log_url = str(tmp_path / "predictions")
    monitor = Monitor(
        store,
        artifacts,
        predictions_url=log_url,
        model_loader=lambda name, version: load_model(f"models:/{name}/{version}", registry, artifacts),
        webhook_backoff=0.01,
        webhook_timeout=2.0,
    )
    yield Platform(store, artifacts, log_url, monitor, registry)
    artifacts.close()


# -- a real HTTP receiver for webhooks ----------------------------------------------------------------------


@dataclass
class Receiver:
    """A threaded ``http.server`` on 127.0.0.1 recording POSTed JSON; answers 500 to the first ``fail`` requests."""

    url: str
    received: list[dict[str, Any]]
    attempts: list[int]
    fail: list[int]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    import json

    received: list[dict[str, Any]] = []
    attempts: list[int] = []
    fail = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                attempts.append(1)
                failing = fail[0] > 0
                if failing:
                    fail[0] -= 1
                else:
                    received.append(json.loads(body))
            self.send_response(500 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", received, attempts, fail)
    server.shutdown()
    server.server_close()
