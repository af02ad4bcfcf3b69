"""Models with planted problems, served as pyfunc models (pickled by value so any process can load them)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


class Threshold:
    """The healthy model: class 1 when the first feature is positive."""

    def predict(self, x: Any) -> Any:
        return (np.asarray(x)[:, 0] > 0).astype(np.int64)


class Flaky(Threshold):
    """Fails on ``rate`` of its inputs (decided by the input, so a retry fails again; zeros never fail, so the
    server's warm-up call succeeds)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        if np.any((np.abs(arr[:, 1]) * 1000).astype(np.int64) % 100 >= 100 - self.rate * 100):
            raise RuntimeError("planted failure")
        return super().predict(arr)


class Slow(Threshold):
    """Right, but ``ms`` slower per call."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def predict(self, x: Any) -> Any:
        time.sleep(self.ms / 1000)
        return super().predict(x)


class Wrong(Threshold):
    """Fast and reliable, but wrong on ``rate`` of its inputs."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def predict(self, x: Any) -> Any:
        arr = np.asarray(x)
        right = super().predict(arr)
        flip = (np.abs(arr[:, 2]) * 1000).astype(np.int64) % 100 < self.rate * 100
        return np.where(flip, 1 - right, right)


class Unstable(Threshold):
    """Answers class labels (integers) on all-zero rows, like the example it was logged with, but raw scores
    (floats) on real rows: its answers break its own signature."""

    def predict(self, x: Any) -> Any:
        arr = np.asarray(x, dtype=np.float64)
        if not np.any(arr):
            return super().predict(arr)
        return arr[:, 0] * 0.5 + 0.25
