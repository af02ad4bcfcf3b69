"""The model server (data plane): Open Inference Protocol v2 with binary tensors, MLflow's ``/invocations``, a
plain JSON route, adaptive batching, hot swap, backpressure, Prometheus metrics and a Parquet prediction log.

It never touches the metadata database on a request: models come from a :class:`ModelSource`, resolved and
loaded at start-up and on refresh only.

>>> from mlpilot.serving import ModelServer, RegistrySource, ServeConfig
>>> source = RegistrySource(client.registry, client.artifacts)  # doctest: +SKIP
>>> config = ServeConfig.from_refs(["churn@champion"])
>>> ModelServer(config, source, log_url="/tmp/preds").load().run()  # doctest: +SKIP
"""

from __future__ import annotations

from mlpilot.errors import MissingDependencyError

try:  # the serving extra: fail with the install command rather than a bare ImportError
    import orjson  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(_exc.name or "orjson", "serve") from _exc

from mlpilot.serving.batching import BatchSettings
from mlpilot.serving.client import InferResult, Prediction, ServingClient
from mlpilot.serving.config import (
    BatchingConfig,
    FeaturesConfig,
    LogConfig,
    ModelConfig,
    ServeConfig,
    load_serve_config,
)
from mlpilot.serving.errors import (
    MissingFeaturesError,
    ModelLoadError,
    OverloadedError,
    PredictionError,
    RequestTooLargeError,
)
from mlpilot.serving.predlog import PredictionLog
from mlpilot.serving.registry_source import RegistrySource
from mlpilot.serving.repository import SwapEvent
from mlpilot.serving.server import ModelServer
from mlpilot.serving.source import ModelSource, Predictor, ResolvedModel

__all__ = [
    "BatchSettings",
    "BatchingConfig",
    "FeaturesConfig",
    "InferResult",
    "LogConfig",
    "MissingFeaturesError",
    "ModelConfig",
    "ModelLoadError",
    "ModelServer",
    "ModelSource",
    "OverloadedError",
    "Prediction",
    "PredictionError",
    "PredictionLog",
    "Predictor",
    "RegistrySource",
    "RequestTooLargeError",
    "ResolvedModel",
    "ServeConfig",
    "ServingClient",
    "SwapEvent",
    "load_serve_config",
]
