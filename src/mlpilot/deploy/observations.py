"""Per-variant traffic statistics: small, mergeable, JSON-able summaries the data plane reports.

A replica accumulates one :class:`VariantStats` per (endpoint, revision, variant) and sends the delta every
second or so; the control plane adds deltas up. Everything is a count, so merging is exact and order-free:

- requests, server errors (5xx) and refusals (4xx);
- latency as a log-bucketed histogram (8 buckets per doubling, so quantiles are within ~4.5%);
- predictions as counts per bin (a class label, or a log-spaced interval for numbers);
- outcomes posted later (labels turned into 0/1 correctness, or business values) as count, sum and sum of
  squares;
- for shadows, how many mirrored requests could be paired with the primary's answer and how many agreed.

>>> s = VariantStats()
>>> s.record(status=200, latency_ms=3.2, predictions=[1, 0, 1])
>>> s.requests, s.prediction_bins
(1, {'i:1': 2, 'i:0': 1})
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlpilot.errors import InvalidInputError

__all__ = [
    "MAX_BINS",
    "Moments",
    "VariantStats",
    "latency_bucket",
    "latency_bucket_ms",
    "prediction_bin",
]

_BASE_MS = 0.01
_PER_DOUBLING = 8
_MAX_BUCKET = 400  # 0.01 ms * 2**50: far beyond any timeout
#: Distinct prediction bins kept per variant; the rest are counted as "other".
MAX_BINS = 64
_OTHER = "other"


def latency_bucket(ms: float) -> int:
    """The histogram bucket of a latency: 0 for <= 0.01 ms, then 8 per doubling."""
    if not ms > _BASE_MS:  # also NaN
        return 0
    return min(_MAX_BUCKET, math.floor(_PER_DOUBLING * math.log2(ms / _BASE_MS)) + 1)


def latency_bucket_ms(index: int) -> float:
    """A representative latency for bucket ``index``: the geometric middle of its bounds."""
    if index <= 0:
        return _BASE_MS
    return _BASE_MS * 2 ** ((index - 0.5) / _PER_DOUBLING)


def prediction_bin(value: Any) -> str:
    """The bin of one prediction: class labels keep their identity, numbers fall in log-spaced intervals
    (four per doubling) so that regression outputs of any scale get a stable, mergeable histogram."""
    if isinstance(value, list | tuple):
        return prediction_bin(value[0]) if value else "none"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"c:{value}"
    if isinstance(value, int):
        return f"i:{value}" if abs(value) < 1000 else prediction_bin(float(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) < 1000:
            return f"i:{int(value)}"
        if value == 0:
            return "n:0"
        if math.isinf(value):
            return "n:+inf" if value > 0 else "n:-inf"
        sign = "+" if value > 0 else "-"
        return f"n:{sign}{math.floor(4 * math.log2(abs(value)))}"
    return f"c:{str(value)[:64]}"


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of a per-unit metric: enough for its mean and variance."""

    n: float = 0.0
    total: float = 0.0
    sumsq: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """The (biased) sample variance, never negative."""
        if not self.n:
            return math.nan
        return max(0.0, self.sumsq / self.n - self.mean**2)

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.sumsq + other.sumsq)

    @classmethod
    def bernoulli(cls, successes: float, n: float) -> Moments:
        return cls(n, successes, successes)


def _add_counts(into: dict[Any, int], other: Mapping[Any, int]) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + int(count)


@dataclass
class VariantStats:
    """What one variant saw over some window (mutable while a replica records, then sent as a dict)."""

    requests: int = 0
    errors: int = 0
    rejected: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    prediction_bins: dict[str, int] = field(default_factory=dict)
    outcomes: Moments = Moments()
    paired: int = 0
    agreed: int = 0
    #: mirrored requests skipped, not run: too many in flight at the router, or shed by the model server's
    #: shadow lane (shadows only; the shadow report's ``skipped``)
    dropped: int = 0

    # -- recording -----------------------------------------------------------------------------------------
    def record(self, *, status: int, latency_ms: float, predictions: Iterable[Any] = ()) -> None:
        """Count one answered request (its predictions only if it succeeded)."""
        self.requests += 1
        if status >= 500:
            self.errors += 1
        elif status >= 400:
            self.rejected += 1
        b = latency_bucket(latency_ms)
        self.latency[b] = self.latency.get(b, 0) + 1
        if status < 400:
            for value in predictions:
                self._bin(prediction_bin(value))

    def _bin(self, key: str) -> None:
        bins = self.prediction_bins
        if key in bins or len(bins) < MAX_BINS:
            bins[key] = bins.get(key, 0) + 1
        else:
            bins[_OTHER] = bins.get(_OTHER, 0) + 1

    def record_pair(self, agreed: bool) -> None:
        self.paired += 1
        self.agreed += int(agreed)

    def record_outcome(self, value: float) -> None:
        self.outcomes = self.outcomes + Moments(1.0, value, value * value)

    # -- combining -----------------------------------------------------------------------------------------
    def merge(self, other: VariantStats) -> VariantStats:
        """Add ``other`` into this one (in place) and return it."""
        self.requests += other.requests
        self.errors += other.errors
        self.rejected += other.rejected
        _add_counts(self.latency, other.latency)
        for key, count in other.prediction_bins.items():
            if key in self.prediction_bins or len(self.prediction_bins) < MAX_BINS:
                self.prediction_bins[key] = self.prediction_bins.get(key, 0) + count
            else:
                self.prediction_bins[_OTHER] = self.prediction_bins.get(_OTHER, 0) + count
        self.outcomes = self.outcomes + other.outcomes
        self.paired += other.paired
        self.agreed += other.agreed
        self.dropped += other.dropped
        return self

    @property
    def empty(self) -> bool:
        return not (self.requests or self.outcomes.n or self.paired or self.dropped)

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def answered(self) -> int:
        """Requests the variant was responsible for: refusals of bad input (4xx) are the caller's."""
        return self.requests - self.rejected

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile of latency in ms (within one bucket), or None without data."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = q * total
        seen = 0
        for index in sorted(self.latency):
            seen += self.latency[index]
            if seen >= rank:
                return latency_bucket_ms(index)
        return latency_bucket_ms(max(self.latency))

    def slower_than(self, threshold_ms: float) -> int:
        """Requests whose latency fell in a bucket above the one holding ``threshold_ms``."""
        limit = latency_bucket(threshold_ms)
        return sum(count for index, count in self.latency.items() if index > limit)

    # -- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "latency": {str(k): v for k, v in self.latency.items()},
            "predictions": dict(self.prediction_bins),
            "outcomes": [self.outcomes.n, self.outcomes.total, self.outcomes.sumsq],
            "paired": self.paired,
            "agreed": self.agreed,
            "dropped": self.dropped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, field: str = "stats") -> VariantStats:
        """Validate and read what :meth:`to_dict` wrote (it arrives over the network)."""
        try:
            counts = {k: int(data.get(k, 0)) for k in ("requests", "errors", "rejected", "paired", "agreed", "dropped")}
            latency = {int(k): int(v) for k, v in dict(data.get("latency", {})).items()}
            bins = {str(k)[:80]: int(v) for k, v in dict(data.get("predictions", {})).items()}
            n, total, sumsq = (float(x) for x in data.get("outcomes", [0, 0, 0]))
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"{field}: malformed variant statistics: {exc}", field=field) from exc
        numbers = [*counts.values(), *latency.values(), *bins.values()]
        if any(v < 0 for v in numbers) or n < 0 or not all(math.isfinite(x) for x in (n, total, sumsq)):
            raise InvalidInputError(f"{field}: counts must be non-negative and finite", field=field)
        if counts["errors"] + counts["rejected"] > counts["requests"] or counts["agreed"] > counts["paired"]:
            raise InvalidInputError(f"{field}: more errors or agreements than requests", field=field)
        if len(bins) > 4 * MAX_BINS or len(latency) > _MAX_BUCKET + 1:
            raise InvalidInputError(f"{field}: too many histogram bins", field=field)
        return cls(
            requests=counts["requests"],
            errors=counts["errors"],
            rejected=counts["rejected"],
            latency=latency,
            prediction_bins=bins,
            outcomes=Moments(n, total, sumsq),
            paired=counts["paired"],
            agreed=counts["agreed"],
            dropped=counts["dropped"],
        )
