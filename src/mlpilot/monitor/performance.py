"""Model performance from predictions and labels, with confidence intervals, in pure NumPy.

Performance is first reduced to mergeable sufficient statistics (:class:`PerformanceStats`: a confusion
matrix,
score sketches per class, sums of per-row losses), so a stored reference profile can carry its performance and
windows can be combined. Metrics and 95% intervals are derived from those statistics:

- accuracy, binary precision and recall: Wilson score intervals;
- F1 and macro-averaged metrics: a seeded multinomial bootstrap over the confusion matrix cells;
- ROC AUC: Hanley & McNeil's standard error; log loss, MAE: normal intervals on the mean per-row loss;
- RMSE: the square root of the normal interval on the mean squared error.

Example::

    >>> import numpy as np
    >>> from mlpilot.monitor.performance import PerformanceStats
    >>> stats = PerformanceStats.from_arrays(np.array(["a", "b", "a"]), np.array(["a", "b", "b"]))
    >>> m = stats.metrics()["accuracy"]
    >>> round(m.value, 3), m.n
    (0.667, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlpilot.errors import InvalidInputError
from mlpilot.monitor.sketch import NumericSketch
from mlpilot.monitor.stats import FloatArray, normal_ppf

__all__ = ["MetricValue", "Moments", "PerformanceStats", "infer_task", "label_strings"]

Task = Literal["classification", "regression"]
_Z95 = normal_ppf(0.975)
_BOOTSTRAP = 400
_SCORE_SKETCH = 2048
_MAX_LABELS = 200


@dataclass(frozen=True)
class MetricValue:
    """A metric with its 95% confidence interval and the number of rows behind it."""

    name: str
    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None  # JSON has no NaN or infinity

        return {"name": self.name, "value": num(self.value), "low": num(self.low), "high": num(self.high), "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricValue:
        def nan(x: Any) -> float:
            return math.nan if x is None else float(x)

        return cls(
            str(data["name"]), nan(data.get("value")), nan(data.get("low")), nan(data.get("high")), int(data["n"])
        )

    @property
    def se(self) -> float:
        """Standard error implied by the interval (for combining differences)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return math.inf
        return (self.high - self.low) / (2 * _Z95)


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of a per-row quantity."""

    n: float = 0.0
    total: float = 0.0
    squares: float = 0.0

    @classmethod
    def of(cls, values: FloatArray) -> Moments:
        return cls(float(values.size), float(values.sum()), float(np.square(values).sum()))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.squares + other.squares)

    def __sub__(self, other: Moments) -> Moments:
        return Moments(self.n - other.n, self.total - other.total, self.squares - other.squares)

    def mean_interval(self) -> tuple[float, float, float]:
        if self.n == 0:
            return math.nan, math.nan, math.nan
        mean = self.total / self.n
        if self.n < 2:
            return mean, -math.inf, math.inf
        var = max(0.0, (self.squares - self.n * mean * mean) / (self.n - 1))
        half = _Z95 * math.sqrt(var / self.n)
        return mean, mean - half, mean + half

    def to_list(self) -> list[float]:
        return [self.n, self.total, self.squares]


def _wilson(successes: float, n: float) -> tuple[float, float, float]:
    if n <= 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    denom = 1 + _Z95**2 / n
    centre = (p + _Z95**2 / (2 * n)) / denom
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def label_strings(values: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """Class labels as strings; integral floats print without a decimal point, missing stays None."""
    out = np.empty(values.size, dtype=object)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        integral = finite & (values == np.round(values))
        out[integral] = [str(int(v)) for v in values[integral]]
        rest = finite & ~integral
        out[rest] = [repr(float(v)) for v in values[rest]]
        out[~finite] = None
        return out
    if values.dtype.kind == "b":
        out[:] = np.where(values, "true", "false")  # the spelling Arrow gives booleans read as categories
        return out
    out[:] = [None if v is None else str(v) for v in values.tolist()]
    return out


def infer_task(target: npt.NDArray[Any]) -> Task:
    """Regression for non-integral numbers or more than 20 distinct integers, else classification."""
    if target.dtype.kind != "f":
        return "classification"
    finite = target[np.isfinite(target)]
    if finite.size and (np.any(finite != np.round(finite)) or np.unique(finite).size > 20):
        return "regression"
    return "classification"


def _default_positive(labels: tuple[str, ...]) -> str | None:
    lowered = {label.lower(): label for label in labels}
    for candidate in ("1", "true", "yes", "positive"):
        if candidate in lowered and len(labels) <= 2:
            return lowered[candidate]
    return sorted(labels)[-1] if len(labels) == 2 else None


def _auc(pos: NumericSketch, neg: NumericSketch) -> float:
    """P(score of a positive > score of a negative) + half the ties, from two weighted samples."""
    if pos.total == 0 or neg.total == 0:
        return math.nan
    cum_neg = np.concatenate(([0.0], np.cumsum(neg.weights)))
    below = cum_neg[np.searchsorted(neg.values, pos.values, side="left")]
    at_or_below = cum_neg[np.searchsorted(neg.values, pos.values, side="right")]
    wins = float((pos.weights * (below + 0.5 * (at_or_below - below))).sum())
    return wins / (pos.total * neg.total)


@dataclass(frozen=True)
class PerformanceStats:
    """Mergeable sufficient statistics of a model's performance on one set of rows."""

    task: Task
    n: int
    labels: tuple[str, ...] = ()
    confusion: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    positive: str | None = None
    log_loss: Moments | None = None
    pos_scores: NumericSketch | None = None
    neg_scores: NumericSketch | None = None
    abs_error: Moments | None = None
    sq_error: Moments | None = None

    @classmethod
    def from_arrays(
        cls,
        target: npt.NDArray[Any],
        prediction: npt.NDArray[Any],
        score: FloatArray | None = None,
        *,
        task: Task | None = None,
        positive: str | None = None,
    ) -> PerformanceStats:
        """Statistics over the rows where both the label and the prediction are present.

        Classification labels may be strings or numbers; ``score`` is the predicted probability of the
        positive
        class (binary only) and enables ROC AUC and log loss.
        """
        task = task or infer_task(target)
        if task == "regression":
            y = np.asarray(target, dtype=np.float64)
            p = np.asarray(prediction, dtype=np.float64)
            ok = np.isfinite(y) & np.isfinite(p)
            err = p[ok] - y[ok]
            return cls("regression", int(ok.sum()), abs_error=Moments.of(np.abs(err)), sq_error=Moments.of(err**2))
        y_s = label_strings(np.asarray(target))
        p_s = label_strings(np.asarray(prediction))
        ok = np.array([a is not None and b is not None for a, b in zip(y_s, p_s, strict=True)], dtype=bool)
        y_s, p_s = y_s[ok], p_s[ok]
        labels = tuple(sorted(set(y_s.tolist()) | set(p_s.tolist())))
        if len(labels) > _MAX_LABELS:
            raise InvalidInputError(
                f"target: expected at most {_MAX_LABELS} classes for classification, got {len(labels)}; "
                "pass task='regression' for a continuous target",
                field="target",
            )
        index = {label: i for i, label in enumerate(labels)}
        yi = np.array([index[v] for v in y_s], dtype=np.int64)
        pi = np.array([index[v] for v in p_s], dtype=np.int64)
        k = len(labels)
        confusion = np.bincount(yi * k + pi, minlength=k * k).astype(np.float64).reshape(k, k)
        positive = positive if positive is not None else _default_positive(labels)
        stats = cls("classification", int(ok.sum()), labels, confusion, positive)
        if score is not None and positive is not None:
            s = np.asarray(score, dtype=np.float64)[ok]
            valid = np.isfinite(s)
            is_pos = y_s[valid] == positive
            s = s[valid]
            clipped = np.clip(s, 1e-15, 1 - 1e-15)
            losses = -np.where(is_pos, np.log(clipped), np.log1p(-clipped))
            stats = PerformanceStats(
                "classification",
                stats.n,
                labels,
                confusion,
                positive,
                Moments.of(losses),
                NumericSketch.from_values(s[is_pos], _SCORE_SKETCH),
                NumericSketch.from_values(s[~is_pos], _SCORE_SKETCH),
            )
        return stats

    def merge(self, other: PerformanceStats) -> PerformanceStats:
        if self.task != other.task:
            raise InvalidInputError(f"performance: cannot merge {self.task} with {other.task}", field="task")
        if self.task == "regression":
            assert self.abs_error is not None
            assert other.abs_error is not None
            assert self.sq_error is not None
            assert other.sq_error is not None
            return PerformanceStats(
                "regression",
                self.n + other.n,
                abs_error=self.abs_error + other.abs_error,
                sq_error=self.sq_error + other.sq_error,
            )
        labels = tuple(sorted(set(self.labels) | set(other.labels)))
        k = len(labels)
        confusion = np.zeros((k, k))
        for part in (self, other):
            idx = np.array([labels.index(lb) for lb in part.labels], dtype=np.int64)
            if idx.size:
                confusion[np.ix_(idx, idx)] += part.confusion
        both = self.log_loss is not None and other.log_loss is not None
        return PerformanceStats(
            "classification",
            self.n + other.n,
            labels,
            confusion,
            self.positive if self.positive is not None else other.positive,
            (self.log_loss + other.log_loss) if both else None,  # type: ignore[operator]
            self.pos_scores.merge(other.pos_scores, _SCORE_SKETCH) if both else None,  # type: ignore[union-attr,arg-type]
            self.neg_scores.merge(other.neg_scores, _SCORE_SKETCH) if both else None,  # type: ignore[union-attr,arg-type]
        )

    def without(self, part: PerformanceStats) -> PerformanceStats:
        """Statistics of the rows not in ``part`` (a subset of these rows); score-based metrics are
        dropped."""
        if self.task == "regression":
            assert self.abs_error is not None
            assert self.sq_error is not None
            assert part.abs_error is not None
            assert part.sq_error is not None
            return PerformanceStats(
                "regression",
                self.n - part.n,
                abs_error=self.abs_error - part.abs_error,
                sq_error=self.sq_error - part.sq_error,
            )
        confusion = self.confusion.copy()
        idx = np.array([self.labels.index(lb) for lb in part.labels], dtype=np.int64)
        if idx.size:
            confusion[np.ix_(idx, idx)] -= part.confusion
        return PerformanceStats("classification", self.n - part.n, self.labels, confusion, self.positive)

    # --- metrics --------------------------------------------------------------------------------------------

    def metrics(self, *, seed: int = 0) -> dict[str, MetricValue]:
        """Every metric these statistics support, by name."""
        if self.n == 0:
            return {}
        if self.task == "regression":
            assert self.abs_error is not None
            assert self.sq_error is not None
            mae = self.abs_error.mean_interval()
            mse = self.sq_error.mean_interval()
            rmse = (math.sqrt(mse[0]), math.sqrt(max(mse[1], 0.0)), math.sqrt(max(mse[2], 0.0)))
            return {
                "mae": MetricValue("mae", *mae, self.n),
                "rmse": MetricValue("rmse", *rmse, self.n),
            }
        out: dict[str, MetricValue] = {}
        c = self.confusion
        out["accuracy"] = MetricValue("accuracy", *_wilson(float(np.trace(c)), float(c.sum())), self.n)
        boot = self._bootstrap(seed)
        binary = self.positive is not None and self.positive in self.labels
        if binary:
            assert self.positive is not None
            p = self.labels.index(self.positive)
            tp, fp, fn = c[p, p], c[:, p].sum() - c[p, p], c[p, :].sum() - c[p, p]
            out["precision"] = MetricValue("precision", *_wilson(tp, tp + fp), int(tp + fp))
            out["recall"] = MetricValue("recall", *_wilson(tp, tp + fn), int(tp + fn))
            f1 = _f1_binary(c[None, :, :], p)
            out["f1"] = MetricValue("f1", float(f1[0]), *_percentiles(_f1_binary(boot, p)), self.n)
        elif len(self.labels) > 1:
            for name, fn_ in (("precision", _macro_precision), ("recall", _macro_recall), ("f1", _macro_f1)):
                value = float(fn_(c[None, :, :])[0])
                out[name] = MetricValue(name, value, *_percentiles(fn_(boot)), self.n)
        if self.log_loss is not None and self.log_loss.n > 0:
            out["log_loss"] = MetricValue("log_loss", *self.log_loss.mean_interval(), int(self.log_loss.n))
        if self.pos_scores is not None and self.neg_scores is not None:
            auc = _auc(self.pos_scores, self.neg_scores)
            if math.isfinite(auc):
                n1, n2 = self.pos_scores.total, self.neg_scores.total
                q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
                var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n2 - 1) * (q2 - auc**2)) / (n1 * n2)
                half = _Z95 * math.sqrt(max(var, 0.0))
                out["roc_auc"] = MetricValue("roc_auc", auc, max(0.0, auc - half), min(1.0, auc + half), int(n1 + n2))
        return out

    def _bootstrap(self, seed: int) -> npt.NDArray[np.float64]:
        rng = np.random.default_rng(seed)
        cells = self.confusion.ravel()
        draws = rng.multinomial(int(cells.sum()), cells / cells.sum(), size=_BOOTSTRAP)
        k = self.confusion.shape[0]
        return draws.reshape(_BOOTSTRAP, k, k).astype(np.float64)

    # --- serialization --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task": self.task, "n": self.n}
        if self.task == "regression":
            assert self.abs_error is not None
            assert self.sq_error is not None
            data.update(abs_error=self.abs_error.to_list(), sq_error=self.sq_error.to_list())
            return data
        data.update(labels=list(self.labels), confusion=self.confusion.tolist(), positive=self.positive)
        if self.log_loss is not None and self.pos_scores is not None and self.neg_scores is not None:
            data.update(
                log_loss=self.log_loss.to_list(),
                pos_scores=self.pos_scores.to_dict(),
                neg_scores=self.neg_scores.to_dict(),
            )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerformanceStats:
        task = data.get("task")
        if task == "regression":
            return cls(
                "regression",
                int(data["n"]),
                abs_error=Moments(*data["abs_error"]),
                sq_error=Moments(*data["sq_error"]),
            )
        if task != "classification":
            raise InvalidInputError(f"performance.task: expected classification or regression, got {task!r}")
        labels = tuple(str(v) for v in data["labels"])
        confusion = np.asarray(data["confusion"], dtype=np.float64).reshape(len(labels), len(labels))
        scored = "log_loss" in data
        return cls(
            "classification",
            int(data["n"]),
            labels,
            confusion,
            data.get("positive"),
            Moments(*data["log_loss"]) if scored else None,
            NumericSketch.from_dict(data["pos_scores"]) if scored else None,
            NumericSketch.from_dict(data["neg_scores"]) if scored else None,
        )


def _percentiles(samples: npt.NDArray[np.float64]) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _safe_div(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def _f1_binary(c: npt.NDArray[np.float64], p: int) -> npt.NDArray[np.float64]:
    tp = c[:, p, p]
    denom = 2 * tp + (c[:, :, p].sum(axis=1) - tp) + (c[:, p, :].sum(axis=1) - tp)
    return _safe_div(2 * tp, denom)


def _per_class(c: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    tp = np.diagonal(c, axis1=1, axis2=2)
    return tp, c.sum(axis=1), c.sum(axis=2)  # tp, predicted per class, true per class


def _macro_precision(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    tp, predicted, _ = _per_class(c)
    return _safe_div(tp, predicted).mean(axis=1)  # type: ignore[no-any-return]


def _macro_recall(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    tp, _, actual = _per_class(c)
    return _safe_div(tp, actual).mean(axis=1)  # type: ignore[no-any-return]


def _macro_f1(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    tp, predicted, actual = _per_class(c)
    return _safe_div(2 * tp, predicted + actual).mean(axis=1)  # type: ignore[no-any-return]
