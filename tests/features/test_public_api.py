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
    """mlpilot.features itself loads no heavy library (the root package's own imports are not its concern)."""
    code = (
        "import sys, mlpilot; before = set(sys.modules); import mlpilot.features; "
        "print(sorted(m.split('.')[0] for m in set(sys.modules) - before if not m.startswith('mlpilot')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout))
    assert not loaded & {"duckdb", "pyarrow", "pandas", "polars", "redis", "numpy", "yaml"}, loaded
