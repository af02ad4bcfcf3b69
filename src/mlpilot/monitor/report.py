"""The result of a drift check: :class:`DriftReport`, with ``to_dict()``, ``to_html(path)`` and
``summary()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.monitor.drift import DriftConfig, FeatureDrift, feature_from_dict
from mlpilot.monitor.multivariate import MultivariateDrift, multivariate_from_dict
from mlpilot.monitor.performance import MetricValue
from mlpilot.monitor.profiles import SliceKey, slice_label
from mlpilot.monitor.slices import SliceFinding, finding_from_dict

__all__ = ["DriftReport", "PerformanceSummary", "SegmentDrift"]

FORMAT = "mlpilot.drift-report/1"


@dataclass
class SegmentDrift:
    """Drift tests of every feature within one segment value (``region=EU``)."""

    slice: SliceKey
    reference_rows: int
    current_rows: int
    features: dict[str, FeatureDrift]

    @property
    def label(self) -> str:
        return slice_label(self.slice)

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted or f.missing_drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": dict(self.slice),
            "label": self.label,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted_features": self.drifted_features,
            "features": {name: f.to_dict() for name, f in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentDrift:
        return cls(
            tuple((str(k), str(v)) for k, v in data["slice"].items()),
            int(data["reference_rows"]),
            int(data["current_rows"]),
            {name: feature_from_dict(f) for name, f in data["features"].items()},
        )


def _metrics_dict(metrics: dict[str, MetricValue]) -> dict[str, Any]:
    return {name: m.to_dict() for name, m in metrics.items()}


def _metrics_from(data: dict[str, Any]) -> dict[str, MetricValue]:
    return {name: MetricValue.from_dict(m) for name, m in data.items()}


@dataclass
class PerformanceSummary:
    """Metrics with 95% intervals: now, in the reference (when it had labels), and per segment value."""

    task: str
    current: dict[str, MetricValue]
    reference: dict[str, MetricValue] = field(default_factory=dict)
    by_segment: dict[str, dict[str, MetricValue]] = field(default_factory=dict)
    reference_by_segment: dict[str, dict[str, MetricValue]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "current": _metrics_dict(self.current),
            "reference": _metrics_dict(self.reference),
            "by_segment": {k: _metrics_dict(v) for k, v in self.by_segment.items()},
            "reference_by_segment": {k: _metrics_dict(v) for k, v in self.reference_by_segment.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerformanceSummary:
        return cls(
            str(data["task"]),
            _metrics_from(data["current"]),
            _metrics_from(data.get("reference") or {}),
            {k: _metrics_from(v) for k, v in (data.get("by_segment") or {}).items()},
            {k: _metrics_from(v) for k, v in (data.get("reference_by_segment") or {}).items()},
        )


@dataclass
class DriftReport:
    """Everything one check found. ``drifted_features`` lists the flagged inputs, largest effect first.

    Example::

        report = mlpilot.monitor.compare(reference_df, current_df, segments=["region"])
        report.drifted_features          # ['income', 'plan']
        report.features["income"].p_value
        report.to_html("drift.html")
    """

    reference_rows: int
    current_rows: int
    features: dict[str, FeatureDrift]
    config: DriftConfig
    prediction: FeatureDrift | None = None
    multivariate: MultivariateDrift | None = None
    segments: list[SegmentDrift] = field(default_factory=list)
    performance: PerformanceSummary | None = None
    slices: list[SliceFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: performance over time within the window, when the rows had times (filled by ``Monitor.check``):
    #: ``[{"start": ms, "end": ms, "rows": n, "labeled": n, "metrics": {name: value}}, ...]``
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        flagged = [f for f in self.features.values() if f.drifted or f.missing_drifted]
        return [f.feature for f in sorted(flagged, key=lambda f: (-_finite(f.effect_size), f.feature))]

    @property
    def drifted(self) -> bool:
        """True when any feature, the prediction, the joint distribution or a segment drifted."""
        return bool(
            self.drifted_features
            or (self.prediction is not None and (self.prediction.drifted or self.prediction.missing_drifted))
            or (self.multivariate is not None and self.multivariate.drifted)
            or any(s.drifted_features for s in self.segments)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict for machines (``json.dumps`` works on it)."""
        return {
            "format": FORMAT,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "multivariate": self.multivariate.to_dict() if self.multivariate else None,
            "segments": [s.to_dict() for s in self.segments],
            "performance": self.performance.to_dict() if self.performance else None,
            "slices": [s.to_dict() for s in self.slices],
            "config": self.config.to_dict(),
            "notes": list(self.notes),
            "timeline": list(self.timeline),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        """Rebuild a report from :meth:`to_dict` (e.g. one stored by the control plane) to render it again."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidInputError(f"report: expected a dict with format {FORMAT!r}", field="format")
        try:
            return cls(
                reference_rows=int(data["reference_rows"]),
                current_rows=int(data["current_rows"]),
                features={name: feature_from_dict(f) for name, f in data["features"].items()},
                config=DriftConfig(**data["config"]),
                prediction=feature_from_dict(data["prediction"]) if data.get("prediction") else None,
                multivariate=multivariate_from_dict(data["multivariate"]) if data.get("multivariate") else None,
                segments=[SegmentDrift.from_dict(x) for x in data.get("segments", [])],
                performance=PerformanceSummary.from_dict(data["performance"]) if data.get("performance") else None,
                slices=[finding_from_dict(x) for x in data.get("slices", [])],
                notes=[str(n) for n in data.get("notes", [])],
                timeline=list(data.get("timeline", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"report: malformed report dict ({exc!r})", field="report") from exc

    def to_html(self, path: str | Path) -> Path:
        """Write one self-contained HTML file (inline CSS and SVG, no scripts, opens offline); return its
        path."""
        from mlpilot.monitor.html import render_html

        target = Path(path)
        target.write_text(render_html(self), encoding="utf-8")
        return target

    def summary(self) -> str:
        """A plain-text table of the features, then the findings, for terminals and logs."""
        lines = [
            f"reference rows: {self.reference_rows:,}   current rows: {self.current_rows:,}   "
            f"drifted: {', '.join(self.drifted_features) or 'none'}",
            f"{'feature':<24} {'test':<15} {'statistic':>10} {'p':>10} {'q':>10} {'effect':>9}  drift",
        ]
        rows = list(self.features.values()) + ([self.prediction] if self.prediction else [])
        for f in rows:
            flag = "YES" if f.drifted or f.missing_drifted else ""
            name = f.feature if f is not self.prediction else f"{f.feature} (prediction)"
            lines.append(
                f"{name[:24]:<24} {f.test:<15} {_fmt(f.statistic):>10} {_fmt(f.p_value):>10} "
                f"{_fmt(f.q_value):>10} {_fmt(f.effect_size):>9}  {flag}"
            )
        if self.multivariate is not None:
            m = self.multivariate
            lines.append(
                f"multivariate (PCA reconstruction): p={_fmt(m.p_value)} q={_fmt(m.q_value)} "
                f"error {_fmt(m.reference_error)} -> {_fmt(m.current_error)}{'  YES' if m.drifted else ''}"
                + (f"  ({m.note})" if m.note else "")
            )
        for s in self.segments:
            if s.drifted_features:
                lines.append(f"segment {s.label}: drifted {', '.join(s.drifted_features)}")
        lines.extend(f.describe() for f in self.slices)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def _fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
