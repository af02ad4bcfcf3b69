"""``Client``: the SDK's entry point over either the embedded store or a remote ``mlpilot server``.

>>> import mlpilot
>>> client = mlpilot.Client()                        # embedded: $MLPILOT_HOME (./.mlpilot) SQLite + files
>>> client = mlpilot.Client("http://mlp:5080", token="mlp_…")  # doctest: +SKIP
>>> client = mlpilot.Client("postgresql+psycopg://db/mlpilot")  # doctest: +SKIP

Either way the same backends are used by the same SDK code: ``client.tracking`` (a ``TrackingBackend``),
``client.registry`` (a ``RegistryBackend``), ``client.deployments`` (a ``DeploymentsBackend``) and
``client.artifacts`` (an ``ArtifactStore``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlpilot.artifacts import ArtifactStore, artifact_store_from_settings
from mlpilot.config import Settings, load_settings
from mlpilot.deploy import Deployments, DeploymentsBackend
from mlpilot.features.service import FeatureStoreBackend
from mlpilot.monitor.backend import MonitorBackend
from mlpilot.registry import ModelVersionInfo, Predictor, RegistryBackend, RegistryService
from mlpilot.registry import load_model as _load_model
from mlpilot.registry import log_model as _log_model
from mlpilot.tracking import ActiveRun, MetricPoint, Run, RunPage, TrackingBackend, TrackingService
from mlpilot.tracking import start_run as _start_run

__all__ = ["Client", "default_client"]


class Client:
    """Tracking and registry operations against one store or server.

    ``url`` is a server (``http(s)://…``), a database URL (``sqlite:///…``, ``postgresql+psycopg://…``), or
    None for the settings (``MLPILOT_SERVER_URL``, else ``MLPILOT_DB_URL``, else ``$MLPILOT_HOME/mlpilot.db``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        artifact_url: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        target = url or self.settings.server_url
        self.tracking: TrackingBackend
        self.registry: RegistryBackend
        self.artifacts: ArtifactStore
        self.deployments: DeploymentsBackend
        self.monitor: MonitorBackend
        self.features: FeatureStoreBackend
        if target is not None and target.startswith(("http://", "https://")):
            from mlpilot.remote.artifacts import RestArtifactStore
            from mlpilot.remote.deploy import RestDeployments
            from mlpilot.remote.http import HttpTransport
            from mlpilot.remote.monitor import RestMonitor
            from mlpilot.remote.registry import RestRegistry
            from mlpilot.remote.tracking import RestTracking

            secret = token or (self.settings.token.get_secret_value() if self.settings.token else None)
            transport = HttpTransport(target, token=secret)
            self.url = transport.base_url
            self.tracking = RestTracking(transport)
            self.registry = RestRegistry(transport)
            self.artifacts = RestArtifactStore(transport)
            self.deployments = RestDeployments(transport)
            self.monitor = RestMonitor(transport)
            from mlpilot.features.rest import RestFeatureStore

            self.features = RestFeatureStore(transport)
            self._closers: list[Any] = [transport]
        else:
            from mlpilot.store import Store

            store = Store(target or self.settings.resolved_db_url, busy_timeout=self.settings.sqlite_busy_timeout)
            self.url = store.safe_url
            self.store = store
            self.tracking = TrackingService(store)
            self.registry = RegistryService(store)
            self.artifacts = artifact_store_from_settings(self.settings, artifact_url)
            self.deployments = Deployments(store, artifacts=self.artifacts)
            from mlpilot.monitor.backend import default_predictions_url
            from mlpilot.monitor.service import Monitor

            self.monitor = Monitor(
                store,
                self.artifacts,
                predictions_url=default_predictions_url(self.settings),
                interval=self.settings.monitor_interval,
                model_loader=lambda name, version: _load_model(
                    f"models:/{name}/{version}", self.registry, self.artifacts
                ),
            )
            from mlpilot.features.online import default_online_url
            from mlpilot.features.service import FeatureStoreService

            self.features = FeatureStoreService(
                store, online=self.settings.features_online_url or default_online_url(self.settings.home)
            )
            self._closers = [self.features, self.monitor, self.artifacts, store]

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- tracking ---------------------------------------------------------------------------------------------
    def start_run(
        self,
        experiment: str | None = None,
        *,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        nested: bool = False,
        parent: str | ActiveRun | None = None,
    ) -> ActiveRun:
        """Start a run; use it as a context manager so that it ends FINISHED, or FAILED on an exception."""
        return _start_run(
            self.tracking,
            self.artifacts,
            experiment=experiment,
            name=name,
            tags=tags,
            nested=nested,
            parent=parent,
            flush_interval=self.settings.flush_interval,
        )

    def get_run(self, run_id: str) -> Run:
        return self.tracking.get_run(run_id)

    def search_runs(
        self,
        filter: str | None = None,
        experiment: str | Iterable[str] | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """Runs matching ``filter`` (e.g. ``"metrics.auc > 0.9 and tags.team = 'growth'"``), one page."""
        return self.tracking.search_runs(
            filter, experiment=experiment, order_by=order_by, max_results=max_results, page_token=page_token
        )

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        return self.tracking.get_metric_history(run_id, key)

    # -- registry ---------------------------------------------------------------------------------------------
    def log_model(
        self,
        model: Any,
        name: str,
        *,
        input_example: Any = None,
        run: str | ActiveRun | None = None,
        training_data: Any = None,
        metrics: Mapping[str, float] | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        aliases: Sequence[str] | None = None,
        flavor: str | None = None,
        requirements: Sequence[str] = (),
    ) -> ModelVersionInfo:
        """Register ``model`` as the next version of ``name`` (flavor detected, signature inferred)."""
        return _log_model(
            model,
            name,
            registry=self.registry,
            artifacts=self.artifacts,
            input_example=input_example,
            run=run,
            training_data=training_data,
            metrics=metrics,
            description=description,
            tags=tags,
            aliases=aliases,
            flavor=flavor,
            requirements=requirements,
        )

    def load_model(self, uri: str | ModelVersionInfo) -> Predictor:
        """Load ``models:/name@alias`` or ``models:/name/3`` after verifying its artifact's hash."""
        return _load_model(uri, self.registry, self.artifacts)

    def get_model_version(self, name: str, version: int | str) -> ModelVersionInfo:
        if isinstance(version, str) and not version.isdigit():
            return self.registry.resolve(f"models:/{name}/{version}" if version == "latest" else f"{name}@{version}")
        return self.registry.get_model_version(name, int(version))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.registry.set_alias(name, alias, int(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.registry.delete_alias(name, alias)

    # -- monitoring ---------------------------------------------------------------------------------------------
    def log_labels(
        self,
        request_ids: Sequence[str] | None = None,
        labels: Sequence[Any] | None = None,
        *,
        entity_ids: Sequence[str] | None = None,
        times: Sequence[Any] | None = None,
        endpoint: str | None = None,
    ) -> Any:
        """Send ground truth for logged predictions (by request id, or entity and time); all or nothing."""
        from mlpilot.monitor.backend import log_labels

        return log_labels(
            request_ids, labels, entity_ids=entity_ids, times=times, endpoint=endpoint, backend=self.monitor
        )

    def close(self) -> None:
        for item in self._closers:
            item.close()


_defaults: dict[tuple[Any, ...], Client] = {}
_defaults_lock = threading.Lock()


def default_client() -> Client:
    """The client the module-level SDK functions use, for the settings in force now.

    Settings are read on every call, so changing ``MLPILOT_HOME`` or ``MLPILOT_SERVER_URL`` takes effect; one
    client per distinct target is kept open.
    """
    s = load_settings()
    token = s.token.get_secret_value() if s.token else None
    key = (s.server_url, s.resolved_db_url, s.resolved_artifact_url, token)
    with _defaults_lock:
        client = _defaults.get(key)
        if client is None:
            client = _defaults[key] = Client(settings=s)
        return client
