from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


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
