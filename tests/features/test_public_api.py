"""The public surface of mlpilot.features, and that importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import mlpilot.features as features


def test_exported_names_resolve() -> None:
    for name in features.__all__:
        value = getattr(features, name)
        assert not isinstance(value, type(features)), f"{name} resolved to a module, not the API object"
    assert sorted(dir(features)) == sorted(features.__all__)


def test_import_is_cheap() -> None:
    heavy = "('duckdb', 'pyarrow', 'pandas', 'polars', 'redis')"
    code = f"import sys, mlpilot.features; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
