"""Real models (scikit-learn on bundled data) and a real model server on 127.0.0.1 in a thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.serving import ServeConfig
from mlpilot.serving.testing import InMemorySource, RunningServer, serve_in_thread

pytest.importorskip("sklearn")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="session")
def cancer() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def cancer_model(cancer: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = cancer
    return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def customers() -> Any:
    """A small table with an integer, a float and a text column, and a label."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50_000, 10_000, n),
            "plan": rng.choice(["basic", "plus", "pro"], n).astype(object),
        }
    )
    label = ((frame["age"] > 40) ^ (frame["plan"] == "pro")).astype(int).to_numpy()
    return frame, label


@pytest.fixture(scope="session")
def frame_model(customers: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, label = customers
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    return make_pipeline(prep, LogisticRegression()).fit(frame, label)


def _two_models(cancer: Any, cancer_model: Any, customers: Any, frame_model: Any) -> InMemorySource:
    X, _ = cancer
    frame, _ = customers
    src = InMemorySource()
    src.add("cancer", cancer_model, input_example=X[:5], aliases=["champion"], flavor="sklearn")
    src.add("customers", frame_model, input_example=frame.head(5), aliases=["champion"], flavor="sklearn")
    return src


@pytest.fixture
def source(cancer: Any, cancer_model: Any, customers: Any, frame_model: Any) -> InMemorySource:
    """``cancer`` (30 float64 features, one tensor input) and ``customers`` (a table), alias ``champion`` each."""
    return _two_models(cancer, cancer_model, customers, frame_model)


Serve = Callable[..., RunningServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a server on an ephemeral port: ``serve(source, ["cancer@champion"], max_batch_size=8, ...)``.

    Keyword arguments are ServeConfig fields; batching keys go under ``batching``. Stopped at teardown.
    """
    running: list[RunningServer] = []

    def start(source: Any, refs: list[str], **options: Any) -> RunningServer:
        options.setdefault("refresh_interval", 0)
        config = ServeConfig.from_dict({"models": [{"ref": r} for r in refs], **options})
        server = serve_in_thread(source, config=config, log_url=tmp_path / "predictions")
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def server(
    cancer: Any, cancer_model: Any, customers: Any, frame_model: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Both models served with default settings, shared by a module's tests (they must not count on metrics)."""
    source = _two_models(cancer, cancer_model, customers, frame_model)
    config = ServeConfig.from_refs(["cancer@champion", "customers@champion"], refresh_interval=0)
    running = serve_in_thread(source, config=config, log_url=tmp_path_factory.mktemp("predictions"))
    yield running
    running.stop()


@pytest.fixture
def fresh_server(serve: Serve, source: InMemorySource) -> RunningServer:
    """Both models served with default settings, for one test."""
    return serve(source, ["cancer@champion", "customers@champion"])


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until ``condition()`` holds; a generous timeout that only fails a broken feature."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
