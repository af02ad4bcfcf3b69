"""The model server: a serving config and a model source composed into an ASGI app, run by uvicorn.

>>> from mlpilot.serving import ModelServer, ServeConfig
>>> server = ModelServer(ServeConfig.from_refs(["churn@champion"]), source).load()  # doctest: +SKIP
>>> server.run()  # blocks; Ctrl-C drains queues and flushes the prediction log  # doctest: +SKIP

One process serves HTTP on its event loop (uvloop + httptools) and runs the models in a small pool of worker
threads: NumPy, scikit-learn and the other model libraries release the GIL while they compute, so the event
loop keeps parsing requests while a batch runs. Each worker thread limits BLAS/OpenMP to ``model_threads``
threads, so that concurrent batches do not start competing thread teams on the same cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlpilot.errors import MissingDependencyError, MlpilotError
from mlpilot.serving.accesslog import AccessLog
from mlpilot.serving.config import ServeConfig
from mlpilot.serving.features import FeatureSpecs, ServingFeatures
from mlpilot.serving.metrics import ServingMetrics
from mlpilot.serving.predlog import PredictionLog
from mlpilot.serving.repository import ModelRepository, SwapEvent
from mlpilot.serving.source import ModelSource

__all__ = ["ModelServer", "available_cores", "server_version", "tune_process"]

logger = logging.getLogger("mlpilot.serving")


def server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlpilot")
    except PackageNotFoundError:
        return "0+unknown"


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity and taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _limit_threads(limit: int) -> None:
    """Runs in each worker thread: OpenMP's thread count is per calling thread, so it must be set there."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the libraries use their defaults
        return
    threadpool_limits(limits=limit)


class ModelServer:
    """Serves the models of ``config`` from ``source``.

    ``log_url`` is where the prediction log goes when the config does not say (the CLI passes
    ``$MLPILOT_HOME/predictions``). With ``config_path`` (the TOML file ``config`` was read from), the file is
    re-read when it changes and the new set of models applied, checked every ``refresh_interval`` seconds.
    ``access_log`` receives one JSON line per request when the config enables access logs (by default they go to
    the ``mlpilot.serving.access`` logger).

    Models whose config declares ``features`` look their inputs up from a feature service
    (:mod:`mlpilot.serving.features`): ``feature_specs`` provides the registered definitions (by default the
    source's own ``feature_specs``, as :class:`~mlpilot.serving.RegistrySource` has when given ``features=``)
    and ``features_online_url`` is the online store of configs that name none. With the source's
    ``feature_version`` (``RegistrySource`` has one), the refresh loop rebuilds lookups when new definitions
    are applied.
    """

    def __init__(
        self,
        config: ServeConfig,
        source: ModelSource,
        *,
        log_url: str | Path | None = None,
        metrics: ServingMetrics | None = None,
        config_path: str | Path | None = None,
        access_log: AccessLog | None = None,
        feature_specs: FeatureSpecs | None = None,
        features_online_url: str | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.threads = config.inference_threads or max(1, available_cores() - 1)
        self.executor = ThreadPoolExecutor(
            self.threads,
            thread_name_prefix="mlpilot-infer",
            initializer=_limit_threads,
            initargs=(config.model_threads,),
        )
        self.metrics = metrics or ServingMetrics()
        self.repository = ModelRepository(source, config, self.executor, self.threads, self.metrics)
        self.features = ServingFeatures(
            feature_specs or getattr(source, "feature_specs", None),
            online_url=features_online_url,
            metrics=self.metrics,
            version=None if feature_specs is not None else getattr(source, "feature_version", None),
        )
        url = config.log.url or (str(log_url) if log_url is not None else None)
        self.predlog: PredictionLog | None = None
        if config.log.enabled and url:
            self.predlog = PredictionLog(
                url,
                sample_rate=config.log.sample_rate,
                flush_interval=config.log.flush_interval,
                metrics=self.metrics,
            )
        self.access_log = (access_log or AccessLog()) if config.access_log else None
        self.config_path = Path(config_path) if config_path is not None else None
        self._config_mtime = self._mtime()
        self._refresher: asyncio.Task[None] | None = None
        self._app: Any = None
        #: the event loop serving requests, once started
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def app(self) -> Any:
        """The ASGI application."""
        if self._app is None:
            from mlpilot.serving.app import ServingApp

            self._app = ServingApp(self)
        return self._app

    def load(self) -> ModelServer:
        """Load, verify and warm every configured model (blocking). Raises if any cannot be served."""
        self._load_models()
        self.warm_workers()
        return self

    def _load_models(self) -> None:
        # Feature services first: a misnamed service fails in a second, before models take minutes to load.
        self.features.prepare(self.config)
        self.repository.load_all()
        self.features.bind(self.config, self.repository)

    def warm_workers(self) -> None:
        """Start every worker thread now and run each model once in it, so that the first requests do not pay
        for thread start-up and thread-pool discovery."""
        barrier = threading.Barrier(self.threads)
        repo = self.repository
        models = [repo.lookup(name, v).model for name in repo.names for v in repo.versions(name)]

        def warm() -> None:
            barrier.wait(timeout=60)  # one task per thread: all threads must be up before any returns
            for model in models:
                with contextlib.suppress(Exception):  # prepare() already vetted the model
                    model.warm()

        for future in [self.executor.submit(warm) for _ in range(self.threads)]:
            future.result()

    async def refresh(self) -> list[SwapEvent]:
        """Re-resolve every reference now and hot-swap the versions that moved."""
        return await self.repository.refresh()

    async def apply_config(self, config: ServeConfig) -> list[SwapEvent]:
        """Switch to another set of models (new ones are loaded before old ones go)."""
        for model in config.models:
            try:
                await asyncio.to_thread(self.features.prepare_model, model)
            except MlpilotError as exc:
                return [SwapEvent(model.ref, model.name or "", None, None, exc.message, type(exc).__name__)]
        events = await self.repository.apply(config)
        if not any(e.error for e in events):
            self.config = config
            self.features.bind(config, self.repository, strict=False)
        return events

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        # The event loop's thread may run a lone cheap request itself: give it the worker threads' limits.
        _limit_threads(self.config.model_threads)
        self.repository.allow_inline()
        if not self.repository.names:
            await asyncio.to_thread(self._load_models)
        if self.predlog is not None:
            self.predlog.start()
        if self.access_log is not None:
            self.access_log.start()
        if self.config.refresh_interval > 0:
            self._refresher = asyncio.create_task(self._refresh_loop(self.config.refresh_interval))

    def _mtime(self) -> float | None:
        try:
            return self.config_path.stat().st_mtime if self.config_path is not None else None
        except OSError:
            return None

    async def _reload_config(self) -> None:
        from mlpilot.serving.config import load_serve_config

        mtime = self._mtime()
        if self.config_path is None or mtime is None or mtime == self._config_mtime:
            return
        self._config_mtime = mtime
        try:
            config = load_serve_config(self.config_path, host=self.config.host, port=self.config.port)
        except MlpilotError as exc:
            logger.error("%s changed but cannot be used, keeping the current models: %s", self.config_path, exc)
            return
        for event in await self.apply_config(config):
            if event.error:
                logger.error("%s: not applied: %s", self.config_path, event.error)

    async def _refresh_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._reload_config()
                await self.repository.refresh()
                await asyncio.to_thread(self.features.refresh)
            except Exception:  # a refresh must never stop the server; the next one tries again
                logger.exception("refreshing the served models failed")

    async def shutdown(self) -> None:
        """Stop refreshing, answer everything queued, flush the prediction log, stop the worker threads."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self.repository.drain()
        await asyncio.to_thread(self.features.close)
        if self.predlog is not None:
            await asyncio.to_thread(self.predlog.close)
        if self.access_log is not None:
            await asyncio.to_thread(self.access_log.close)
        self.executor.shutdown(wait=True)
        self.repository.close()
        self.loop = None

    def uvicorn_config(self, host: str | None = None, port: int | None = None, **options: Any) -> Any:
        """A ``uvicorn.Config`` for this server: uvloop and httptools when installed, uvicorn's access log off
        (ours is structured and cheaper)."""
        try:
            import uvicorn
        except ImportError as exc:
            raise MissingDependencyError("uvicorn", "serve") from exc
        loop = "uvloop" if _has("uvloop") else "asyncio"
        http = "httptools" if _has("httptools") else "h11"
        settings: dict[str, Any] = {
            "host": host or self.config.host,
            "port": self.config.port if port is None else port,
            "loop": loop,
            "http": http,
            "access_log": False,
            "server_header": False,
            "date_header": False,
            "lifespan": "on",
            "timeout_graceful_shutdown": 30,
            "log_level": "warning",
            "backlog": 4096,
        }
        settings.update(options)
        return uvicorn.Config(self.app, **settings)

    def run(self, host: str | None = None, port: int | None = None, **options: Any) -> None:
        """Serve until interrupted (blocking)."""
        import uvicorn

        config = self.uvicorn_config(host, port, **options)
        tune_process()
        uvicorn.Server(config).run()


def tune_process() -> None:
    """Settings for a process that serves until it exits (``mlpilot serve``, ``mlpilot deploy serve``)."""
    import gc

    # Everything loaded so far (libraries, models) lives as long as the process: keeping it out of the cyclic
    # garbage collector's scans removes the long collection pauses that would show up as tail latency.
    gc.collect()
    gc.freeze()
    # Background threads (prediction log, access log, loading, the shadow lane) hold the GIL for at most 1 ms,
    # not 5, before the event loop gets it back: shorter stalls on the request path.
    sys.setswitchinterval(0.001)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
