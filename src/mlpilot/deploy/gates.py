"""The gate a candidate passes before it gets any traffic.

Three checks, each configurable in :class:`~mlpilot.deploy.entities.GateConfig`:

- **evaluation**: on a holdout (when the SDK passes one: both versions are loaded and scored on it) or from
  the metrics recorded on both versions, the candidate must be at least as good as the champion within the
  tolerance;
- **signature**: the candidate must accept every request the endpoint accepts today (same input kind, every
  input present with a compatible dtype and shape, no new required input) and return the outputs callers
  read;
- **load and latency**: the candidate loads from its hash-verified artifact and answers one-row requests from
  the holdout or its stored sample, with a p99 within the latency budget.

A candidate that fails is refused, never an exception: one that does not load, raises while predicting,
returns other than one prediction per row, or returns NaN or infinite predictions or probabilities fails the
check that found it, with the error in the check's detail.

>>> from mlpilot.registry import Signature, TensorSpec
>>> old = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])])
>>> new = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 5])])
>>> signature_problems(old, new)
['input input: shape [-1, 5] does not accept [-1, 4]']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpilot.deploy.entities import GateConfig
from mlpilot.errors import InvalidInputError, MlpilotError

if TYPE_CHECKING:
    from mlpilot.artifacts import ArtifactStore
    from mlpilot.registry import ModelVersionInfo, Signature

__all__ = ["GateCheck", "GateReport", "evaluate_gate", "holdout_score", "signature_problems"]

_NUMERIC = {"b", "i", "u", "f"}
_BUILTIN = {"accuracy": True, "error_rate": False, "rmse": False, "mae": False}
#: characters of an exception's message a check's detail keeps
_MAX_ERROR = 240


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class GateReport:
    """Whether ``version`` may take traffic, and every check behind the answer."""

    version: int
    champion: int | None
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "champion": self.champion,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
        }


def _kind(dtype: str) -> str:
    if dtype in ("string", "category", "object"):
        return "text"
    try:
        return "number" if np.dtype(dtype).kind in _NUMERIC else "other"
    except TypeError:
        return "other"


def _shape_accepts(new: list[int], old: list[int]) -> bool:
    """Whether an input of shape ``new`` accepts everything shape ``old`` admits (-1 means any size)."""
    if len(new) != len(old):
        return False
    return all(n == -1 or n == o for n, o in zip(new, old, strict=True))


def signature_problems(endpoint: Signature | None, candidate: Signature | None) -> list[str]:
    """Why ``candidate`` cannot replace a model with signature ``endpoint`` (empty when it can)."""
    if endpoint is None:
        return []
    if candidate is None:
        return ["the candidate has no signature: its inputs cannot be checked"]
    problems: list[str] = []
    if candidate.kind != endpoint.kind:
        problems.append(f"input kind {candidate.kind!r} differs from the endpoint's {endpoint.kind!r}")
    old_inputs = {s.name: s for s in endpoint.inputs}
    new_inputs = {s.name: s for s in candidate.inputs}
    for name, old in old_inputs.items():
        new = new_inputs.get(name)
        if new is None:
            continue  # an input the candidate ignores is harmless
        if _kind(new.dtype) != _kind(old.dtype):
            problems.append(f"input {name}: dtype {new.dtype} does not accept {old.dtype}")
        if not _shape_accepts(new.shape, old.shape):
            problems.append(f"input {name}: shape {new.shape} does not accept {old.shape}")
    for name in sorted(set(new_inputs) - set(old_inputs)):
        problems.append(f"input {name}: required by the candidate but not sent to the endpoint")
    new_outputs = {s.name for s in candidate.outputs}
    if new_outputs:
        for spec in endpoint.outputs:
            if spec.name not in new_outputs:
                problems.append(f"output {spec.name}: returned by the endpoint but not by the candidate")
    return problems


def holdout_score(metric: str, y_true: Any, y_pred: Any) -> float:
    """A built-in holdout metric: ``accuracy``, ``error_rate``, ``rmse`` or ``mae``."""
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if pred.ndim > 1 and pred.shape[1] == 1:
        pred = pred.reshape(-1)
    if truth.shape[0] != pred.shape[0]:
        raise InvalidInputError(f"holdout: {truth.shape[0]} labels but {pred.shape[0]} predictions", field="holdout")
    if metric in ("accuracy", "error_rate"):
        acc = float(np.mean(truth.astype(str) == pred.astype(str)))
        return acc if metric == "accuracy" else 1.0 - acc
    err = pred.astype(float) - truth.astype(float)
    if metric == "rmse":
        return float(np.sqrt(np.mean(err**2)))
    if metric == "mae":
        return float(np.mean(np.abs(err)))
    raise InvalidInputError(f"metric: no built-in holdout metric {metric!r}; pass metric_fn", field="metric")


def _metric_check(
    config: GateConfig,
    candidate: ModelVersionInfo,
    champion: ModelVersionInfo | None,
    scores: tuple[float, float] | None,
) -> GateCheck | None:
    metric = config.metric
    if metric is None or champion is None:
        return None
    if scores is not None:
        cand, champ = scores
        where = "on the holdout"
    else:
        if metric not in candidate.metrics:
            return GateCheck("evaluation", False, f"v{candidate.version} has no recorded metric {metric!r}")
        if metric not in champion.metrics:
            return GateCheck("evaluation", False, f"the champion v{champion.version} has no recorded {metric!r}")
        cand, champ = candidate.metrics[metric], champion.metrics[metric]
        where = "as recorded"
    higher = _BUILTIN.get(metric, config.higher_is_better)
    shortfall = (champ - cand) if higher else (cand - champ)
    summary = f"{metric} {cand:.4g} vs champion {champ:.4g} {where} (tolerance {config.tolerance:g})"
    if not math.isfinite(champ):
        return GateCheck("evaluation", False, f"the champion's score is not a number: {summary}")
    if not math.isfinite(cand) or shortfall > config.tolerance:
        return GateCheck("evaluation", False, f"worse than the champion: {summary}")
    return GateCheck("evaluation", True, summary)


def _error(exc: BaseException) -> str:
    """An exception as one short line: its type and the start of its message."""
    text = " ".join(str(exc).split())
    if len(text) > _MAX_ERROR:
        text = text[: _MAX_ERROR - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _num_rows(data: Any) -> int:
    if hasattr(data, "num_rows"):  # Arrow
        return int(data.num_rows)
    if isinstance(data, Mapping):  # columns by name
        return len(next(iter(data.values()), []))
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    return len(data)


def _columns(result: Any) -> list[np.ndarray[Any, Any]]:
    """What a model returned, as arrays with the rows on the first axis (a frame's or a dict's columns)."""
    if hasattr(result, "columns") and hasattr(result, "iloc"):  # a DataFrame, without importing pandas
        return [np.asarray(result[c].to_numpy()) for c in result.columns]
    if isinstance(result, Mapping):
        return [np.asarray(v) for v in result.values()]
    return [np.asarray(result)]


def _non_finite(arr: np.ndarray[Any, Any]) -> int:
    if arr.dtype.kind in "fc":
        return int(np.count_nonzero(~np.isfinite(arr)))
    if arr.dtype.kind == "O":
        return sum(1 for v in arr.ravel() if v is None or (isinstance(v, float) and not math.isfinite(v)))
    return 0


def _output_problem(result: Any, rows: int, what: str = "predictions") -> str | None:
    """Why ``result`` is not one finite answer per input row (None when it is)."""
    try:
        columns = _columns(result)
    except Exception as exc:  # a ragged list, an object that is no array
        return f"returned {what} that are not an array ({_error(exc)})"
    if not columns:
        return f"returned no {what}"
    for arr in columns:
        if arr.ndim == 0:
            return f"returned a single value instead of {what} for {rows} rows"
        if arr.shape[0] != rows:
            return f"returned {arr.shape[0]} {what} for {rows} rows"
        bad = _non_finite(arr)
        if bad:
            return f"returned {bad} non-finite {what} (NaN, inf or missing) for {rows} rows"
    return None


def _proba_problem(predictor: Any, data: Any, rows: int) -> str | None:
    """Why the probabilities of ``data`` are unusable, when the model has probabilities (None when fine)."""
    if not getattr(predictor, "has_proba", False):
        return None
    try:
        proba = predictor.predict_proba(data)
    except (AttributeError, NotImplementedError, MlpilotError):
        return None  # the flavor exposes the method but this model has none: it is served without them
    except Exception as exc:
        return f"raised {_error(exc)} in predict_proba"
    return _output_problem(proba, rows, "probabilities")


def _predict(predictor: Any, data: Any, rows: int) -> tuple[Any, str | None]:
    """Predict ``data``; the predictions, or why they are unusable: an exception, not one answer per row,
    non-finite values (in the probabilities too, when the model has them)."""
    try:
        result = predictor.predict(data)
    except Exception as exc:
        return None, f"raised {_error(exc)}"
    problem = _output_problem(result, rows) or _proba_problem(predictor, data, rows)
    return (None, problem) if problem is not None else (result, None)


def _load(info: ModelVersionInfo, artifacts: ArtifactStore) -> tuple[Any, str | None]:
    from mlpilot.registry import load_model

    try:
        return load_model(info, None, artifacts), None
    except MlpilotError as exc:
        return None, exc.message
    except Exception as exc:  # unpickling a pyfunc model runs its code: anything can go wrong
        return None, _error(exc)


def _shape(result: Any) -> tuple[int, ...] | None:
    """The shape of one prediction (a trailing axis of one squeezed), for plain array outputs only."""
    if isinstance(result, Mapping) or hasattr(result, "columns"):
        return None
    shape = np.asarray(result).shape[1:]
    return () if shape == (1,) else shape


def _holdout_check(
    config: GateConfig,
    candidate: ModelVersionInfo,
    predictor: Any,
    champion: ModelVersionInfo,
    artifacts: ArtifactStore,
    holdout: tuple[Any, Any],
    metric_fn: Callable[[Any, Any], float] | None,
) -> tuple[float, float] | GateCheck:
    """Score both versions on the holdout: their scores, or the failed check saying why they cannot be
    compared (the candidate or the champion does not load, raises, or returns unusable predictions)."""
    X, y = holdout
    rows = _num_rows(X)
    labels = _num_rows(y)
    if rows != labels:
        raise InvalidInputError(f"holdout: {rows} rows of inputs but {labels} labels", field="holdout")
    if predictor is None:
        return GateCheck("evaluation", False, f"v{candidate.version} cannot be evaluated: it does not load")
    cand_pred, problem = _predict(predictor, X, rows)
    if problem is not None:
        return GateCheck("evaluation", False, f"v{candidate.version} fails on the holdout: it {problem}")
    reference, problem = _load(champion, artifacts)
    if problem is None:
        champ_pred, problem = _predict(reference, X, rows)
    if problem is not None:
        # Nothing to compare with: refused, so that a human decides (and skips the gate with a reason).
        detail = f"the champion v{champion.version} fails on the holdout ({problem}): nothing to compare with"
        return GateCheck("evaluation", False, detail)
    cand_shape, champ_shape = _shape(cand_pred), _shape(champ_pred)
    if cand_shape is not None and champ_shape is not None and cand_shape != champ_shape:
        detail = (
            f"v{candidate.version} returns predictions of shape {list(cand_shape)} per row on the holdout, "
            f"the champion v{champion.version} {list(champ_shape)}"
        )
        return GateCheck("evaluation", False, detail)
    metric = str(config.metric)
    score = metric_fn or (lambda t, p: holdout_score(metric, t, p))
    try:
        return float(score(y, cand_pred)), float(score(y, champ_pred))
    except MlpilotError:
        raise
    except Exception as exc:  # the metric failed on well-formed predictions: the caller chose it
        where = "metric_fn" if metric_fn is not None else "metric"
        raise InvalidInputError(f"{where}: failed on the holdout predictions: {_error(exc)}", field=where) from exc


def _rows(sample: Any, count: int) -> list[Any]:
    """``count`` one-row slices of ``sample``, cycling through its rows."""
    n = _num_rows(sample)
    if not n:
        return []
    if hasattr(sample, "slice"):
        return [sample.slice(i % n, 1) for i in range(count)]
    if hasattr(sample, "iloc"):
        return [sample.iloc[[i % n]] for i in range(count)]
    if isinstance(sample, Mapping):
        columns = {k: np.asarray(v) for k, v in sample.items()}
        return [{k: v[i % n : i % n + 1] for k, v in columns.items()} for i in range(count)]
    arr = np.asarray(sample)
    return [arr[i % n : i % n + 1] for i in range(count)]


def _load_check(
    config: GateConfig, candidate: ModelVersionInfo, predictor: Any, artifacts: ArtifactStore, sample: Any
) -> list[GateCheck]:
    """The candidate loads and answers one-row requests (the holdout's, or its sample's) within the budget."""
    from mlpilot.registry import read_sample

    version = f"v{candidate.version}"
    source = "the holdout" if sample is not None else "its input sample"
    if sample is None and candidate.sample_sha256 is not None:
        try:
            sample = read_sample(candidate.sample_sha256, artifacts)
        except Exception as exc:
            reason = exc.message if isinstance(exc, MlpilotError) else _error(exc)
            return [GateCheck("load", False, f"{version} has an unreadable input sample: {reason}")]
    if sample is None:
        if config.latency_budget_ms is not None:
            return [GateCheck("latency", False, "no input sample or holdout to time the candidate on")]
        return [GateCheck("load", True, f"{version} loads (no sample to smoke-test)")]
    timings: list[float] = []
    try:
        rows = _rows(sample, config.smoke_requests)
    except Exception as exc:
        return [GateCheck("load", False, f"{version}: {source} cannot be split into rows: {_error(exc)}")]
    problem = None
    for row in rows:
        started = time.perf_counter()
        try:
            result = predictor.predict(row)
        except Exception as exc:
            problem = f"raised {_error(exc)}"
            break
        timings.append((time.perf_counter() - started) * 1000)
        problem = _output_problem(result, 1)
        if problem is not None:
            break
    if problem is None and rows:
        problem = _proba_problem(predictor, rows[0], 1)
    if problem is not None:
        failed = GateCheck("load", False, f"{version} fails on one-row requests of {source}: it {problem}")
        if config.latency_budget_ms is None:
            return [failed]
        # A model that fails is not timed: the latency check fails with it rather than pass on errors.
        return [failed, GateCheck("latency", False, f"{version} not timed: it fails on one-row requests")]
    checks = [GateCheck("load", True, f"{version} loads and answered {len(timings)} one-row requests")]
    if config.latency_budget_ms is not None and timings:
        p99 = float(np.percentile(timings, 99))
        ok = p99 <= config.latency_budget_ms
        verdict = "within" if ok else "over"
        checks.append(
            GateCheck("latency", ok, f"p99 {p99:.2f} ms {verdict} the {config.latency_budget_ms:g} ms budget")
        )
    return checks


def evaluate_gate(
    config: GateConfig,
    candidate: ModelVersionInfo,
    champion: ModelVersionInfo | None,
    *,
    artifacts: ArtifactStore | None = None,
    holdout: tuple[Any, Any] | None = None,
    metric_fn: Callable[[Any, Any], float] | None = None,
) -> GateReport:
    """Run the gate for ``candidate`` against ``champion`` (the endpoint's primary, None for a new endpoint).

    With ``holdout=(X, y)`` both versions are loaded from ``artifacts`` and scored on it with ``metric_fn``
    or the built-in ``config.metric``; otherwise recorded metrics are compared.

    A model that fails is a failed check, never an exception: one that does not load, raises, returns other
    than one prediction per row, or returns NaN or infinite predictions or probabilities. Only the caller's
    own mistakes raise (:class:`~mlpilot.errors.InvalidInputError`): a holdout whose inputs and labels differ
    in length, an unknown metric, a ``metric_fn`` that fails on well-formed predictions.
    """
    checks: list[GateCheck] = []
    if config.check_signature and champion is not None:
        problems = signature_problems(champion.signature, candidate.signature)
        detail = "; ".join(problems) if problems else "accepts every request the endpoint accepts"
        checks.append(GateCheck("signature", not problems, detail))
    predictor: Any = None
    loaded: GateCheck | None = None
    if artifacts is not None:
        predictor, problem = _load(candidate, artifacts)
        if problem is not None:
            loaded = GateCheck("load", False, f"v{candidate.version} does not load: {problem}")
    scores = None
    on_holdout = holdout is not None and config.metric is not None and champion is not None
    if holdout is not None and config.metric is not None and champion is not None:
        if artifacts is None:
            raise InvalidInputError("artifacts: a holdout evaluation needs the artifact store", field="artifacts")
        outcome = _holdout_check(config, candidate, predictor, champion, artifacts, holdout, metric_fn)
        if isinstance(outcome, GateCheck):
            checks.append(outcome)
        else:
            scores = outcome
    if not on_holdout or scores is not None:
        metric = _metric_check(config, candidate, champion, scores)
        if metric is not None:
            checks.append(metric)
    if loaded is not None:
        checks.append(loaded)
    elif artifacts is not None:
        sample = holdout[0] if holdout is not None else None
        checks.extend(_load_check(config, candidate, predictor, artifacts, sample))
    return GateReport(candidate.version, champion.version if champion is not None else None, checks)
