"""Registry fixtures: the service over each store backend, and small training data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.registry import NewModelVersion, RegistryService
from mlpilot.store import Store


@pytest.fixture
def registry(store: Store) -> RegistryService:
    """The service over each metadata backend."""
    return RegistryService(store)


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[RegistryService]:
    """The service over SQLite only, for tests of model formats that do not touch backend differences."""
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    yield RegistryService(store)
    store.close()


@pytest.fixture
def new_version() -> Any:
    """A factory of version metadata whose artifact digest differs per call."""
    counter = iter(range(1, 1_000_000))

    def make(**overrides: Any) -> NewModelVersion:
        values: dict[str, Any] = {
            "flavor": "pyfunc",
            "artifact_sha256": f"{next(counter):064x}",
            "artifact_size": 10,
        }
        values.update(overrides)
        return NewModelVersion(**values)

    return make


@pytest.fixture
def churn_frame() -> Any:
    """A small mixed-type frame (numbers, strings, a category) with a binary label that depends on it."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)
    n = 120
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, n),
            "spend": rng.normal(60, 20, n).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], n)),
        }
    )
    label = ((frame["tenure"] < 20) ^ (frame["plan"] == "pro")).astype(int).to_numpy()
    return frame, label


@pytest.fixture
def numeric_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] * 0.5 > 0).astype(int)
    return x, y
