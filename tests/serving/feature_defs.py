"""The churn feature world of ``test_features_endpoint.py`` for tests that need their own store (they apply
new definitions, or register models through a live control plane): sources on disk and their definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.serving.test_features_endpoint import _frames, _train

__all__ = ["churn_definitions", "train", "write_sources"]

train = _train


def write_sources(folder: Path) -> None:
    """``profile.parquet`` and ``activity.parquet`` in ``folder``: customers 0-39 active in the last day, 40-49
    last active 30-40 hours ago, 50-59 never."""
    import pyarrow.parquet as pq

    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=1)
    profile, activity = _frames(now)
    pq.write_table(profile, folder / "profile.parquet")
    pq.write_table(activity, folder / "activity.parquet")


def churn_definitions(folder: Path, *, activity_ttl: timedelta = timedelta(hours=24), service: str = "churn") -> Any:
    """Feature service ``service`` over views ``profile`` (tenure, plan) and ``activity`` (spend, visits; TTL
    ``activity_ttl``)."""
    from mlpilot.features import Definitions, Entity, Feature, FeatureService, FeatureView, ParquetSource

    customer = Entity("customer", ["customer_id"])
    profile = FeatureView(
        "profile",
        [customer],
        ParquetSource(str(folder / "profile.parquet")),
        "signup",
        features=[Feature("tenure", "float64"), Feature("plan", "string")],
    )
    activity = FeatureView(
        "activity",
        [customer],
        ParquetSource(str(folder / "activity.parquet")),
        "et",
        ttl=activity_ttl,
        features=[Feature("spend", "float64"), Feature("visits", "int64")],
    )
    return Definitions([FeatureService(service, [profile, activity])])
