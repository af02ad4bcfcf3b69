"""Errors only the model server raises; they hang under the tree drawn in :mod:`mlpilot.errors`::

InvalidInputError                 400
├── RequestTooLargeError          413  a body or a row count over the configured limit
└── MissingFeaturesError          422  the online store had no value the model needs (unknown entity, TTL)
MlpilotError                      500
├── ModelLoadError                500  a version failed to load or warm up: it is refused, the old one serves
└── PredictionError               500  the model raised on a request (other requests of its batch still run)
    └── WorkerLostError           500  the shadow worker process died or stopped answering during a batch
ServiceUnavailableError           503
└── OverloadedError               503  queue full or latency budget unmeetable: retry after ``retry_after`` s
"""

from __future__ import annotations

from typing import Any

from mlpilot.errors import InvalidInputError, MlpilotError, ServiceUnavailableError

__all__ = [
    "MissingFeaturesError",
    "ModelLoadError",
    "OverloadedError",
    "PredictionError",
    "RequestTooLargeError",
    "WorkerLostError",
    "input_error",
]


class RequestTooLargeError(InvalidInputError):
    http_status = 413


class MissingFeaturesError(InvalidInputError):
    """A feature-service endpoint looked a request's features up, found none for some entity (unknown, or its
    values are older than the view's TTL), and the model cannot predict without them."""

    http_status = 422


class ModelLoadError(MlpilotError):
    """A model version could not be loaded or failed its warm-up prediction."""


class PredictionError(MlpilotError):
    """The model raised while predicting a request."""


class WorkerLostError(PredictionError):
    """The shadow lane's worker process died or stopped answering while running a batch."""


class OverloadedError(ServiceUnavailableError):
    def __init__(self, message: str, *, retry_after: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


def input_error(name: str, problem: str, *, expected: Any, got: Any) -> InvalidInputError:
    """A 400 naming the input, what was expected and what came.

    >>> input_error("age", "wrong datatype", expected="FP64", got="BYTES").message
    "input 'age': wrong datatype: expected FP64, got BYTES"
    """
    return InvalidInputError(
        f"input {name!r}: {problem}: expected {expected}, got {got}", field=name, expected=expected, got=got
    )
