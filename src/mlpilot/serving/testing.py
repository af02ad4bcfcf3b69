"""Serving without a registry: models held in memory, a server in a background thread, and a load driver.

For tests, notebooks and the demo::

    >>> from sklearn.linear_model import LogisticRegression
    >>> source = InMemorySource()
    >>> model = LogisticRegression().fit(X, y)  # doctest: +SKIP
    >>> source.add("iris", model, input_example=X[:5], aliases=["champion"])  # doctest: +SKIP
    1
    >>> with serve_in_thread(source, ["iris@champion"]) as running:  # doctest: +SKIP
    ...     running.client().predict("iris", X[:2].tolist()).predictions
    [0, 0]
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.errors import InvalidInputError, NotFoundError
from mlpilot.serving.config import FeaturesConfig, ServeConfig
from mlpilot.serving.server import ModelServer
from mlpilot.serving.source import Predictor, ResolvedModel

if TYPE_CHECKING:
    from mlpilot.serving.client import ServingClient
    from mlpilot.serving.features import FeatureSpecs
    from mlpilot.serving.source import ModelSource

__all__ = ["DriveReport", "InMemorySource", "RunningServer", "drive", "predictor_for", "serve_in_thread"]


def predictor_for(model: Any, input_example: Any) -> Predictor:
    """A registry :class:`~mlpilot.registry.Predictor` around an in-memory model, its signature inferred from
    ``input_example`` exactly as :func:`~mlpilot.registry.log_model` would."""
    from mlpilot.registry import Predictor as RegistryPredictor
    from mlpilot.registry import detect_flavor, infer_signature

    handle = detect_flavor(model).wrap(model)
    signature = infer_signature(input_example, handle.predict)
    predictor: Predictor = RegistryPredictor(handle, None, signature)
    return predictor


class InMemorySource:
    """Model versions and aliases held in memory, resolved like the registry's (``name@alias``, ``name/3``,
    ``name/latest``). ``set_alias`` moves an alias as ``mlpilot models alias`` would, for hot-swap tests."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[int, tuple[ResolvedModel, Predictor]]] = {}
        self._aliases: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(
        self,
        name: str,
        model: Any,
        *,
        input_example: Any = None,
        aliases: Sequence[str] = (),
        flavor: str = "",
    ) -> int:
        """Add ``model`` (a predictor, or a model plus ``input_example``) as the next version of ``name``."""
        if input_example is not None:
            predictor = predictor_for(model, input_example)
        elif isinstance(model, Predictor):
            predictor = model
        else:
            raise InvalidInputError(
                "input_example: needed to infer the signature of a raw model", field="input_example"
            )
        with self._lock:
            versions = self._versions.setdefault(name, {})
            version = max(versions, default=0) + 1
            resolved = ResolvedModel(name, version, uuid.uuid4().hex + uuid.uuid4().hex, predictor.signature, flavor)
            versions[version] = (resolved, predictor)
            for alias in aliases:
                self._aliases[(name, alias)] = version
        return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with self._lock:
            if version not in self._versions.get(name, {}):
                raise NotFoundError(f"model {name!r} has no version {version}", field="version")
            self._aliases[(name, alias)] = version

    def resolve(self, ref: str) -> ResolvedModel:
        from mlpilot.registry import parse_model_uri

        uri = parse_model_uri(ref)
        with self._lock:
            versions = self._versions.get(uri.name)
            if not versions:
                raise NotFoundError(f"model {uri.name!r} does not exist", field="name")
            if uri.alias is not None:
                number = self._aliases.get((uri.name, uri.alias))
                if number is None:
                    raise NotFoundError(f"model {uri.name!r} has no alias {uri.alias!r}", field="alias")
            else:
                number = max(versions) if uri.latest else uri.version
            if number not in versions:
                raise NotFoundError(f"model {uri.name!r} has no version {number}", field="version")
            return versions[number][0]

    def load(self, model: ResolvedModel) -> Predictor:
        with self._lock:
            entry = self._versions.get(model.name, {}).get(model.version)
        if entry is None or entry[0].digest != model.digest:
            raise NotFoundError(f"model {model.name!r} version {model.version} is not held here", field="version")
        return entry[1]


@dataclass
class RunningServer:
    """A model server running in a background thread; ``stop()`` (or leaving the ``with`` block) drains it."""

    url: str
    server: ModelServer
    _uvicorn: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _socket: socket.socket = field(repr=False)

    def client(self, **options: Any) -> ServingClient:
        from mlpilot.serving.client import ServingClient

        return ServingClient(self.url, **options)

    def stop(self, timeout: float = 30.0) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def call(self, coroutine: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine (e.g. ``running.server.refresh()``) on the server's event loop and return its result."""
        import asyncio

        loop = self.server.loop
        if loop is None:
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    source: ModelSource,
    refs: Sequence[str] | None = None,
    *,
    config: ServeConfig | None = None,
    features: Mapping[str, FeaturesConfig | str] | None = None,
    feature_specs: FeatureSpecs | None = None,
    features_online_url: str | None = None,
    log_url: str | Path | None = None,
    config_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 60.0,
) -> RunningServer:
    """Load the models and serve them on ``host`` (an ephemeral port by default) from a daemon thread.

    Give either ``refs`` or a full ``config`` (and the ``config_path`` it came from, to follow the file's changes).
    Returns once the server accepts connections.

    ``features`` attaches feature services to models (see :meth:`ServeConfig.with_features`): keys name a model
    by reference, served name or registered name, values are a :class:`~mlpilot.serving.FeaturesConfig` or a
    service name. Callers of those models send entity keys; the definitions come from ``feature_specs`` or the
    source (``RegistrySource(..., features=client.features)``), values from the online store at
    ``features_online_url`` (or each config's ``online_url``)::

        >>> source = RegistrySource(client.registry, client.artifacts, features=client.features)  # doctest: +SKIP
        >>> with serve_in_thread(source, ["churn@champion"], features={"churn": "churn"}) as running:  # doctest: +SKIP
        ...     running.client().predict("churn", [{"customer_id": 42}]).predictions
    """
    if config is None:
        if not refs:
            raise InvalidInputError("refs: name at least one model to serve", field="refs")
        config = ServeConfig.from_refs(list(refs), refresh_interval=0)
    if features:
        config = config.with_features(features)
    server = ModelServer(
        config,
        source,
        log_url=log_url,
        config_path=config_path,
        feature_specs=feature_specs,
        features_online_url=features_online_url,
    ).load()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    import uvicorn

    uv = uvicorn.Server(server.uvicorn_config(host, sock.getsockname()[1]))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="mlpilot-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            uv.should_exit = True
            raise RuntimeError(f"the model server did not start within {startup_timeout} s")
        time.sleep(0.01)
    return RunningServer(f"http://{host}:{sock.getsockname()[1]}", server, uv, thread, sock)


@dataclass(frozen=True)
class DriveReport:
    """What :func:`drive` measured: counts by HTTP status, throughput, latency percentiles in ms."""

    requests: int
    statuses: dict[int, int]
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != 200)


def drive(
    url: str,
    model: str,
    rows: Sequence[Any],
    *,
    requests: int = 200,
    concurrency: int = 4,
    timeout: float = 30.0,
) -> DriveReport:
    """Send ``requests`` one-row ``/v1`` predictions (cycling through ``rows``) from ``concurrency``
    threads."""
    import httpx
    import numpy as np

    if requests < 1 or concurrency < 1:
        raise InvalidInputError("requests and concurrency must be at least 1", field="requests")
    bodies = [httpx.Request("POST", "/", json={"instances": [row]}).content for row in rows]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            for i in counter:
                start = time.perf_counter()
                try:
                    code = client.post(
                        f"/v1/models/{model}:predict",
                        content=bodies[i % len(bodies)],
                        headers={"content-type": "application/json"},
                    ).status_code
                except httpx.HTTPError:
                    code = 0
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[code] = statuses.get(code, 0) + 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000.0
    return DriveReport(requests, statuses, seconds, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))
