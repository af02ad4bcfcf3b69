"""The slice finder: which segments (single fields and pairs) moved most, with counts and confidence
intervals.

Three kinds of findings, each ranked by the conservative size of its change (the end of the 95% interval
nearest to zero), and only reported when that interval excludes zero:

- ``performance``: a metric (accuracy for classification, MAE for regression, or ``slice_metric``) in the
slice
  now versus the same slice in the reference when the reference has labels, else versus the rest of the
  window;
- ``distribution``: within the slice, the feature whose distribution moved most (effect size at or above its
  floor and p < alpha): for numbers the standardized mean difference, for categories the share of the category
  that moved most;
- ``traffic``: the slice's share of all rows.

Example line (``finding.describe()``)::

    accuracy fell 12.0 points for region=EU & plan=basic: 0.910 -> 0.790 (95% CI of the change -15.1 to -8.9
    points; 1,204 rows now, 980 in the reference)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from mlpilot.monitor.drift import DriftConfig, check_feature
from mlpilot.monitor.performance import MetricValue, PerformanceStats
from mlpilot.monitor.profiles import CategoricalProfile, NumericProfile, Profile, SliceKey, slice_label
from mlpilot.monitor.stats import normal_ppf

__all__ = ["SliceFinding", "find_slices", "finding_from_dict"]

_Z95 = normal_ppf(0.975)
_LOWER_IS_BETTER = {"mae", "rmse", "log_loss"}
_PROPORTIONS = {"accuracy", "precision", "recall", "f1", "roc_auc", "share"}


@dataclass(frozen=True)
class SliceFinding:
    """One segment that moved: what, by how much (with a 95% interval) and on how many rows."""

    kind: Literal["performance", "distribution", "traffic"]
    slice: SliceKey
    metric: str
    reference: float
    current: float
    change: float
    low: float
    high: float
    reference_rows: int
    current_rows: int
    score: float
    baseline: str = "reference"
    detail: str = ""

    @property
    def label(self) -> str:
        return slice_label(self.slice)

    def describe(self) -> str:
        """One line for a human, e.g. ``accuracy fell 12.0 points for region=EU & plan=basic: ...``."""
        points = self.metric in _PROPORTIONS
        unit = " points" if points else ""
        scale = 100.0 if points else 1.0
        verb = "rose" if self.change > 0 else "fell"
        rows = f"{self.current_rows:,} rows now, {self.reference_rows:,} in the {self.baseline}"
        if points:
            interval = f"95% CI of the change {self.low * scale:+.1f} to {self.high * scale:+.1f}{unit}"
        else:
            interval = f"95% CI of the change {self.low:+.3g} to {self.high:+.3g}"
        if self.kind == "traffic":
            return (
                f"share of rows in {self.label} {verb} from {self.reference:.1%} to {self.current:.1%} "
                f"({interval}; {rows})"
            )
        what = self.metric if self.kind == "performance" else self.detail
        return (
            f"{what} {verb} {abs(self.change) * scale:.{1 if points else 3}f}{unit} for {self.label}: "
            f"{self.reference:.3g} -> {self.current:.3g} ({interval}; {rows})"
        )

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "kind": self.kind,
            "slice": dict(self.slice),
            "label": self.label,
            "metric": self.metric,
            "reference": num(self.reference),
            "current": num(self.current),
            "change": num(self.change),
            "low": num(self.low),
            "high": num(self.high),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "score": num(self.score),
            "baseline": self.baseline,
            "detail": self.detail,
            "description": self.describe(),
        }


def finding_from_dict(data: dict[str, Any]) -> SliceFinding:
    """Rebuild a :class:`SliceFinding` from its ``to_dict()``."""

    def nan(x: Any) -> float:
        return math.nan if x is None else float(x)

    return SliceFinding(
        kind=data["kind"],
        slice=tuple((str(k), str(v)) for k, v in (data.get("slice") or {}).items()),
        metric=str(data["metric"]),
        reference=nan(data.get("reference")),
        current=nan(data.get("current")),
        change=nan(data.get("change")),
        low=nan(data.get("low")),
        high=nan(data.get("high")),
        reference_rows=int(data["reference_rows"]),
        current_rows=int(data["current_rows"]),
        score=nan(data.get("score")),
        baseline=str(data.get("baseline", "reference")),
        detail=str(data.get("detail", "")),
    )


def _finding(
    kind: Literal["performance", "distribution", "traffic"],
    key: SliceKey,
    metric: str,
    ref: float,
    cur: float,
    se: float,
    rows: tuple[int, int],
    baseline: str = "reference",
    detail: str = "",
) -> SliceFinding | None:
    change = cur - ref
    half = _Z95 * se
    score = abs(change) - half
    if not (math.isfinite(score) and score > 0):
        return None
    return SliceFinding(
        kind,
        key,
        metric,
        ref,
        cur,
        change,
        change - half,
        change + half,
        rows[0],
        rows[1],
        score,
        baseline,
        detail,
    )


def _metric(stats: PerformanceStats | None, name: str, seed: int) -> MetricValue | None:
    if stats is None or stats.n == 0:
        return None
    return stats.metrics(seed=seed).get(name)


def _performance(reference: Profile, current: Profile, config: DriftConfig) -> list[SliceFinding]:
    if current.performance is None:
        return []
    name = config.slice_metric or ("mae" if current.performance.task == "regression" else "accuracy")
    out: list[SliceFinding] = []
    for key, sub in current.slices.items():
        if sub.performance is None or sub.performance.n < config.min_slice_rows:
            continue
        now = _metric(sub.performance, name, config.seed)
        ref_sub = reference.slices.get(key)
        baseline = "reference"
        then = _metric(ref_sub.performance, name, config.seed) if ref_sub is not None else None
        if then is None or then.n < config.min_slice_rows:
            baseline = "rest of the window"
            then = _metric(current.performance.without(sub.performance), name, config.seed)
        if now is None or then is None:
            continue
        found = _finding(
            "performance",
            key,
            name,
            then.value,
            now.value,
            math.hypot(now.se, then.se),
            (then.n, now.n),
            baseline,
        )
        if found is not None:
            out.append(found)
    return out


def _distribution(reference: Profile, current: Profile, config: DriftConfig) -> list[SliceFinding]:
    out: list[SliceFinding] = []
    roles = {current.prediction, current.target, current.score}
    for key, sub in current.slices.items():
        ref_sub = reference.slices.get(key)
        if ref_sub is None or min(sub.rows, ref_sub.rows) < config.min_slice_rows:
            continue
        best: tuple[float, SliceFinding] | None = None
        for name, col in sub.columns.items():
            ref_col = ref_sub.columns.get(name)
            if name in roles or ref_col is None or ref_col.kind != col.kind:
                continue
            result = check_feature(name, ref_col, col, config, key)
            moved = math.isfinite(result.effect_size) and result.effect_size >= result.threshold > 0
            if not moved or (result.p_value is not None and result.p_value >= config.alpha):
                continue
            found = _describe_shift(key, name, ref_col, col)
            ratio = result.effect_size / result.threshold
            if found is not None and (best is None or ratio > best[0]):
                # Rank by effect size over its floor, comparable across numeric and categorical features.
                best = (ratio, replace(found, score=ratio))
        if best is not None:
            out.append(best[1])
    return out


def _describe_shift(
    key: SliceKey,
    name: str,
    ref: NumericProfile | CategoricalProfile,
    cur: NumericProfile | CategoricalProfile,
) -> SliceFinding | None:
    rows = (int(ref.count), int(cur.count))
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        se = math.sqrt(ref.std**2 / ref.count + cur.std**2 / cur.count)
        return _finding("distribution", key, name, ref.mean, cur.mean, se, rows, detail=f"mean of {name}")
    assert isinstance(ref, CategoricalProfile)
    assert isinstance(cur, CategoricalProfile)
    best: SliceFinding | None = None
    for value in set(ref.categories.counts) | set(cur.categories.counts):
        p1 = ref.categories.counts.get(value, 0.0) / ref.count
        p2 = cur.categories.counts.get(value, 0.0) / cur.count
        se = math.sqrt(p1 * (1 - p1) / ref.count + p2 * (1 - p2) / cur.count)
        found = _finding("distribution", key, "share", p1, p2, se, rows, detail=f"share of {name}={value}")
        if found is not None and (best is None or found.score > best.score):
            best = found
    return best


def _traffic(reference: Profile, current: Profile, config: DriftConfig) -> list[SliceFinding]:
    out: list[SliceFinding] = []
    if reference.rows == 0 or current.rows == 0:
        return out
    known = set(reference.segments)
    for key in set(reference.slices) | set(current.slices):
        if any(name not in known for name, _ in key):
            continue  # a field the reference was not sliced by: its share there is unknown, not zero
        n1 = reference.slices[key].rows if key in reference.slices else 0
        n2 = current.slices[key].rows if key in current.slices else 0
        if max(n1, n2) < config.min_slice_rows:
            continue
        p1, p2 = n1 / reference.rows, n2 / current.rows
        se = math.sqrt(p1 * (1 - p1) / reference.rows + p2 * (1 - p2) / current.rows)
        found = _finding("traffic", key, "share", p1, p2, se, (n1, n2))
        if found is not None:
            out.append(found)
    return out


def find_slices(reference: Profile, current: Profile, config: DriftConfig) -> list[SliceFinding]:
    """Findings of every kind, each kind ranked by conservative change and cut to ``max_slice_findings``."""
    findings: list[SliceFinding] = []
    for kind in (_performance, _distribution, _traffic):
        ranked = sorted(kind(reference, current, config), key=lambda f: (-f.score, f.label))
        findings.extend(ranked[: config.max_slice_findings])
    return findings
