"""Prometheus metrics of the model server, in a registry of its own (two servers in one process don't mix).

Names follow Prometheus conventions: base units (seconds), ``_total`` counters, and labels with bounded values
only (model, version, protocol, status code; never a request id or a name taken from an unknown URL)::

    >>> metrics = ServingMetrics()
    >>> b"mlpilot_serve_in_flight_requests" in metrics.render()
    True
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ModelMetrics", "ServingMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_LOAD = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: The label used for requests that name no served model: URL text must never become a label value.
UNKNOWN = "_unknown"


class ModelMetrics:
    """The label children of one model version, resolved once so the request path does no label lookups."""

    def __init__(self, parent: ServingMetrics, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._parent = parent
        self._codes: dict[tuple[str, int], Any] = {}
        self._durations: dict[str, Any] = {}
        self.queue = parent.queue_seconds.labels(model, version)
        self.inference = parent.inference_seconds.labels(model, version)
        self.batch_rows = parent.batch_rows.labels(model, version)
        self.batch_requests = parent.batch_requests.labels(model, version)
        self.queued_rows = parent.queued_rows.labels(model, version)

    def request(self, protocol: str, code: int, seconds: float) -> None:
        counter = self._codes.get((protocol, code))
        if counter is None:
            counter = self._codes[(protocol, code)] = self._parent.requests.labels(
                self.model, self.version, protocol, str(code)
            )
        counter.inc()
        hist = self._durations.get(protocol)
        if hist is None:
            hist = self._durations[protocol] = self._parent.request_seconds.labels(self.model, self.version, protocol)
        hist.observe(seconds)


class ServingMetrics:
    """Every metric the server exports; :meth:`render` is the ``/metrics`` body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlpilot_serve_requests",
            "Inference requests answered, by model, version, protocol and HTTP status code.",
            ["model", "version", "protocol", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "mlpilot_serve_request_duration_seconds",
            "Time from reading a request to sending its response.",
            ["model", "version", "protocol"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "mlpilot_serve_queue_duration_seconds",
            "Time a request waited in its model's batching queue.",
            ["model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "mlpilot_serve_inference_duration_seconds",
            "Time one batch spent in the model.",
            ["model", "version"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_rows = Histogram(
            "mlpilot_serve_batch_size_rows",
            "Rows in each batch sent to a model.",
            ["model", "version"],
            buckets=_ROWS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "mlpilot_serve_batch_size_requests",
            "Requests merged into each batch.",
            ["model", "version"],
            buckets=_ROWS,
            registry=r,
        )
        self.queued_rows = Gauge(
            "mlpilot_serve_queue_rows", "Rows waiting in a model's queue.", ["model", "version"], registry=r
        )
        self.in_flight = Gauge("mlpilot_serve_in_flight_requests", "Requests being handled.", registry=r)
        self.rejected = Counter(
            "mlpilot_serve_rejected_requests",
            "Requests refused with 503 before inference, by reason (queue_full, budget, in_flight, late).",
            ["model", "reason"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "mlpilot_serve_model_load_duration_seconds",
            "Time to load, verify and warm a model version.",
            ["model"],
            buckets=_LOAD,
            registry=r,
        )
        self.load_failures = Counter(
            "mlpilot_serve_model_load_failures",
            "Model versions refused because they failed to load or warm up.",
            ["model"],
            registry=r,
        )
        self.swaps = Counter(
            "mlpilot_serve_model_swaps",
            "Times a served model moved to another version.",
            ["model"],
            registry=r,
        )
        self.model_info = Gauge(
            "mlpilot_serve_model_info",
            "1 for each model version being served, with its artifact digest.",
            ["model", "version", "digest"],
            registry=r,
        )
        self.log_rows = Counter("mlpilot_serve_prediction_log_rows", "Prediction rows written to the log.", registry=r)
        self.log_dropped = Counter(
            "mlpilot_serve_prediction_log_dropped_rows",
            "Prediction rows dropped because the log buffer was full or a write failed.",
            registry=r,
        )
        self.log_segments = Counter(
            "mlpilot_serve_prediction_log_segments", "Parquet segments written to the log.", registry=r
        )
        self.feature_lookup_seconds = Histogram(
            "mlpilot_serve_feature_lookup_duration_seconds",
            "Time to look a request's features up in the online store (feature-service endpoints).",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.feature_missing = Counter(
            "mlpilot_serve_feature_missing_values",
            "Looked-up feature values the online store had none for (unknown entity, or older than the TTL).",
            ["model"],
            registry=r,
        )
        self.shadow_skipped = Counter(
            "mlpilot_serve_shadow_skipped_requests",
            "Mirrored (shadow) requests skipped by the shadow lane, by reason (full, stale, closed).",
            ["model", "reason"],
            registry=r,
        )
        self.shadow_process_versions = Gauge(
            "mlpilot_serve_shadow_process_versions",
            "Model versions loaded in the shadow lane's worker process (0 while none is, or it is loading one).",
            registry=r,
        )
        self._other: dict[tuple[str, int], Any] = {}

    def for_model(self, model: str, version: int) -> ModelMetrics:
        return ModelMetrics(self, model, str(version))

    def unrouted(self, protocol: str, code: int) -> None:
        """Count a request that reached no model (unknown name, malformed URL)."""
        child = self._other.get((protocol, code))
        if child is None:
            child = self._other[(protocol, code)] = self.requests.labels(UNKNOWN, "", protocol, str(code))
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
