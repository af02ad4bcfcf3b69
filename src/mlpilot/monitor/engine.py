"""``compare(reference, current)``: the drift check, end to end.

The reference is a table or a stored :class:`~mlpilot.monitor.profiles.Profile`; the current window is a table
(or a profile of one). Both are reduced to profiles (the window with a much finer sketch, so tests on it are
exact up to 65,536 distinct values), every test runs on the profiles, all p-values go through one
Benjamini-Hochberg family, and the result is a :class:`~mlpilot.monitor.report.DriftReport`::

    >>> import numpy as np
    >>> from mlpilot.monitor import compare
    >>> rng = np.random.default_rng(0)
    >>> ref = {"x": rng.normal(size=2000), "y": rng.normal(size=2000)}
    >>> cur = {"x": rng.normal(0.5, size=2000), "y": rng.normal(size=2000)}
    >>> compare(ref, cur).drifted_features
    ['x']
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.monitor.drift import DriftConfig, FeatureDrift, check_feature
from mlpilot.monitor.fdr import benjamini_hochberg
from mlpilot.monitor.multivariate import MultivariateDrift, pca_drift
from mlpilot.monitor.performance import Task
from mlpilot.monitor.profiles import (
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    Profile,
    ProfileOptions,
    Roles,
    _load,
    build_profile,
    slice_label,
)
from mlpilot.monitor.report import DriftReport, PerformanceSummary, SegmentDrift
from mlpilot.monitor.sketch import CategoryCounts, NumericSketch
from mlpilot.monitor.slices import find_slices

__all__ = ["compare"]


def _config(config: DriftConfig | None, overrides: dict[str, Any]) -> DriftConfig:
    base = config or DriftConfig()
    unknown = sorted(set(overrides) - DriftConfig.field_names())
    if unknown:
        raise InvalidInputError(
            f"compare: unknown option(s) {unknown}; expected keyword arguments of DriftConfig",
            field=unknown[0],
        )
    return replace(base, **overrides)


def _absent(like: ColumnProfile, rows: int) -> ColumnProfile:
    """The profile of a column missing from a window: every row missing."""
    if isinstance(like, NumericProfile):
        return NumericProfile(0.0, float(rows), math.nan, 0.0, math.nan, math.nan, NumericSketch.empty())
    return CategoricalProfile(0.0, float(rows), CategoryCounts())


def _test_columns(
    reference: Profile,
    current: Profile,
    names: Sequence[str],
    config: DriftConfig,
    segment: tuple[Any, ...] = (),
) -> dict[str, FeatureDrift]:
    out: dict[str, FeatureDrift] = {}
    for name in names:
        ref_col = reference.columns[name]
        cur_col = current.columns.get(name) or _absent(ref_col, current.rows)
        result = check_feature(name, ref_col, cur_col, config, segment)
        if name not in current.columns:
            result.note = "column missing from the current window"
        out[name] = result
    return out


def _apply_fdr(results: list[FeatureDrift], multivariate: MultivariateDrift | None, config: DriftConfig) -> None:
    """One Benjamini-Hochberg family for every p-value of the check, then the effect-size floors."""
    entries: list[tuple[float, Any, str]] = []
    for r in results:
        if r.p_value is not None:
            entries.append((r.p_value, r, "distribution"))
        if r.missing_p_value is not None:
            entries.append((r.missing_p_value, r, "missing"))
    if multivariate is not None and multivariate.p_value is not None:
        entries.append((multivariate.p_value, multivariate, "multivariate"))
    q_values = benjamini_hochberg([p for p, _, _ in entries])
    for q, (_, target, what) in zip(q_values, entries, strict=True):
        if what == "distribution":
            target.q_value = q
            target.drifted = q <= config.alpha and target.effect_size >= target.threshold
        elif what == "missing":
            target.missing_q_value = q
            change = abs(target.missing_current - target.missing_reference)
            target.missing_drifted = q <= config.alpha and change >= config.missing_effect_floor
        else:
            target.q_value = q
            target.drifted = q <= config.alpha and target.effect_size >= target.threshold


def _performance(reference: Profile, current: Profile, config: DriftConfig) -> PerformanceSummary | None:
    if current.performance is None or current.performance.n == 0:
        return None
    summary = PerformanceSummary(current.performance.task, current.performance.metrics(seed=config.seed))
    if reference.performance is not None and reference.performance.task == current.performance.task:
        summary.reference = reference.performance.metrics(seed=config.seed)
    for key, sub in current.slices.items():
        if len(key) != 1 or sub.performance is None or sub.performance.n == 0:
            continue
        summary.by_segment[slice_label(key)] = sub.performance.metrics(seed=config.seed)
        ref_sub = reference.slices.get(key)
        if ref_sub is not None and ref_sub.performance is not None and ref_sub.performance.n:
            summary.reference_by_segment[slice_label(key)] = ref_sub.performance.metrics(seed=config.seed)
    return summary


def compare(
    reference: Any,
    current: Any,
    *,
    segments: Sequence[str] | None = None,
    prediction: str | None = None,
    target: str | None = None,
    score: str | None = None,
    features: Sequence[str] | None = None,
    categorical: Collection[str] = (),
    task: Task | None = None,
    positive_label: str | None = None,
    config: DriftConfig | None = None,
    **options: Any,
) -> DriftReport:
    """Check ``current`` against ``reference`` and return a :class:`DriftReport`.

    ``reference``: a pandas/polars/Arrow table, a dict of arrays, or a stored :class:`Profile` (its
    prediction,
    target and segments are used unless given here). ``current``: the window to check, same kinds of input.
    ``segments``: categorical fields to test and slice by; ``prediction``/``target``/``score``: the model's
    output,
    the label (enables performance metrics) and the positive-class probability (enables ROC AUC and log loss).
    Any :class:`DriftConfig` field may be passed as a keyword (``alpha=0.01``, ``numeric_test="psi"``, ...).
    """
    cfg = _config(config, options)
    notes: list[str] = []
    segs = list(segments or [])
    if isinstance(reference, Profile):
        ref = reference
        if segments is None:
            segs = list(ref.segments)
        prediction = prediction or ref.prediction
        target = target or ref.target
        score = score or ref.score
        missing = [s for s in segs if s not in ref.segments]
        if missing:
            # Fields the reference never saw (e.g. sent only with requests): the window is still sliced by
            # them, and each slice compared with the rest of the window instead of with the reference.
            notes.append(
                f"segments {missing} are not in the reference profile: their slices are compared with the rest "
                "of the window"
            )
    else:
        table = _load(
            reference, categorical=[*categorical, *segs], features=features, roles=(prediction, target, score)
        )
        ref = build_profile(
            table,
            roles=Roles(prediction, target, score, task, positive_label),
            segments=segs,
            options=ProfileOptions(
                sketch_size=cfg.sketch_size,
                top_k=cfg.top_k,
                max_segment_values=cfg.max_segment_values,
                segment_pairs=cfg.segment_pairs,
                seed=cfg.seed,
            ),
        )
    for role, name in (("prediction", prediction), ("score", score)):
        if name is None or name in ref.columns:
            continue
        if not isinstance(reference, Profile):
            raise InvalidInputError(f"{role}: column {name!r} is not in the reference", field=role)
        # A stored profile without the model's outputs (no model to run on the training sample): performance
        # is still measured on the window, only the output's drift is not tested.
        notes.append(f"{role} column {name!r} is not in the reference profile: its drift is not tested")
    if isinstance(current, Profile):
        cur = current
    else:
        kinds = {name: col.kind for name, col in ref.columns.items()}
        # No `features` filter here: a feature absent from the window is reported as missing, not rejected.
        table = _load(current, categorical=segs, features=None, roles=(prediction, target, score), kinds=kinds)
        keep = set(ref.columns) | {prediction, target, score, *segs}
        extra = sorted(set(table.columns) - keep)
        if extra:
            notes.append(f"columns not in the reference were ignored: {', '.join(extra)}")
            table.columns = {k: v for k, v in table.columns.items() if k in keep}
        for name in segs:
            if name not in table.columns:
                raise InvalidInputError(f"segments: column {name!r} is not in the current window", field="segments")
        window = ProfileOptions(
            sketch_size=cfg.window_sketch_size,
            top_k=max(cfg.top_k, 1000),
            sample_size=cfg.window_sample_size,
            max_segment_values=cfg.max_segment_values,
            slice_sketch_size=cfg.window_sketch_size,
            segment_pairs=cfg.segment_pairs,
            seed=cfg.seed,
        )
        cur = build_profile(
            table,
            roles=Roles(prediction, target, score, task or ref.task, positive_label),
            segments=segs,
            options=window,
        )
    if cur.rows == 0:
        notes.append("the current window is empty: nothing was tested")
    roles = {prediction, target, score}
    names = [n for n in ref.columns if n not in roles]
    tested: dict[str, FeatureDrift] = {}
    pred_result: FeatureDrift | None = None
    segment_results: list[SegmentDrift] = []
    multivariate: MultivariateDrift | None = None
    if cur.rows > 0:
        tested = _test_columns(ref, cur, names, cfg)
        if prediction is not None and prediction in ref.columns and prediction in cur.columns:
            pred_result = _test_columns(ref, cur, [prediction], cfg)[prediction]
        for key, sub in cur.slices.items():
            ref_sub = ref.slices.get(key)
            if len(key) != 1 or ref_sub is None or min(sub.rows, ref_sub.rows) < cfg.min_slice_rows:
                continue
            sub_names = [n for n in ref_sub.columns if n not in roles and n in sub.columns]
            segment_results.append(
                SegmentDrift(key, ref_sub.rows, sub.rows, _test_columns(ref_sub, sub, sub_names, cfg, key))
            )
        if cfg.multivariate and ref.sample is not None and cur.sample is not None:
            multivariate = pca_drift(ref.sample, cur.sample, threshold=cfg.multivariate_effect_floor, seed=cfg.seed)
    family = list(tested.values()) + ([pred_result] if pred_result else [])
    family += [f for s in segment_results for f in s.features.values()]
    _apply_fdr(family, multivariate, cfg)
    return DriftReport(
        reference_rows=ref.rows,
        current_rows=cur.rows,
        features=tested,
        config=cfg,
        prediction=pred_result,
        multivariate=multivariate,
        segments=segment_results,
        performance=_performance(ref, cur, cfg),
        slices=find_slices(ref, cur, cfg) if cur.rows else [],
        notes=notes,
    )
