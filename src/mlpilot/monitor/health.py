"""Serving health from the model server's Prometheus ``/metrics``: latency p99 and error rate of one endpoint.

The counters are cumulative since the server started, so each reading is the difference with the previous
scrape of the same URL (the first scrape, or one after a restart, reads the totals). The p99 is interpolated
within the request-duration histogram's buckets, as Prometheus' ``histogram_quantile`` does::

    >>> scraper = HealthScraper()
    >>> reading = scraper.read("http://127.0.0.1:8080/metrics", "churn")  # doctest: +SKIP
    >>> reading.requests, reading.error_rate, reading.latency_p99  # doctest: +SKIP
    (1200, 0.0025, 0.0071)
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from dataclasses import dataclass

import httpx

from mlpilot.errors import RemoteError

__all__ = ["HealthReading", "HealthScraper", "histogram_quantile", "parse_serving_metrics"]

_REQUESTS = "mlpilot_serve_requests_total"
_DURATION_BUCKET = "mlpilot_serve_request_duration_seconds_bucket"


@dataclass(frozen=True)
class Counters:
    """Cumulative counts of one endpoint: answers by status class, and latency bucket counts by upper bound."""

    requests: float
    errors: float
    buckets: dict[float, float]

    def minus(self, earlier: Counters) -> Counters:
        if self.requests < earlier.requests:  # the server restarted: its counters began again
            return self
        return Counters(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )


@dataclass(frozen=True)
class HealthReading:
    requests: int
    error_rate: float | None
    latency_p99: float | None


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile from cumulative bucket counts keyed by upper bound (``inf`` included)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None  # beyond the last bound: its bound is all we know
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return None


def parse_serving_metrics(text: str, endpoint: str) -> Counters:
    """Sum the model server's request counters and duration buckets of ``endpoint`` over versions and protocols."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = defaultdict(float)
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise RemoteError(f"metrics_url: not Prometheus text format: {exc}") from exc
    for family in families:
        for sample in family.samples:
            if sample.labels.get("model") != endpoint:
                continue
            if sample.name == _REQUESTS:
                requests += sample.value
                if sample.labels.get("code", "").startswith("5"):
                    errors += sample.value
            elif sample.name == _DURATION_BUCKET:
                buckets[float(sample.labels["le"])] += sample.value
    return Counters(requests, errors, dict(buckets))


class HealthScraper:
    """Remembers the previous scrape of each (URL, endpoint) so readings cover the time between evaluations."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._previous: dict[tuple[str, str], Counters] = {}
        self._lock = threading.Lock()

    def read(self, url: str, endpoint: str) -> HealthReading:
        try:
            response = httpx.get(url, timeout=self.timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RemoteError(f"metrics_url: cannot read {url}: {type(exc).__name__}: {exc}") from exc
        now = parse_serving_metrics(response.text, endpoint)
        with self._lock:
            earlier = self._previous.get((url, endpoint))
            self._previous[(url, endpoint)] = now
        delta = now.minus(earlier) if earlier is not None else now
        if delta.requests <= 0:
            return HealthReading(0, None, None)
        return HealthReading(
            int(delta.requests), delta.errors / delta.requests, histogram_quantile(0.99, delta.buckets)
        )
