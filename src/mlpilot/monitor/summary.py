"""From a full :class:`~mlpilot.monitor.report.DriftReport` to the small :class:`CheckSummary` the control plane
stores, serves and exports; and performance over time within a window."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlpilot.monitor.drift import FeatureDrift
from mlpilot.monitor.entities import CheckSummary, FeatureScore
from mlpilot.monitor.performance import PerformanceStats, Task
from mlpilot.monitor.report import DriftReport
from mlpilot.monitor.slices import SliceFinding

__all__ = ["MAX_SEGMENTS", "summarize", "timeline", "worst_slice"]

#: Segments kept in a summary (and so in the Prometheus gauges): the largest ones.
MAX_SEGMENTS = 20
_LOWER_IS_BETTER = {"mae", "rmse", "log_loss"}


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _score(f: FeatureDrift) -> FeatureScore:
    return FeatureScore(
        test=f.test,
        effect_size=_num(f.effect_size),
        p_value=_num(f.p_value),
        q_value=_num(f.q_value),
        drifted=bool(f.drifted or f.missing_drifted),
    )


def worst_slice(findings: list[SliceFinding]) -> SliceFinding | None:
    """The performance finding where the metric got worse by the most (conservatively, by its interval)."""
    worse = [
        f
        for f in findings
        if f.kind == "performance" and ((f.change > 0) if f.metric in _LOWER_IS_BETTER else (f.change < 0))
    ]
    return max(worse, key=lambda f: (f.score, f.label)) if worse else None


def summarize(
    report: DriftReport,
    *,
    endpoint: str,
    model: str,
    version: int | None,
    time: int,
    window_start: int | None,
    window_end: int | None,
    labeled_rows: int,
) -> CheckSummary:
    performance: dict[str, dict[str, float]] = {}
    performance_rows: dict[str, int] = {}
    perf = report.performance
    if perf is not None:
        performance[""] = {k: v for k, m in perf.current.items() if (v := _num(m.value)) is not None}
        performance_rows[""] = max((m.n for m in perf.current.values()), default=0)
        sized = sorted(perf.by_segment.items(), key=lambda kv: (-max((m.n for m in kv[1].values()), default=0), kv[0]))
        for label, metrics in sized[:MAX_SEGMENTS]:
            performance[label] = {k: v for k, m in metrics.items() if (v := _num(m.value)) is not None}
            performance_rows[label] = max((m.n for m in metrics.values()), default=0)
    worst = worst_slice(report.slices)
    mv = report.multivariate
    multivariate = None
    if mv is not None and mv.p_value is not None:
        multivariate = FeatureScore(
            test=mv.test,
            effect_size=_num(mv.effect_size),
            p_value=_num(mv.p_value),
            q_value=_num(mv.q_value),
            drifted=mv.drifted,
        )
    return CheckSummary(
        endpoint=endpoint,
        model=model,
        version=version,
        time=time,
        window_start=window_start,
        window_end=window_end,
        rows=report.current_rows,
        labeled_rows=labeled_rows,
        drifted=report.drifted,
        drifted_features=report.drifted_features,
        features={name: _score(f) for name, f in report.features.items()},
        prediction=_score(report.prediction) if report.prediction is not None else None,
        multivariate=multivariate,
        performance=performance,
        performance_rows=performance_rows,
        findings=[f.describe() for f in report.slices],
        worst_segment=worst.label if worst is not None else None,
        worst_segment_description=worst.describe() if worst is not None else None,
        notes=list(report.notes),
    )


def timeline(
    table: Any,
    *,
    prediction: str,
    label: str,
    score: str | None = None,
    task: Task | None = None,
    positive: str | None = None,
    buckets: int = 12,
) -> list[dict[str, Any]]:
    """Metrics of the labeled rows in ``buckets`` equal slices of the window's time range."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = table.column_names
    if table.num_rows == 0 or "time" not in names or prediction not in names or label not in names:
        return []
    times = np.asarray(pc.cast(table.column("time"), pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy())
    start, end = int(times.min()), int(times.max()) + 1
    edges = np.linspace(start, end, buckets + 1)
    which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, buckets - 1)

    def values(name: str) -> np.ndarray[Any, Any]:
        col = table.column(name)
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            return np.asarray(pc.cast(col, pa.float64()).fill_null(np.nan).to_numpy())
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)

    target, pred = values(label), values(prediction)
    scores = values(score) if score is not None and score in names else None
    labeled = np.array([v is not None and not (isinstance(v, float) and math.isnan(v)) for v in target])
    out: list[dict[str, Any]] = []
    for b in range(buckets):
        rows = which == b
        mask = rows & labeled
        bucket: dict[str, Any] = {
            "start": int(edges[b]),
            "end": int(edges[b + 1]),
            "rows": int(rows.sum()),
            "labeled": int(mask.sum()),
            "metrics": {},
        }
        if mask.any():
            stats = PerformanceStats.from_arrays(
                target[mask],
                pred[mask],
                scores[mask] if scores is not None else None,
                task=task,
                positive=positive,
            )
            bucket["metrics"] = {k: v for k, m in stats.metrics().items() if (v := _num(m.value)) is not None}
        out.append(bucket)
    return out
