"""Concurrent registrations of one name get distinct version numbers on both backends."""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.registry import NewModelVersion, RegistryService, log_model
from mlpilot.store import Store


def _in_parallel(workers: int, task: Any) -> list[Any]:
    barrier = threading.Barrier(workers)

    def run(i: int) -> Any:
        barrier.wait()  # start together so the registrations really race
        return task(i)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))


def test_threads_registering_one_name_get_distinct_numbers(registry: RegistryService) -> None:
    def register(i: int) -> list[int]:
        return [
            registry.create_model_version(
                "churn",
                NewModelVersion(flavor="pyfunc", artifact_sha256=f"{i * 10 + j:064x}", artifact_size=1),
            ).version
            for j in range(3)
        ]

    numbers = [n for batch in _in_parallel(8, register) for n in batch]
    assert sorted(numbers) == list(range(1, 25))
    assert registry.get_model("churn").latest_version == 24
    events = [e for e in registry.model_history("churn", limit=1000) if e.kind == "model.registered"]
    assert sorted(e.payload["version"] for e in events) == list(range(1, 25))


class Scaler:
    """A picklable pyfunc model (module-level, so plain pickle works too)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, x: Any) -> Any:
        return np.asarray(x) * self.factor


def test_concurrent_log_model_of_one_name(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    example = np.ones((2, 3))

    def log(i: int) -> tuple[int, float]:
        version = log_model(Scaler(float(i)), "scaler", registry=registry, artifacts=artifacts, input_example=example)
        return version.version, float(i)

    results = _in_parallel(6, log)
    assert sorted(v for v, _ in results) == [1, 2, 3, 4, 5, 6]
    # each number points at the model that was logged with it
    from mlpilot.registry import load_model

    for version, factor in results:
        assert load_model(f"scaler/{version}", registry, artifacts).predict(example)[0, 0] == factor


def _register_from_process(url: str, worker: int) -> list[int]:
    registry = RegistryService(Store(url))
    return [
        registry.create_model_version(
            "churn",
            NewModelVersion(flavor="pyfunc", artifact_sha256=f"{worker * 100 + j:064x}", artifact_size=1),
        ).version
        for j in range(5)
    ]


def test_processes_registering_one_sqlite_name_get_distinct_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    Store(url).close()  # migrate once up front; the workers then only race on registrations
    with mp.get_context("spawn").Pool(4) as pool:
        batches = pool.starmap(_register_from_process, [(url, w) for w in range(4)])
    assert sorted(n for batch in batches for n in batch) == list(range(1, 21))
