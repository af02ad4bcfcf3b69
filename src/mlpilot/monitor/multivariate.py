"""Multivariate drift: PCA reconstruction error, calibrated on held-out reference rows.

Univariate tests cannot see a change in how features move together (two features that were correlated become
independent while each keeps its distribution). PCA fitted on standardized reference rows keeps the components
explaining 90% of the variance; a row's reconstruction error is the squared distance to that subspace. When
the
correlation structure changes, current rows fall off the subspace and the mean error rises.

To avoid the in-sample bias of PCA (the fitted rows reconstruct better than new ones), the reference row
sample
is split in two with a seeded permutation: one half fits the PCA, the other is the null sample of errors. The
test
is a one-sided Welch z-test of "current mean error > held-out mean error"; the effect size is the relative
rise of
the mean error. Missing values are imputed with the reference mean; constant columns are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpilot.monitor.profiles import RowSample
from mlpilot.monitor.stats import FloatArray, normal_sf

__all__ = ["MultivariateDrift", "multivariate_from_dict", "pca_drift"]

_VARIANCE_KEPT = 0.9
_MIN_REFERENCE_ROWS = 40
_MIN_CURRENT_ROWS = 20


@dataclass
class MultivariateDrift:
    """Result of the PCA reconstruction-error test."""

    statistic: float
    p_value: float | None
    effect_size: float
    threshold: float
    reference_error: float
    current_error: float
    components: int
    features: list[str] = field(default_factory=list)
    reference_rows: int = 0
    current_rows: int = 0
    q_value: float | None = None
    drifted: bool = False
    note: str = ""
    test: str = "pca_reconstruction"

    def to_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else x

        return {
            "test": self.test,
            "statistic": num(self.statistic),
            "p_value": num(self.p_value),
            "q_value": num(self.q_value),
            "effect_size": num(self.effect_size),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "reference_error": num(self.reference_error),
            "current_error": num(self.current_error),
            "components": self.components,
            "features": self.features,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "note": self.note,
        }


def multivariate_from_dict(data: dict[str, Any]) -> MultivariateDrift:
    """Rebuild a :class:`MultivariateDrift` from its ``to_dict()``."""

    def nan(x: Any) -> float:
        return math.nan if x is None else float(x)

    return MultivariateDrift(
        statistic=nan(data.get("statistic")),
        p_value=None if data.get("p_value") is None else float(data["p_value"]),
        effect_size=nan(data.get("effect_size")),
        threshold=float(data["threshold"]),
        reference_error=nan(data.get("reference_error")),
        current_error=nan(data.get("current_error")),
        components=int(data.get("components", 0)),
        features=[str(f) for f in data.get("features", [])],
        reference_rows=int(data.get("reference_rows", 0)),
        current_rows=int(data.get("current_rows", 0)),
        q_value=None if data.get("q_value") is None else float(data["q_value"]),
        drifted=bool(data.get("drifted", False)),
        note=str(data.get("note", "")),
        test=str(data.get("test", "pca_reconstruction")),
    )


def _skipped(note: str, threshold: float) -> MultivariateDrift:
    return MultivariateDrift(math.nan, None, math.nan, threshold, math.nan, math.nan, 0, note=note)


def pca_drift(reference: RowSample, current: RowSample, *, threshold: float, seed: int) -> MultivariateDrift:
    """Compare the reconstruction error of ``current`` rows with held-out ``reference`` rows."""
    names = [c for c in reference.columns if c in current.columns]
    ref = reference.rows[:, [reference.columns.index(c) for c in names]]
    cur = current.rows[:, [current.columns.index(c) for c in names]]
    if ref.shape[0] < _MIN_REFERENCE_ROWS:
        return _skipped(f"needs at least {_MIN_REFERENCE_ROWS} reference rows, got {ref.shape[0]}", threshold)
    if cur.shape[0] < _MIN_CURRENT_ROWS:
        return _skipped(f"needs at least {_MIN_CURRENT_ROWS} current rows, got {cur.shape[0]}", threshold)
    order = np.random.default_rng(seed).permutation(ref.shape[0])
    fit, held = ref[order[: ref.shape[0] // 2]], ref[order[ref.shape[0] // 2 :]]
    with np.errstate(invalid="ignore"):
        present = np.sum(~np.isnan(fit), axis=0)
        mean = np.nansum(fit, axis=0) / np.maximum(present, 1)
        sd = np.sqrt(np.nansum((fit - mean) ** 2, axis=0) / np.maximum(present, 1))
    usable = (present > 1) & (sd > 0)
    if usable.sum() < 2:
        return _skipped("needs at least two non-constant numeric features", threshold)
    mean, sd = mean[usable], sd[usable]
    names = [n for n, ok in zip(names, usable, strict=True) if ok]

    def standardize(x: FloatArray) -> FloatArray:
        z: FloatArray = x[:, usable]  # a copy (fancy indexing): safe to work in place below
        z -= mean
        z /= sd
        np.nan_to_num(z, copy=False, nan=0.0)
        return z

    z_fit = standardize(fit)
    eigenvalues, vectors = np.linalg.eigh(z_fit.T @ z_fit / max(z_fit.shape[0] - 1, 1))
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    k = int(np.clip(np.searchsorted(share, _VARIANCE_KEPT) + 1, 1, len(names) - 1))
    basis = vectors[:, :k]

    def errors(x: FloatArray) -> FloatArray:
        z = standardize(x)
        projected = z @ basis
        return np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", projected, projected)  # type: ignore[no-any-return]

    e_ref, e_cur = errors(held), errors(cur)
    m_ref, m_cur = float(e_ref.mean()), float(e_cur.mean())
    se = math.sqrt(e_ref.var(ddof=1) / e_ref.size + e_cur.var(ddof=1) / e_cur.size)
    z_stat = (m_cur - m_ref) / se if se > 0 else 0.0
    return MultivariateDrift(
        statistic=z_stat,
        p_value=normal_sf(z_stat),
        effect_size=m_cur / m_ref - 1 if m_ref > 0 else math.inf if m_cur > 0 else 0.0,
        threshold=threshold,
        reference_error=m_ref,
        current_error=m_cur,
        components=k,
        features=names,
        reference_rows=int(e_ref.size),
        current_rows=int(e_cur.size),
    )
