"""Experiment tracking: experiments, runs, params, metrics, tags, dataset inputs and artifacts.

``TrackingService`` keeps them in the metadata store; ``start_run`` gives the non-blocking run handle used in
training code; ``search_runs`` (on the service) compiles a small filter language to SQL.

>>> from mlpilot.store import Store
>>> from mlpilot.tracking import TrackingService, RunSpec
>>> svc = TrackingService(Store("sqlite:///:memory:"))
>>> run = svc.create_run(RunSpec(experiment="churn", tags={"team": "growth"}))
>>> svc.search_runs("tags.team = 'growth'").runs[0].id == run.id
True
"""

from __future__ import annotations

from mlpilot.tracking.backend import TrackingBackend
from mlpilot.tracking.datasets import describe_dataset
from mlpilot.tracking.filter import parse_filter
from mlpilot.tracking.models import (
    ArtifactRef,
    DatasetInfo,
    DatasetInput,
    Experiment,
    MetricPoint,
    Run,
    RunInfo,
    RunPage,
    RunSpec,
    RunStatus,
)
from mlpilot.tracking.run import ActiveRun, active_run, start_run
from mlpilot.tracking.service import TrackingService
from mlpilot.tracking.writer import WriterError

__all__ = [
    "ActiveRun",
    "ArtifactRef",
    "DatasetInfo",
    "DatasetInput",
    "Experiment",
    "MetricPoint",
    "Run",
    "RunInfo",
    "RunPage",
    "RunSpec",
    "RunStatus",
    "TrackingBackend",
    "TrackingService",
    "WriterError",
    "active_run",
    "describe_dataset",
    "parse_filter",
    "start_run",
]
