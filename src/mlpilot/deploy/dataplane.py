"""A model server that follows deployments: the serving package's server, the traffic router and the follower,
composed.

``mlpilot deploy serve churn --control-plane http://mlpilot:5080`` runs one; tests and benchmarks use
:func:`serve_in_thread`::

    >>> plane = build_data_plane(source, control_url=url, names=["churn"])  # doctest: +SKIP
    >>> with serve_in_thread(plane) as running:  # doctest: +SKIP
    ...     httpx.post(f"{running.url}/v1/models/churn:predict", json={"instances": [[1, 2, 3, 4]]})
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.deploy.entities import ServingDocument
from mlpilot.deploy.follower import DeploymentFollower, fetch_documents, serve_config_for
from mlpilot.deploy.router import TrafficRouter
from mlpilot.errors import ConfigError, RemoteError

if TYPE_CHECKING:
    from mlpilot.serving import ModelServer, ModelSource
    from mlpilot.serving.accesslog import AccessLog

__all__ = ["DataPlane", "RunningDataPlane", "build_data_plane", "serve_in_thread"]


@dataclass
class DataPlane:
    """The composed data plane; ``app`` is the ASGI application to serve."""

    server: ModelServer
    router: TrafficRouter
    follower: DeploymentFollower

    @property
    def app(self) -> TrafficRouter:
        return self.router

    def uvicorn_config(self, host: str | None = None, port: int | None = None, **options: Any) -> Any:
        config = self.server.uvicorn_config(host, port, **options)
        config.app = self.router
        return config

    def run(self, host: str | None = None, port: int | None = None) -> None:
        """Serve until interrupted (blocking)."""
        import uvicorn

        from mlpilot.serving.server import tune_process

        config = self.uvicorn_config(host, port)
        tune_process()
        uvicorn.Server(config).run()


def _initial_documents(
    control_url: str, names: Sequence[str], token: str | None, initial_config: str | Path | None
) -> list[ServingDocument]:
    try:
        return fetch_documents(control_url, names, token=token)
    except RemoteError:
        if initial_config is None:
            raise
    # The control plane is unreachable at start-up: serve what the mounted config says until it is back.
    try:
        raw = json.loads(Path(initial_config).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{initial_config}: cannot read the initial serving config: {exc}", key="initial_config"
        ) from exc
    docs = [ServingDocument.model_validate(d) for d in (raw if isinstance(raw, list) else [raw])]
    return [d for d in docs if d.name in names]


def build_data_plane(
    source: ModelSource,
    *,
    control_url: str,
    names: Sequence[str],
    token: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    poll_interval: float = 0.2,
    report_interval: float = 1.0,
    log_url: str | Path | None = None,
    initial_config: str | Path | None = None,
    max_shadow_in_flight: int = 256,
    replica: str | None = None,
    serve_options: dict[str, Any] | None = None,
    access_log: AccessLog | None = None,
    features: Mapping[str, Any] | None = None,
    features_online_url: str | None = None,
) -> DataPlane:
    """Fetch the serving documents of ``names``, load their versions from ``source`` and wire the router and
    the follower (blocking: models load before this returns). ``serve_options`` are
    :class:`~mlpilot.serving.ServeConfig` fields (batching, prediction log, threads...); ``access_log`` is
    where access-log lines go when ``serve_options`` turn them on. A deployment created with a feature service
    has its callers' entity keys looked up in it (the ``source`` provides the registered definitions,
    ``features_online_url`` the online store; see :mod:`mlpilot.serving.features`); ``features`` maps
    deployment names to a service replacing the declared one on this data plane."""
    from mlpilot.serving import ModelServer, ServeConfig

    if not names:
        raise ConfigError("name at least one deployment to serve", key="names")
    # the options are checked first: a mistyped one is reported as such, reachable control plane or not
    base = ServeConfig.from_dict(
        {
            "models": [{"ref": "placeholder/1"}],
            "host": host,
            "port": port,
            # References are pinned versions: there is no alias to re-resolve.
            "refresh_interval": 0,
            "access_log": False,
            **(serve_options or {}),
        },
        source="mlpilot deploy serve",
    )
    docs = _initial_documents(control_url, names, token, initial_config)
    server = ModelServer(
        serve_config_for(base, docs, features),
        source,
        log_url=log_url,
        access_log=access_log,
        features_online_url=features_online_url,
    ).load()
    router = TrafficRouter(server.app, max_shadow_in_flight=max_shadow_in_flight)
    follower = DeploymentFollower(
        server,
        router,
        control_url=control_url,
        names=names,
        token=token,
        poll_interval=poll_interval,
        report_interval=report_interval,
        replica=replica,
        features=features,
    )
    follower.install(docs)
    router.background += [follower.run_polls, follower.run_reports]
    return DataPlane(server, router, follower)


@dataclass
class RunningDataPlane:
    """A data plane serving from a background thread."""

    url: str
    plane: DataPlane
    _uvicorn: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _socket: socket.socket = field(repr=False)

    def stop(self, timeout: float = 30.0) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> RunningDataPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    plane: DataPlane, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0
) -> RunningDataPlane:
    """Serve ``plane`` on ``host`` (an ephemeral port by default) from a daemon thread; returns once it accepts
    connections."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(plane.uvicorn_config(host, bound))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mlpilot-dataplane", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the data plane did not start within {timeout} s")
        time.sleep(0.01)
    return RunningDataPlane(f"http://{host}:{bound}", plane, server, thread, sock)
