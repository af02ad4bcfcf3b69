"""Reference profiles: everything a drift check needs from a dataset, computed once and stored as a JSON dict.

A :class:`Profile` holds, per numeric column, summary statistics and a quantile sketch (exact for small data);
per categorical column, the top-K value counts and an ``other`` bucket; missing counts everywhere; a bounded
uniform sample of rows for the multivariate detector; the performance statistics when a target and a
prediction
are named; and the same (without the row sample) for each segment slice (``region=EU``, ``region=EU &
plan=basic``).
Profiles merge (``a.merge(b)`` summarizes the concatenated data) and round-trip through
:meth:`Profile.to_dict`::

    >>> import numpy as np
    >>> from mlpilot.monitor import Profile, profile
    >>> ref = profile({"age": np.arange(100.0), "plan": np.array(["basic", "pro"] * 50)})
    >>> ref.columns["age"].mean, ref.columns["plan"].categories.counts
    (49.5, {'basic': 50.0, 'pro': 50.0})
    >>> Profile.from_dict(ref.to_dict()).rows
    100
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlpilot.errors import InvalidInputError
from mlpilot.monitor._table import CategoricalColumn, IntArray, NumericColumn, Table, release_arrow_memory, to_table
from mlpilot.monitor.performance import PerformanceStats, Task, infer_task
from mlpilot.monitor.sketch import CategoryCounts, NumericSketch
from mlpilot.monitor.stats import FloatArray

__all__ = [
    "CategoricalProfile",
    "ColumnProfile",
    "NumericProfile",
    "Profile",
    "ProfileOptions",
    "RowSample",
    "SliceKey",
    "profile",
    "slice_label",
]

FORMAT = "mlpilot.profile/1"
_PARALLEL_CELLS = 2_000_000
_WORKERS = min(4, os.cpu_count() or 1)
SliceKey = tuple[tuple[str, str], ...]


def slice_label(key: SliceKey) -> str:
    """``region=EU & plan=basic``."""
    return " & ".join(f"{k}={v}" for k, v in key)


@dataclass(frozen=True)
class ProfileOptions:
    """How much a profile keeps. The defaults suit stored reference profiles."""

    sketch_size: int | None = 4096
    top_k: int = 50
    sample_size: int = 5000
    max_segment_values: int = 20
    slice_sketch_size: int | None = 512
    segment_pairs: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("top_k", "sample_size", "max_segment_values"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name}: expected a non-negative integer", field=name)
        for name in ("sketch_size", "slice_sketch_size"):
            size = getattr(self, name)
            if size is not None and size < 2:
                raise InvalidInputError(f"{name}: expected an integer >= 2 or None, got {size}", field=name)


@dataclass(frozen=True)
class NumericProfile:
    count: float
    missing: float
    mean: float
    m2: float
    min: float
    max: float
    sketch: NumericSketch

    kind: Literal["numeric"] = "numeric"

    @property
    def std(self) -> float:
        """Population standard deviation of the present values."""
        return math.sqrt(self.m2 / self.count) if self.count > 0 else math.nan

    @property
    def missing_rate(self) -> float:
        rows = self.count + self.missing
        return self.missing / rows if rows else math.nan

    @classmethod
    def of(cls, values: FloatArray, size: int | None) -> NumericProfile:
        # One sort serves everything: NaN sorts last, so the present values are a prefix view.
        ordered = np.sort(values)
        present = ordered[: int(np.searchsorted(ordered, np.nan, side="left"))]
        missing = float(values.size - present.size)
        if present.size == 0:
            return cls(0.0, missing, math.nan, 0.0, math.nan, math.nan, NumericSketch.empty())
        mean = float(present.mean())
        centered = present - mean
        m2 = float(np.square(centered).sum())  # not np.dot: BLAS threads cost more than they save here
        sketch = NumericSketch.from_sorted(present, size)
        return cls(float(present.size), missing, mean, m2, float(present[0]), float(present[-1]), sketch)

    def merge(self, other: NumericProfile, size: int | None) -> NumericProfile:
        if other.count == 0 or self.count == 0:
            base = self if other.count == 0 else other
            return replace(base, missing=self.missing + other.missing)
        n = self.count + other.count
        delta = other.mean - self.mean
        return NumericProfile(
            n,
            self.missing + other.missing,
            self.mean + delta * other.count / n,
            self.m2 + other.m2 + delta * delta * self.count * other.count / n,  # Chan et al.
            min(self.min, other.min),
            max(self.max, other.max),
            self.sketch.merge(other.sketch, size),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "count": self.count,
            "missing": self.missing,
            "mean": _finite_or_none(self.mean),
            "m2": self.m2,
            "min": _finite_or_none(self.min),
            "max": _finite_or_none(self.max),
            "sketch": self.sketch.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericProfile:
        return cls(
            float(data["count"]),
            float(data["missing"]),
            _none_to_nan(data.get("mean")),
            float(data["m2"]),
            _none_to_nan(data.get("min")),
            _none_to_nan(data.get("max")),
            NumericSketch.from_dict(data["sketch"]),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    count: float
    missing: float
    categories: CategoryCounts

    kind: Literal["categorical"] = "categorical"

    @property
    def missing_rate(self) -> float:
        rows = self.count + self.missing
        return self.missing / rows if rows else math.nan

    @classmethod
    def of(cls, column: CategoricalColumn, top_k: int | None) -> CategoricalProfile:
        present = column.codes[column.codes >= 0]
        counts = np.bincount(present, minlength=len(column.categories))
        by_value = {c: float(n) for c, n in zip(column.categories, counts, strict=True) if n > 0}
        return cls(
            float(present.size),
            float(column.codes.size - present.size),
            CategoryCounts.from_counts(by_value, top_k),
        )

    def merge(self, other: CategoricalProfile, top_k: int | None) -> CategoricalProfile:
        return CategoricalProfile(
            self.count + other.count,
            self.missing + other.missing,
            self.categories.merge(other.categories, top_k),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "count": self.count,
            "missing": self.missing,
            **self.categories.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalProfile:
        return cls(float(data["count"]), float(data["missing"]), CategoryCounts.from_dict(data))


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class RowSample:
    """A uniform sample of rows over the numeric columns (NaN for missing), for the multivariate detector."""

    columns: tuple[str, ...]
    rows: npt.NDArray[np.float64]
    seen: int

    @staticmethod
    def rows_to_take(rows: int, size: int, rng: np.random.Generator) -> IntArray:
        take = rng.choice(rows, size=min(size, rows), replace=False) if rows else np.empty(0, np.int64)
        take.sort()
        return take

    def merge(self, other: RowSample, size: int, rng: np.random.Generator) -> RowSample:
        columns = tuple(c for c in self.columns if c in other.columns)
        a = self.rows[:, [self.columns.index(c) for c in columns]]
        b = other.rows[:, [other.columns.index(c) for c in columns]]
        total = min(size, a.shape[0] + b.shape[0])
        # How many rows of a uniform sample of the union come from each side, then which ones.
        from_a = int(rng.hypergeometric(self.seen, other.seen, total)) if self.seen and other.seen else 0
        from_a = min(max(from_a, total - b.shape[0]), a.shape[0]) if other.seen else min(total, a.shape[0])
        from_b = min(total - from_a, b.shape[0])
        rows = np.vstack(
            (
                a[rng.choice(a.shape[0], from_a, replace=False)],
                b[rng.choice(b.shape[0], from_b, replace=False)],
            )
        )
        return RowSample(columns, rows, self.seen + other.seen)

    def to_dict(self) -> dict[str, Any]:
        # Seven significant digits are plenty for fitting a PCA and keep the stored profile small.
        rows = [[None if math.isnan(v) else float(f"{v:.7g}") for v in row] for row in self.rows.tolist()]
        return {"columns": list(self.columns), "rows": rows, "seen": self.seen}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowSample:
        columns = tuple(str(c) for c in data["columns"])
        rows = np.array(data["rows"], dtype=np.float64).reshape(-1, len(columns))
        return cls(columns, rows, int(data["seen"]))


@dataclass(frozen=True)
class Profile:
    """The stored summary of a dataset; see the module docstring."""

    rows: int
    columns: dict[str, ColumnProfile]
    prediction: str | None = None
    target: str | None = None
    score: str | None = None
    segments: tuple[str, ...] = ()
    task: Task | None = None
    performance: PerformanceStats | None = None
    sample: RowSample | None = None
    slices: dict[SliceKey, Profile] = field(default_factory=dict)
    options: ProfileOptions = field(default_factory=ProfileOptions)

    @property
    def features(self) -> list[str]:
        """Input columns: everything but the prediction, score and target."""
        roles = {self.prediction, self.target, self.score}
        return [c for c in self.columns if c not in roles]

    def merge(self, other: Profile) -> Profile:
        """The profile of both datasets together (columns present in both; slices present in either)."""
        if (self.prediction, self.target, self.score) != (other.prediction, other.target, other.score):
            raise InvalidInputError("profile: cannot merge profiles with different prediction/target/score columns")
        opts = self.options
        columns: dict[str, ColumnProfile] = {}
        for name, mine in self.columns.items():
            theirs = other.columns.get(name)
            if theirs is None:
                continue
            if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
                columns[name] = mine.merge(theirs, opts.sketch_size)
            elif isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
                columns[name] = mine.merge(theirs, opts.top_k)
            else:
                raise InvalidInputError(
                    f"column {name!r}: numeric in one profile, categorical in the other", field=name
                )
        performance = self.performance
        if self.performance is not None and other.performance is not None:
            performance = self.performance.merge(other.performance)
        elif other.performance is not None:
            performance = other.performance
        sample = self.sample
        if self.sample is not None and other.sample is not None:
            sample = self.sample.merge(other.sample, opts.sample_size, np.random.default_rng(opts.seed))
        slices = dict(other.slices)
        for key, sub in self.slices.items():
            slices[key] = sub.merge(other.slices[key]) if key in other.slices else sub
        return Profile(
            self.rows + other.rows,
            columns,
            self.prediction,
            self.target,
            self.score,
            tuple(s for s in self.segments if s in other.segments),
            self.task or other.task,
            performance,
            sample,
            slices,
            opts,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps`` works on it) that :meth:`from_dict` reads back."""
        return {
            "format": FORMAT,
            "rows": self.rows,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
            "prediction": self.prediction,
            "target": self.target,
            "score": self.score,
            "segments": list(self.segments),
            "task": self.task,
            "performance": self.performance.to_dict() if self.performance else None,
            "sample": self.sample.to_dict() if self.sample else None,
            "slices": [{"key": [list(kv) for kv in key], "profile": sub.to_dict()} for key, sub in self.slices.items()],
            "options": {
                "sketch_size": self.options.sketch_size,
                "top_k": self.options.top_k,
                "sample_size": self.options.sample_size,
                "max_segment_values": self.options.max_segment_values,
                "slice_sketch_size": self.options.slice_sketch_size,
                "segment_pairs": self.options.segment_pairs,
                "seed": self.options.seed,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidInputError(f"profile: expected a dict with format {FORMAT!r}", field="format")
        try:
            columns: dict[str, ColumnProfile] = {}
            for name, col in data["columns"].items():
                if col.get("kind") == "numeric":
                    columns[name] = NumericProfile.from_dict(col)
                elif col.get("kind") == "categorical":
                    columns[name] = CategoricalProfile.from_dict(col)
                else:
                    raise InvalidInputError(f"column {name!r}: unknown kind {col.get('kind')!r}", field=name)
            slices = {
                tuple((str(k), str(v)) for k, v in item["key"]): Profile.from_dict(item["profile"])
                for item in data.get("slices", [])
            }
            return cls(
                int(data["rows"]),
                columns,
                data.get("prediction"),
                data.get("target"),
                data.get("score"),
                tuple(data.get("segments", [])),
                data.get("task"),
                PerformanceStats.from_dict(data["performance"]) if data.get("performance") else None,
                RowSample.from_dict(data["sample"]) if data.get("sample") else None,
                slices,
                ProfileOptions(**data.get("options", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"profile: malformed profile dict ({exc!r})", field="profile") from exc


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _none_to_nan(x: Any) -> float:
    return math.nan if x is None else float(x)


# --- building -----------------------------------------------------------------------------------------------


def _segment_codes(table: Table, name: str, max_values: int) -> tuple[IntArray, list[str]]:
    """Codes of the ``max_values`` most frequent values of a segment field (-1 elsewhere), and the values."""
    col = table.columns.get(name)
    if not isinstance(col, CategoricalColumn):
        raise InvalidInputError(f"segments: column {name!r} is not in the table", field="segments")
    counts = np.bincount(col.codes[col.codes >= 0], minlength=len(col.categories))
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], col.categories[i]))[:max_values]
    remap = np.full(len(col.categories) + 1, -1, dtype=np.int64)
    remap[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    return remap[col.codes], [col.categories[i] for i in order]


def slice_rows(table: Table, segments: Sequence[str], max_values: int, pairs: bool) -> dict[SliceKey, IntArray]:
    """Row indices of every single-field slice and (optionally) every pair-of-fields slice."""
    coded = {name: _segment_codes(table, name, max_values) for name in segments}
    out: dict[SliceKey, IntArray] = {}
    groups: list[tuple[str, ...]] = [(s,) for s in segments]
    if pairs:
        groups += [(a, b) for i, a in enumerate(segments) for b in segments[i + 1 :]]
    for group in groups:
        combined = np.zeros(table.rows, dtype=np.int64)
        valid = np.ones(table.rows, dtype=bool)
        for name in group:
            codes, values = coded[name]
            valid &= codes >= 0
            combined = combined * (len(values) + 1) + np.maximum(codes, 0)
        rows = np.flatnonzero(valid)
        if rows.size == 0:
            continue
        order = rows[np.argsort(combined[rows], kind="stable")]
        keys, starts = np.unique(combined[order], return_index=True)
        for code, start, end in zip(keys, starts, [*starts[1:], order.size], strict=True):
            parts: list[tuple[str, str]] = []
            rest = int(code)
            for name in reversed(group):
                values = coded[name][1]
                parts.append((name, values[rest % (len(values) + 1)]))
                rest //= len(values) + 1
            out[tuple(reversed(parts))] = np.sort(order[start:end])
    return out


@dataclass(frozen=True)
class Roles:
    prediction: str | None = None
    target: str | None = None
    score: str | None = None
    task: Task | None = None
    positive: str | None = None


def _performance(table: Table, roles: Roles) -> PerformanceStats | None:
    if roles.target is None or roles.prediction is None:
        return None
    target, prediction = table.columns.get(roles.target), table.columns.get(roles.prediction)
    if target is None or prediction is None:
        return None
    score = table.columns.get(roles.score) if roles.score else None
    score_values = score.values if isinstance(score, NumericColumn) else None
    return PerformanceStats.from_arrays(
        _raw(target), _raw(prediction), score_values, task=roles.task, positive=roles.positive
    )


def _raw(col: NumericColumn | CategoricalColumn) -> npt.NDArray[Any]:
    return col.values if isinstance(col, NumericColumn) else col.labels()


def build_profile(
    table: Table,
    *,
    roles: Roles,
    segments: Sequence[str],
    options: ProfileOptions,
    with_sample: bool = True,
    with_slices: bool = True,
    sketch_size: int | None = None,
) -> Profile:
    """Profile an already-normalized table (used for reference profiles and for current windows)."""
    size = options.sketch_size if sketch_size is None else sketch_size

    if with_slices and segments:
        table = table.materialized()  # every slice takes rows from every column: convert once
    role_names = {roles.prediction, roles.target, roles.score}
    sampled = [n for n, c in table.columns.items() if isinstance(c, NumericColumn) and n not in role_names]
    want_sample = with_sample and options.sample_size > 0
    take = RowSample.rows_to_take(table.rows, options.sample_size, np.random.default_rng(options.seed))

    def one(name: str) -> tuple[ColumnProfile, FloatArray | None]:
        col = table.columns[name]
        if isinstance(col, NumericColumn):
            values = col.values  # converted here, in the worker, and released when it is done
            rows = values[take] if want_sample and name in sampled else None
            summary = NumericProfile.of(values, size)
            if col.reads_file:
                del values
                release_arrow_memory()  # the column's read buffers, held by this worker thread's allocator
            return summary, rows
        return CategoricalProfile.of(col, options.top_k), None

    if table.rows * len(table.columns) >= _PARALLEL_CELLS and _WORKERS > 1:
        # Sorting dominates and NumPy releases the GIL while sorting: columns profile in parallel.
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            results = dict(zip(table.columns, pool.map(one, table.columns), strict=True))
    else:
        results = {name: one(name) for name in table.columns}
    columns = {name: result[0] for name, result in results.items()}
    task = roles.task
    if task is None and roles.target is not None and roles.target in table.columns:
        task = infer_task(_raw(table.columns[roles.target]))
    roles = replace(roles, task=task)
    sample = None
    if want_sample:
        parts = [part for name in sampled if (part := results[name][1]) is not None]
        matrix = np.column_stack(parts) if parts else np.empty((take.size, 0))
        sample = RowSample(tuple(sampled), matrix, table.rows)
    slices: dict[SliceKey, Profile] = {}
    if with_slices and segments:
        for key, rows in slice_rows(table, segments, options.max_segment_values, options.segment_pairs).items():
            fields = {k for k, _ in key}
            sub = table.take(rows)
            sub.columns = {k: v for k, v in sub.columns.items() if k not in fields}
            slices[key] = build_profile(
                sub,
                roles=roles,
                segments=(),
                options=options,
                with_sample=False,
                with_slices=False,
                sketch_size=options.slice_sketch_size,
            )
    return Profile(
        table.rows,
        columns,
        roles.prediction,
        roles.target,
        roles.score,
        tuple(segments),
        task,
        _performance(table, roles),
        sample,
        slices,
        options,
    )


def profile(
    data: Any,
    *,
    prediction: str | None = None,
    target: str | None = None,
    score: str | None = None,
    segments: Sequence[str] = (),
    categorical: Collection[str] = (),
    features: Sequence[str] | None = None,
    task: Task | None = None,
    positive_label: str | None = None,
    options: ProfileOptions | None = None,
) -> Profile:
    """Profile a table (pandas, polars, pyarrow, or a dict of arrays).

    ``prediction``/``target``/``score`` name the model's output, the label and the positive-class probability;
    ``segments`` name categorical fields whose values (and pairs of values) get their own sub-profiles;
    ``categorical`` forces numeric-looking columns to be read as categories; ``features`` restricts the
    inputs.
    """
    table = _load(data, categorical=[*categorical, *segments], features=features, roles=(prediction, target, score))
    for role, name in (("prediction", prediction), ("target", target), ("score", score)):
        if name is not None and name not in table.columns:
            raise InvalidInputError(f"{role}: column {name!r} is not in the table", field=role)
    return build_profile(
        table,
        roles=Roles(prediction, target, score, task, positive_label),
        segments=list(segments),
        options=options or ProfileOptions(),
    )


def _load(
    data: Any,
    *,
    categorical: Collection[str],
    features: Sequence[str] | None,
    roles: Sequence[str | None],
    kinds: Mapping[str, str] | None = None,
) -> Table:
    table = to_table(data, kinds=kinds, categorical=categorical)
    if features is not None:
        keep = set(features) | {r for r in roles if r is not None} | set(categorical)
        unknown = [f for f in features if f not in table.columns and f not in table.skipped]
        if unknown:
            raise InvalidInputError(f"features: columns {unknown} are not in the table", field="features")
        table.columns = {k: v for k, v in table.columns.items() if k in keep}
    return table
