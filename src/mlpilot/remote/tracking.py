"""Tracking through a remote ``mlpilot server``: the :class:`~mlpilot.tracking.TrackingBackend` over REST.

``start_run(RestTracking(transport), RestArtifactStore(transport), ...)`` behaves as it does locally: the
background writer POSTs each batch of points as one request.

>>> from mlpilot.remote.http import HttpTransport
>>> backend = RestTracking(HttpTransport("http://127.0.0.1:5080"))  # doctest: +SKIP
>>> backend.search_runs("metrics.auc > 0.9").runs  # doctest: +SKIP
[]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from mlpilot.remote.http import HttpTransport
from mlpilot.tracking import (
    ArtifactRef,
    DatasetInfo,
    Experiment,
    MetricPoint,
    Run,
    RunInfo,
    RunPage,
    RunSpec,
    RunStatus,
)

__all__ = ["RestTracking"]

_API = "/api/v1"
_experiments = TypeAdapter(list[Experiment])
_history = TypeAdapter(list[MetricPoint])


def _wire_value(value: float) -> float | str:
    """JSON has no NaN or infinity: send them as the strings the server's float fields accept."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _batch_body(
    metrics: Sequence[tuple[str, float, int, int]], params: Mapping[str, str] | None, tags: Mapping[str, str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if metrics:
        # x - x is 0 only for finite x: one cheap test per point on the common path.
        body["metrics"] = [(k, v if v - v == 0 else _wire_value(v), s, t) for k, v, s, t in metrics]
    if params:
        body["params"] = dict(params)
    if tags:
        body["tags"] = dict(tags)
    return body


def _run_path(run_id: str, suffix: str = "") -> str:
    return f"{_API}/runs/{quote(run_id, safe='')}{suffix}"


class RestTracking:
    """Experiments and runs on a remote server. ``actor`` arguments are ignored: the server records the caller
    its token names."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport

    def get_or_create_experiment(self, name: str, *, actor: str = "local") -> Experiment:
        return Experiment.model_validate(self.transport.request("POST", f"{_API}/experiments", json={"name": name}))

    def get_experiment(self, name: str) -> Experiment:
        return Experiment.model_validate(self.transport.request("GET", f"{_API}/experiments/{quote(name, safe='')}"))

    def list_experiments(self) -> list[Experiment]:
        return _experiments.validate_python(self.transport.request("GET", f"{_API}/experiments"))

    def create_run(self, spec: RunSpec, *, actor: str = "local") -> RunInfo:
        body = spec.model_dump(mode="json", exclude_none=True)
        return RunInfo.model_validate(self.transport.request("POST", f"{_API}/runs", json=body))

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        *,
        end_time: int | None = None,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> RunInfo:
        body = _batch_body(metrics, params, tags)
        body["status"] = str(status).upper()
        if end_time is not None:
            body["end_time"] = end_time
        return RunInfo.model_validate(self.transport.request("POST", _run_path(run_id, "/end"), json=body))

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> None:
        body = _batch_body(metrics, params, tags)
        self.transport.request("POST", _run_path(run_id, "/batch"), json=body)

    def log_dataset(self, run_id: str, dataset: DatasetInfo, *, context: str = "train", actor: str = "local") -> None:
        body = {"dataset": dataset.model_dump(mode="json", by_alias=True), "context": context}
        self.transport.request("POST", _run_path(run_id, "/datasets"), json=body)

    def log_artifact(self, run_id: str, artifact: ArtifactRef, *, actor: str = "local") -> None:
        self.transport.request("POST", _run_path(run_id, "/artifacts"), json=artifact.model_dump(mode="json"))

    def get_run(self, run_id: str) -> Run:
        return Run.model_validate(self.transport.request("GET", _run_path(run_id)))

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        data = self.transport.request("GET", _run_path(run_id, "/metric-history"), params={"key": key})
        return _history.validate_python(data)

    def search_runs(
        self,
        filter: str | None = None,
        *,
        experiment: str | Iterable[str] | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        body: dict[str, Any] = {
            "filter": filter,
            "experiment": experiment if experiment is None or isinstance(experiment, str) else list(experiment),
            "order_by": order_by,
            "max_results": max_results,
            "page_token": page_token,
        }
        payload = self.transport.request(
            "POST", f"{_API}/runs/search", json={k: v for k, v in body.items() if v is not None}
        )
        return RunPage.model_validate(payload)
