"""Mergeable summaries of one column: a weighted quantile sketch for numbers, bounded top-K counts for
categories.

The numeric sketch keeps the exact sorted distinct values with their counts while there are at most ``size``
of
them, so drift tests on small data are exact. Past that it is compressed to ``size`` points at the mid-levels
``(k + 0.5) / size`` of the weighted CDF, each carrying ``total / size`` weight: the step CDF of the sketch is
then
within ``1 / (2 * size)`` of the data's CDF everywhere, which bounds the error it adds to a KS statistic::

    >>> import numpy as np
    >>> from mlpilot.monitor.sketch import NumericSketch
    >>> s = NumericSketch.from_values(np.arange(10_000, dtype=float), size=100)
    >>> s.exact, len(s.values), s.total
    (False, 100, 10000.0)
    >>> round(float(s.quantile(0.5)))
    4950
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpilot.errors import InvalidInputError
from mlpilot.monitor.stats import FloatArray

__all__ = ["CategoryCounts", "NumericSketch"]


def _collapse(values: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Sum the weights of equal neighbours in a sorted array."""
    if values.size == 0:
        return values, weights
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[starts], np.add.reduceat(weights, starts)


@dataclass(frozen=True)
class NumericSketch:
    """Weighted sorted distinct values; ``exact`` while no compression has happened."""

    values: FloatArray
    weights: FloatArray
    exact: bool = True

    @property
    def total(self) -> float:
        return float(self.weights.sum()) if self.weights.size else 0.0

    @classmethod
    def empty(cls) -> NumericSketch:
        return cls(np.empty(0), np.empty(0), True)

    @classmethod
    def from_values(cls, values: FloatArray, size: int | None) -> NumericSketch:
        """Build from finite values (not necessarily sorted); ``size=None`` never compresses."""
        return cls.from_sorted(np.sort(values), size)

    @classmethod
    def from_sorted(cls, ordered: FloatArray, size: int | None) -> NumericSketch:
        """Build from sorted finite values without copying them (the common path for large columns)."""
        n = ordered.size
        if n == 0:
            return cls.empty()
        change = ordered[1:] != ordered[:-1]
        distinct = int(np.count_nonzero(change)) + 1
        if size is None or distinct <= size:
            starts = np.flatnonzero(np.concatenate(([True], change)))
            counts = np.diff(np.append(starts, n)).astype(np.float64)
            return cls(ordered[starts], counts, True)
        if size < 2:
            raise InvalidInputError(f"sketch_size: expected an integer >= 2, got {size}", field="sketch_size")
        # With unit weights the mid-level quantile (k + 0.5) * n / size is simply the element at its floor.
        idx = ((np.arange(size) + 0.5) * (n / size)).astype(np.int64)
        values, weights = _collapse(ordered[idx], np.full(size, n / size))
        return cls(values, weights, False)

    @classmethod
    def from_sorted_counts(cls, values: FloatArray, counts: FloatArray, size: int | None) -> NumericSketch:
        return cls(values, counts, True).compress(size)

    def compress(self, size: int | None) -> NumericSketch:
        """At most ``size`` points: the weighted mid-level quantiles, equal-valued points merged."""
        if size is None or self.values.size <= size:
            return self
        if size < 2:
            raise InvalidInputError(f"sketch_size: expected an integer >= 2, got {size}", field="sketch_size")
        cum = np.cumsum(self.weights)
        total = cum[-1]
        levels = (np.arange(size) + 0.5) * (total / size)
        idx = np.minimum(np.searchsorted(cum, levels, side="right"), self.values.size - 1)
        values, weights = _collapse(self.values[idx], np.full(size, total / size))
        return NumericSketch(values, weights, False)

    def merge(self, other: NumericSketch, size: int | None) -> NumericSketch:
        """The sketch of the union of both samples."""
        values = np.concatenate((self.values, other.values))
        weights = np.concatenate((self.weights, other.weights))
        order = np.argsort(values, kind="stable")
        merged_values, merged_weights = _collapse(values[order], weights[order])
        merged = NumericSketch(merged_values, merged_weights, self.exact and other.exact)
        return merged.compress(size)

    def cdf(self, x: FloatArray) -> FloatArray:
        """Fraction of the weight at or below each ``x``."""
        if self.values.size == 0:
            return np.full(np.shape(x), np.nan)
        cum = np.concatenate(([0.0], np.cumsum(self.weights)))
        out: FloatArray = cum[np.searchsorted(self.values, x, side="right")] / cum[-1]
        return out

    def quantile(self, q: float | FloatArray) -> FloatArray:
        """Lower weighted quantile(s): the smallest value whose CDF reaches ``q``."""
        if self.values.size == 0:
            return np.full(np.shape(q), np.nan)
        cum = np.cumsum(self.weights)
        target = np.asarray(q, dtype=np.float64) * cum[-1]
        idx = np.minimum(np.searchsorted(cum, target * (1 - 1e-12), side="left"), self.values.size - 1)
        out: FloatArray = self.values[idx]
        return out

    def to_dict(self) -> dict[str, Any]:
        values = self.values.tolist()
        if not self.exact:
            # Compressed points are quantile estimates already: ten significant digits lose nothing real.
            values = [float(f"{v:.10g}") for v in values]
        data: dict[str, Any] = {"values": values, "exact": self.exact}
        # Weights are whole multiples of one unit (1 when exact, total/size once compressed): store small
        # ints.
        unit = float(self.weights.min()) if self.weights.size else 1.0
        multiples = np.round(self.weights / unit) if unit > 0 else self.weights
        if unit > 0 and np.allclose(multiples * unit, self.weights, rtol=1e-9, atol=0):
            data.update(unit=unit, counts=multiples.astype(np.int64).tolist())
        else:
            data["weights"] = self.weights.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSketch:
        values = np.asarray(data["values"], dtype=np.float64)
        if "counts" in data:
            weights = np.asarray(data["counts"], dtype=np.float64) * float(data["unit"])
        else:
            weights = np.asarray(data["weights"], dtype=np.float64)
        if values.shape != weights.shape or values.ndim != 1:
            raise InvalidInputError("sketch: 'values' and 'weights' must be lists of equal length", field="sketch")
        if values.size > 1 and not np.all(np.diff(values) > 0):
            raise InvalidInputError("sketch: 'values' must be strictly increasing", field="sketch")
        return cls(values, weights, bool(data.get("exact", False)))


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of the ``top_k`` most frequent values; everything else is summed into ``other``."""

    counts: dict[str, float] = field(default_factory=dict)
    other: float = 0.0

    @property
    def total(self) -> float:
        return float(sum(self.counts.values()) + self.other)

    @classmethod
    def from_counts(cls, counts: dict[str, float], top_k: int | None, other: float = 0.0) -> CategoryCounts:
        if top_k is None or len(counts) <= top_k:
            return cls(dict(counts), other)
        # Ties broken by value so the kept set does not depend on input order.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = dict(ranked[:top_k])
        return cls(kept, other + sum(v for _, v in ranked[top_k:]))

    def merge(self, other: CategoryCounts, top_k: int | None) -> CategoryCounts:
        counts = dict(self.counts)
        for key, value in other.counts.items():
            counts[key] = counts.get(key, 0.0) + value
        return CategoryCounts.from_counts(counts, top_k, self.other + other.other)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "other": self.other}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoryCounts:
        counts = data.get("counts")
        if not isinstance(counts, dict):
            raise InvalidInputError("categories: expected a 'counts' object", field="counts")
        return cls({str(k): float(v) for k, v in counts.items()}, float(data.get("other", 0.0)))
