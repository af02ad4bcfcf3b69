"""Per-feature drift tests between a reference column profile and a current one.

The test is chosen by type and sample size (``"auto"``):

- numeric: the two-sample Kolmogorov-Smirnov test, with the exact null distribution when both sides are small
  and unsketched (n + m <= 4000), else the asymptotic one; the effect size is the Wasserstein-1 distance
  divided
  by the reference standard deviation ("how many SDs the distribution moved");
- categorical: Pearson's chi-square test of homogeneity (categories expected fewer than 5 times pooled) when
the
  table is large enough for it (Cochran's rule), else the Jensen-Shannon distance alone; the effect size is
  the
  Jensen-Shannon distance (base 2, in [0, 1]).

``"wasserstein"``, ``"jensen_shannon"`` and ``"psi"`` may be requested instead: they have no p-value and flag
drift when the effect size reaches its threshold. A change in the missing rate is a separate two-proportion
test.
A tested feature is flagged when its Benjamini-Hochberg q-value is at most ``alpha`` *and* its effect size
reaches
the floor, so huge windows do not alarm on negligible shifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from mlpilot.errors import InvalidInputError
from mlpilot.monitor.profiles import CategoricalProfile, ColumnProfile, NumericProfile, SliceKey, slice_label
from mlpilot.monitor.stats import (
    EXACT_KS_MAX_TOTAL,
    FloatArray,
    chi2_contingency,
    ecdf_distances,
    jensen_shannon,
    ks_pvalue,
    normal_sf,
    psi,
)

__all__ = ["DriftConfig", "FeatureDrift", "check_feature", "feature_from_dict"]

NumericTest = Literal["auto", "ks", "wasserstein", "psi"]
CategoricalTest = Literal["auto", "chi2", "jensen_shannon", "psi"]
_HIST_BINS = 30


@dataclass(frozen=True)
class DriftConfig:
    """Every knob of a drift check, with its default. ``compare(..., alpha=0.01)`` overrides one."""

    alpha: float = 0.05
    numeric_test: NumericTest = "auto"
    categorical_test: CategoricalTest = "auto"
    numeric_effect_floor: float = 0.05
    categorical_effect_floor: float = 0.05
    missing_effect_floor: float = 0.05
    psi_threshold: float = 0.2
    multivariate: bool = True
    multivariate_effect_floor: float = 0.1
    min_slice_rows: int = 30
    max_slice_findings: int = 10
    slice_metric: str | None = None
    sketch_size: int = 4096
    window_sketch_size: int = 65536
    window_sample_size: int = 20_000
    top_k: int = 50
    max_segment_values: int = 20
    segment_pairs: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"alpha: expected a level in (0, 1), got {self.alpha}", field="alpha")
        if self.numeric_test not in ("auto", "ks", "wasserstein", "psi"):
            raise InvalidInputError(
                f"numeric_test: expected auto, ks, wasserstein or psi, got {self.numeric_test!r}",
                field="numeric_test",
            )
        if self.categorical_test not in ("auto", "chi2", "jensen_shannon", "psi"):
            raise InvalidInputError(
                f"categorical_test: expected auto, chi2, jensen_shannon or psi, got {self.categorical_test!r}",
                field="categorical_test",
            )
        for name in (
            "numeric_effect_floor",
            "categorical_effect_floor",
            "missing_effect_floor",
            "psi_threshold",
        ):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name}: expected a number >= 0", field=name)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class FeatureDrift:
    """The result of testing one feature (overall, or within one segment when ``segment`` is set)."""

    feature: str
    kind: str
    test: str
    statistic: float
    p_value: float | None
    effect_size: float
    effect_name: str
    threshold: float
    reference_count: int
    current_count: int
    method: str = ""
    q_value: float | None = None
    drifted: bool = False
    missing_reference: float = math.nan
    missing_current: float = math.nan
    missing_p_value: float | None = None
    missing_q_value: float | None = None
    missing_drifted: bool = False
    new_categories: list[str] = field(default_factory=list)
    note: str = ""
    segment: SliceKey = ()
    histogram: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.feature} [{slice_label(self.segment)}]" if self.segment else self.feature

    def to_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else x

        return {
            "feature": self.feature,
            "segment": dict(self.segment),
            "kind": self.kind,
            "test": self.test,
            "method": self.method,
            "statistic": num(self.statistic),
            "p_value": num(self.p_value),
            "q_value": num(self.q_value),
            "effect_size": num(self.effect_size),
            "effect_name": self.effect_name,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "reference_count": self.reference_count,
            "current_count": self.current_count,
            "missing": {
                "reference": num(self.missing_reference),
                "current": num(self.missing_current),
                "p_value": num(self.missing_p_value),
                "q_value": num(self.missing_q_value),
                "drifted": self.missing_drifted,
            },
            "new_categories": list(self.new_categories),
            "note": self.note,
            "histogram": self.histogram,
        }


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def feature_from_dict(data: dict[str, Any]) -> FeatureDrift:
    """Rebuild a :class:`FeatureDrift` from :meth:`FeatureDrift.to_dict` (for stored reports)."""
    missing = data.get("missing") or {}
    return FeatureDrift(
        feature=str(data["feature"]),
        kind=str(data["kind"]),
        test=str(data["test"]),
        statistic=_nan(data.get("statistic")),
        p_value=_opt(data.get("p_value")),
        effect_size=_nan(data.get("effect_size")),
        effect_name=str(data.get("effect_name", "")),
        threshold=float(data["threshold"]),
        reference_count=int(data["reference_count"]),
        current_count=int(data["current_count"]),
        method=str(data.get("method", "")),
        q_value=_opt(data.get("q_value")),
        drifted=bool(data.get("drifted", False)),
        missing_reference=_nan(missing.get("reference")),
        missing_current=_nan(missing.get("current")),
        missing_p_value=_opt(missing.get("p_value")),
        missing_q_value=_opt(missing.get("q_value")),
        missing_drifted=bool(missing.get("drifted", False)),
        new_categories=[str(c) for c in data.get("new_categories", [])],
        note=str(data.get("note", "")),
        segment=tuple((str(k), str(v)) for k, v in (data.get("segment") or {}).items()),
        histogram=dict(data.get("histogram") or {}),
    )


def _missing_test(ref: ColumnProfile, cur: ColumnProfile) -> tuple[float, float, float | None]:
    n1, n2 = ref.count + ref.missing, cur.count + cur.missing
    r1 = ref.missing / n1 if n1 else math.nan
    r2 = cur.missing / n2 if n2 else math.nan
    if not n1 or not n2 or (ref.missing == 0 and cur.missing == 0):
        return r1, r2, None
    pooled = (ref.missing + cur.missing) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return r1, r2, 1.0
    return r1, r2, min(1.0, 2 * normal_sf(abs(r2 - r1) / se))


def _numeric_histogram(ref: NumericProfile, cur: NumericProfile) -> dict[str, Any]:
    lo = min(float(ref.sketch.quantile(0.005)), float(cur.sketch.quantile(0.005)))
    hi = max(float(ref.sketch.quantile(0.995)), float(cur.sketch.quantile(0.995)))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, _HIST_BINS + 1)

    def shares(p: NumericProfile) -> list[float]:
        cdf = p.sketch.cdf(edges)
        cdf[0] = 0.0  # the outer bins collect the tails
        cdf[-1] = 1.0
        return [float(v) for v in np.diff(cdf)]

    return {"kind": "numeric", "edges": edges.tolist(), "reference": shares(ref), "current": shares(cur)}


def _numeric(name: str, ref: NumericProfile, cur: NumericProfile, config: DriftConfig) -> FeatureDrift:
    test = "ks" if config.numeric_test == "auto" else config.numeric_test
    threshold = config.psi_threshold if test == "psi" else config.numeric_effect_floor
    result = FeatureDrift(
        name, "numeric", test, math.nan, None, math.nan, "psi" if test == "psi" else "wasserstein_sd",
        threshold, int(ref.count), int(cur.count),
    )  # fmt: skip
    if ref.count == 0 or cur.count == 0:
        result.test = "none"
        result.note = f"no values in the {'reference' if ref.count == 0 else 'current window'}"
        return result
    ks, w1 = ecdf_distances(ref.sketch.values, ref.sketch.weights, cur.sketch.values, cur.sketch.weights)
    scale = ref.std
    if not scale > 0:
        pooled = ref.merge(cur, size=2)
        scale = pooled.std if pooled.std > 0 else 1.0
    result.histogram = _numeric_histogram(ref, cur)
    if test == "ks":
        exact = ref.sketch.exact and cur.sketch.exact and ref.count + cur.count <= EXACT_KS_MAX_TOTAL
        result.method = "exact" if exact else "asymptotic"
        result.statistic = ks
        result.p_value = ks_pvalue(ks, int(ref.count), int(cur.count), exact=exact)
        result.effect_size = w1 / scale
    elif test == "wasserstein":
        result.statistic = result.effect_size = w1 / scale
    else:
        edges = np.unique(ref.sketch.quantile(np.linspace(0.1, 0.9, 9)))
        expected = np.diff(np.concatenate(([0.0], ref.sketch.cdf(edges), [1.0])))
        actual = np.diff(np.concatenate(([0.0], cur.sketch.cdf(edges), [1.0])))
        result.statistic = result.effect_size = psi(expected, actual)
    return result


def _pool_rare(table: FloatArray) -> FloatArray:
    """Merge columns expected fewer than 5 times into one, so the chi-square approximation holds."""
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    rare = expected.min(axis=0) < 5
    if rare.sum() < 2:
        return table
    return np.column_stack((table[:, ~rare], table[:, rare].sum(axis=1)))


def _chi2_valid(table: FloatArray) -> bool:
    if table.shape[1] < 2:
        return False
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return bool(expected.min() >= 1 and np.mean(expected < 5) <= 0.2)


def _categorical(name: str, ref: CategoricalProfile, cur: CategoricalProfile, config: DriftConfig) -> FeatureDrift:
    threshold = config.psi_threshold if config.categorical_test == "psi" else config.categorical_effect_floor
    effect_name = "psi" if config.categorical_test == "psi" else "jensen_shannon"
    result = FeatureDrift(
        name, "categorical", config.categorical_test, math.nan, None, math.nan,
        effect_name, threshold, int(ref.count), int(cur.count),
    )  # fmt: skip
    if ref.count == 0 or cur.count == 0:
        result.test = "none"
        result.note = f"no values in the {'reference' if ref.count == 0 else 'current window'}"
        return result
    known = ref.categories.counts
    new = sorted(k for k in cur.categories.counts if k not in known)
    result.new_categories = new
    labels = [*known, *(new if ref.categories.other == 0 else [])]
    cur_counts = [cur.categories.counts.get(k, 0.0) for k in labels]
    cur_other = cur.categories.other + sum(v for k, v in cur.categories.counts.items() if k not in labels)
    table = np.array(
        [[*(known.get(k, 0.0) for k in labels), ref.categories.other], [*cur_counts, cur_other]],
        dtype=np.float64,
    )
    table = table[:, table.sum(axis=0) > 0]
    order = np.argsort([-known.get(k, 0.0) for k in labels], kind="stable")[:_HIST_BINS]
    result.histogram = {
        "kind": "categorical",
        "labels": [labels[i] for i in order],
        "reference": [known.get(labels[i], 0.0) / ref.count for i in order],
        "current": [cur_counts[i] / cur.count for i in order],
    }
    distance = jensen_shannon(table[0], table[1])
    test = config.categorical_test
    pooled = _pool_rare(table)
    if test == "auto":
        test = "chi2" if _chi2_valid(pooled) else "jensen_shannon"
    result.test = test
    if test == "chi2":
        stat, p, dof = chi2_contingency(pooled)
        result.statistic, result.p_value, result.method = stat, p, f"dof={dof}"
        result.effect_size = distance
    elif test == "jensen_shannon":
        result.statistic = result.effect_size = distance
    else:
        result.statistic = result.effect_size = psi(table[0], table[1])
    return result


def check_feature(
    name: str, reference: ColumnProfile, current: ColumnProfile, config: DriftConfig, segment: SliceKey = ()
) -> FeatureDrift:
    """Test one feature; the caller applies the false-alarm procedure (``q_value`` and ``drifted``)."""
    if isinstance(reference, NumericProfile) and isinstance(current, NumericProfile):
        result = _numeric(name, reference, current, config)
    elif isinstance(reference, CategoricalProfile) and isinstance(current, CategoricalProfile):
        result = _categorical(name, reference, current, config)
    else:
        raise InvalidInputError(
            f"column {name!r}: {reference.kind} in the reference but {current.kind} in the current window",
            field=name,
        )
    result.segment = segment
    result.missing_reference, result.missing_current, result.missing_p_value = _missing_test(reference, current)
    if result.p_value is None and result.test != "none":
        # Effect-size-only tests decide on their own; they are not part of the p-value family.
        result.drifted = result.effect_size >= result.threshold
    return result
