"""The curated public SDK is pinned: changing it is a deliberate act."""

from __future__ import annotations

import mlpilot

EXPECTED = {
    "ActiveRun",
    "Client",
    "MlpilotError",
    "active_run",
    "delete_alias",
    "get_metric_history",
    "get_model_version",
    "get_run",
    "load_model",
    "log_labels",
    "log_model",
    "search_runs",
    "set_alias",
    "start_run",
}


def test_public_names_are_pinned() -> None:
    assert set(mlpilot.__all__) == EXPECTED


def test_every_public_name_exists_and_is_documented() -> None:
    for name in mlpilot.__all__:
        obj = getattr(mlpilot, name)
        assert obj.__doc__, f"mlpilot.{name} has no docstring"
