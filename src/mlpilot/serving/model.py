"""A model version ready to serve: its predictor, compiled input schema, output specs, and batched execution.

:meth:`ServedModel.run_batch` is what the worker threads execute: it concatenates the requests of one batch,
calls the predictor once (``predict``, and ``predict_proba`` when the batch asked for probabilities) and
splits the results back per request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mlpilot.errors import MlpilotError
from mlpilot.serving.errors import ModelLoadError, PredictionError
from mlpilot.serving.schema import Columns, InputSchema, TensorInfo
from mlpilot.serving.source import Predictor, ResolvedModel

__all__ = ["PROBABILITIES", "ServedModel"]

logger = logging.getLogger("mlpilot.serving")

#: The extra output served for predictors that have ``predict_proba``.
PROBABILITIES = "probabilities"
Outputs = dict[str, np.ndarray[Any, Any]]


def limit_thread_pools(limit: int) -> None:
    """Limit BLAS/OpenMP thread pools in the calling thread from now on (a worker thread's initializer)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the libraries use their defaults
        return
    threadpool_limits(limits=limit)


@contextlib.contextmanager
def limit_threads(limit: int) -> Iterator[None]:
    """Limit BLAS/OpenMP thread pools in the calling thread for the duration (OpenMP limits are per thread)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the libraries use their defaults
        yield
        return
    with threadpool_limits(limits=limit):
        yield


def _dtype_name(arr: np.ndarray[Any, Any]) -> str:
    return "string" if arr.dtype.kind in "USO" else str(arr.dtype)


def _as_outputs(result: Any, names: Sequence[str], rows: int) -> Outputs:
    """Whatever ``predict`` returned, as named arrays with the batch on the first axis."""
    if hasattr(result, "columns") and hasattr(result, "iloc"):  # a DataFrame, without importing pandas
        out = {str(c): result[c].to_numpy() for c in result.columns}
    elif isinstance(result, Mapping):
        out = {str(k): np.asarray(v) for k, v in result.items()}
    elif isinstance(result, tuple):
        out = {f"output_{i}": np.asarray(v) for i, v in enumerate(result)}
    else:
        arr = result.to_numpy() if hasattr(result, "to_numpy") else np.asarray(result)
        out = {names[0] if names else "output": arr}
    for name, arr in out.items():
        if arr.ndim == 0 or arr.shape[0] != rows:
            raise MlpilotError(
                f"the model returned {list(arr.shape)} for output {name!r} from {rows} rows: expected one per row"
            )
    return out


def _example(spec: TensorInfo) -> np.ndarray[Any, Any]:
    shape = tuple(1 if d < 0 else d for d in spec.shape)
    if spec.text:
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.np_dtype)


class ServedModel:
    """One loaded, warmed model version.

    >>> served = ServedModel.prepare("churn", resolved, predictor)  # doctest: +SKIP
    >>> served.run_batch([served.schema.from_rows([[0.1, 0.2]])], {"output"})  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        resolved: ResolvedModel,
        predictor: Predictor,
        schema: InputSchema,
        outputs: Sequence[TensorInfo],
        *,
        has_proba: bool,
        load_seconds: float,
    ) -> None:
        self.name = name
        #: what the source resolved (a shadow worker process loads the same version from it)
        self.resolved = resolved
        self.version = resolved.version
        self.digest = resolved.digest
        self.flavor = resolved.flavor
        self.predictor = predictor
        self.schema = schema
        self.outputs = tuple(outputs)
        self.output_names = frozenset(o.name for o in self.outputs)
        self.output_by_name = {o.name: o for o in self.outputs}
        #: what ``predict`` returns (everything but ``probabilities``); the first is "the prediction"
        self.predict_outputs = tuple(o.name for o in self.outputs if o.name != PROBABILITIES)
        self.main_output = self.predict_outputs[0]
        self.has_proba = has_proba
        self.load_seconds = load_seconds
        #: the cost of one warm single-row batch, a seed for the batcher's estimates
        self.warm_seconds = 0.0
        self._example: Columns | None = None

    @classmethod
    def prepare(
        cls, name: str, resolved: ResolvedModel, predictor: Predictor, *, load_seconds: float = 0.0
    ) -> ServedModel:
        """Compile the schema and warm the predictor up with a synthetic row; refuse it if that fails.

        Models with text inputs may reject the synthetic row (an unknown category): for them a failed warm-up
        is logged, and the outputs are taken from the signature.
        """
        signature = predictor.signature if predictor.signature is not None else resolved.signature
        schema = InputSchema.compile(signature)
        declared = [] if signature is None else [(o.name, o.dtype, o.shape) for o in signature.outputs]
        names = [n for n, _, _ in declared]
        columns = {spec.name: _example(spec) for spec in schema.inputs}
        model_input = schema.to_model_input(columns)
        proba_fn = getattr(predictor, "predict_proba", None)
        if getattr(predictor, "has_proba", True) is False:
            proba_fn = None
        outputs: list[TensorInfo] = []
        has_proba = False
        warmed = True
        started = time.perf_counter()
        try:
            result = _as_outputs(predictor.predict(model_input), names, 1)
            outputs = [TensorInfo.of(n, _dtype_name(a), (-1, *a.shape[1:])) for n, a in result.items()]
            if callable(proba_fn):
                try:
                    proba = np.asarray(proba_fn(model_input))
                    outputs.append(TensorInfo.of(PROBABILITIES, _dtype_name(proba), (-1, *proba.shape[1:])))
                    has_proba = True
                except (AttributeError, NotImplementedError, MlpilotError):
                    has_proba = False  # the flavor exposes the method but this model has no probabilities
        except Exception as exc:
            warmed = False
            if signature is None:
                # Without a signature the synthetic row is a guess (one feature): the outputs are guessed too.
                logger.warning("model %s v%s has no signature: served without a warm-up check", name, resolved.version)
                outputs = [TensorInfo.of("output", "float64", (-1,))]
            elif not any(spec.text for spec in schema.inputs) or not declared:
                raise ModelLoadError(
                    f"model {name!r} version {resolved.version}: warm-up prediction failed: {exc}",
                    model=name,
                    version=resolved.version,
                ) from exc
            else:
                logger.warning("model %s v%s: warm-up on a synthetic row failed (%s)", name, resolved.version, exc)
                outputs = [TensorInfo.of(n, d, s) for n, d, s in declared]
        served = cls(name, resolved, predictor, schema, outputs, has_proba=has_proba, load_seconds=load_seconds)
        served.warm_seconds = time.perf_counter() - started
        if warmed:
            served._example = columns
            served.warm()  # the first call paid for lazy initialisation: time a second one
        return served

    def warm(self) -> None:
        """Predict the synthetic example in the calling thread (so worker threads set up their thread pools) and
        record how long it took: the batcher's first estimate of a batch's cost."""
        if self._example is not None:
            started = time.perf_counter()
            self._predict_merged([self._example], self.output_names)
            self.warm_seconds = time.perf_counter() - started

    def run_batch(self, batch: Sequence[Columns], wanted: frozenset[str]) -> list[Outputs | MlpilotError]:
        """Predict one batch (in a worker thread) and split the outputs per request.

        If the model raises on a merged batch, each request is retried alone so that one bad request fails by
        itself rather than taking its batch companions down with it.
        """
        try:
            return list(self._predict_merged(batch, wanted))
        except Exception as exc:
            if len(batch) == 1:
                return [self._failure(exc)]
        results: list[Outputs | MlpilotError] = []
        for columns in batch:
            try:
                results.extend(self._predict_merged([columns], wanted))
            except Exception as exc:
                results.append(self._failure(exc))
        return results

    def _failure(self, exc: Exception) -> MlpilotError:
        if isinstance(exc, MlpilotError):
            return exc
        logger.warning("model %s v%s failed on a request: %s: %s", self.name, self.version, type(exc).__name__, exc)
        return PredictionError(
            f"model {self.name!r} version {self.version} failed: {type(exc).__name__}: {exc}",
            model=self.name,
            version=self.version,
        )

    def _predict_merged(self, batch: Sequence[Columns], wanted: frozenset[str]) -> list[Outputs]:
        if len(batch) == 1:
            columns = batch[0]
            spans = [(0, next(iter(columns.values())).shape[0])]
        else:
            columns = {name: np.concatenate([c[name] for c in batch]) for name in self.schema.names}
            spans = []
            start = 0
            for c in batch:
                end = start + next(iter(c.values())).shape[0]
                spans.append((start, end))
                start = end
        rows = spans[-1][1]
        model_input = self.schema.to_model_input(columns)
        results: Outputs = {}
        if not wanted.isdisjoint(self.predict_outputs):
            results.update(_as_outputs(self.predictor.predict(model_input), self.predict_outputs, rows))
        if PROBABILITIES in wanted and self.has_proba:
            proba = self.predictor.predict_proba(model_input)  # type: ignore[attr-defined]
            results[PROBABILITIES] = np.asarray(proba)
        if len(spans) == 1:
            return [results]
        return [{k: v[a:b] for k, v in results.items()} for a, b in spans]

    def metadata(self, versions: Sequence[int]) -> dict[str, Any]:
        """The OIP model metadata document."""
        return {
            "name": self.name,
            "versions": [str(v) for v in versions],
            "platform": f"mlpilot_{self.flavor}" if self.flavor else "mlpilot",
            "inputs": self.schema.metadata(),
            "outputs": [o.metadata() for o in self.outputs],
            "parameters": {"version": self.version, "digest": self.digest, "kind": self.schema.kind},
        }
