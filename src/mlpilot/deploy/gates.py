"""The gate a candidate passes before it gets any traffic.

Three checks, each configurable in :class:`~mlpilot.deploy.entities.GateConfig`:

- **evaluation**: on a holdout (when the SDK passes one: both versions are loaded and scored on it) or from
  the metrics recorded on both versions, the candidate must be at least as good as the champion within the
  tolerance;
- **signature**: the candidate must accept every request the endpoint accepts today (same input kind, every
  input present with a compatible dtype and shape, no new required input) and return the outputs callers
  read;
- **load and latency**: the candidate loads from its hash-verified artifact and answers one-row requests from
  its stored sample, with a p99 within the latency budget.

>>> from mlpilot.registry import Signature, TensorSpec
>>> old = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])])
>>> new = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 5])])
>>> signature_problems(old, new)
['input input: shape [-1, 5] does not accept [-1, 4]']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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
    if not math.isfinite(cand) or shortfall > config.tolerance:
        return GateCheck("evaluation", False, f"worse than the champion: {summary}")
    return GateCheck("evaluation", True, summary)


def _rows(predictor: Any, sample: Any, count: int) -> list[Any]:
    n = sample.num_rows if hasattr(sample, "num_rows") else len(sample)
    if not n:
        return []
    if hasattr(sample, "slice"):
        return [sample.slice(i % n, 1) for i in range(count)]
    if hasattr(sample, "iloc"):
        return [sample.iloc[[i % n]] for i in range(count)]
    arr = np.asarray(sample)
    return [arr[i % n : i % n + 1] for i in range(count)]


def _load_check(
    config: GateConfig, candidate: ModelVersionInfo, artifacts: ArtifactStore, sample: Any
) -> list[GateCheck]:
    from mlpilot.registry import load_model, read_sample

    try:
        predictor = load_model(candidate, None, artifacts)
    except MlpilotError as exc:
        return [GateCheck("load", False, f"v{candidate.version} does not load: {exc.message}")]
    if sample is None and candidate.sample_sha256 is not None:
        sample = read_sample(candidate.sample_sha256, artifacts)
    if sample is None:
        if config.latency_budget_ms is not None:
            return [GateCheck("latency", False, "no input sample or holdout to time the candidate on")]
        return [GateCheck("load", True, f"v{candidate.version} loads (no sample to smoke-test)")]
    timings: list[float] = []
    try:
        for row in _rows(predictor, sample, config.smoke_requests):
            started = time.perf_counter()
            predictor.predict(row)
            timings.append((time.perf_counter() - started) * 1000)
    except Exception as exc:
        return [GateCheck("load", False, f"v{candidate.version} fails on its own sample: {type(exc).__name__}: {exc}")]
    checks = [GateCheck("load", True, f"v{candidate.version} loads and answered {len(timings)} smoke requests")]
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
    """
    checks: list[GateCheck] = []
    if config.check_signature and champion is not None:
        problems = signature_problems(champion.signature, candidate.signature)
        detail = "; ".join(problems) if problems else "accepts every request the endpoint accepts"
        checks.append(GateCheck("signature", not problems, detail))
    scores = None
    if holdout is not None and config.metric is not None and champion is not None:
        if artifacts is None:
            raise InvalidInputError("artifacts: a holdout evaluation needs the artifact store", field="artifacts")
        from mlpilot.registry import load_model

        X, y = holdout
        score = metric_fn or (lambda t, p: holdout_score(str(config.metric), t, p))
        scores = (
            float(score(y, load_model(candidate, None, artifacts).predict(X))),
            float(score(y, load_model(champion, None, artifacts).predict(X))),
        )
    metric = _metric_check(config, candidate, champion, scores)
    if metric is not None:
        checks.append(metric)
    if artifacts is not None:
        checks.extend(_load_check(config, candidate, artifacts, holdout[0] if holdout is not None else None))
    return GateReport(candidate.version, champion.version if champion is not None else None, checks)
