"""The data plane following the control plane: poll serving documents, hot-swap, report statistics.

Every ``poll_interval`` seconds the follower asks ``GET /api/v1/deployments/{name}/config`` with the ETag it
holds; the control plane answers ``304`` (one indexed read) until the deployment changes. A change is applied
without failing a request:

1. the model server loads every version the new document names, *next to* the ones serving now (it keeps
   answering meanwhile; a version that fails to load changes nothing, and the next poll retries);
2. the route table is swapped in one assignment: new requests go to the new split;
3. versions no longer named are retired; requests already holding them finish on them.

A rollback to a version that is still loaded (the primary during a canary, a standby after a promotion) is
therefore a route swap, within one poll interval. Every ``report_interval`` seconds the router's per-variant
statistics are posted to ``POST /api/v1/deployments/{name}/observations``; a failed post keeps them for the
next one.

A deployment created with a feature service (``features`` in its document) has every version it serves look
its inputs up from that service; every ``features_interval`` seconds the follower checks whether new feature
definitions were applied and, if so, the server rebuilds those lookups and swaps them in
(:meth:`mlpilot.serving.features.ServingFeatures.refresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from mlpilot.deploy.entities import ServingDocument
from mlpilot.deploy.observations import VariantStats
from mlpilot.deploy.routing import RouteTable
from mlpilot.errors import ConfigError, NotFoundError, RemoteError, error_from_payload

if TYPE_CHECKING:
    from mlpilot.deploy.router import StatsKey, TrafficRouter
    from mlpilot.serving import ModelServer, ServeConfig

__all__ = ["DeploymentFollower", "fetch_documents", "table_for"]

logger = logging.getLogger("mlpilot.deploy.follower")

_API = "/api/v1/deployments"


def table_for(doc: ServingDocument) -> RouteTable:
    return RouteTable.build(doc.name, doc.variants, routing=doc.routing, revision=doc.revision, rollout=doc.rollout)


def _headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": "mlpilot-serve"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if response.content else None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise error_from_payload(response.status_code, body)


def fetch_documents(control_url: str, names: Sequence[str], *, token: str | None = None) -> list[ServingDocument]:
    """The current serving documents of ``names`` (blocking; used once at start-up)."""
    try:
        with httpx.Client(base_url=control_url.rstrip("/"), headers=_headers(token), timeout=30) as http:
            return [
                ServingDocument.model_validate(_check(http.get(f"{_API}/{quote(n, safe='')}/config"))) for n in names
            ]
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the control plane at {control_url}: {exc}") from exc


def serve_config_for(
    base: ServeConfig, docs: Sequence[ServingDocument], features: Mapping[str, Any] | None = None
) -> ServeConfig:
    """``base`` serving the models the documents name (primary first, so unrouted requests get it), each with
    its deployment's feature service when it has one.

    ``features`` maps deployment names to a feature service (a name or a :class:`~mlpilot.serving.FeaturesConfig`)
    that replaces the one the deployment declares, on this data plane only (e.g. to name another online
    store): callers of those endpoints send entity keys."""
    from mlpilot.serving import ModelConfig

    seen: dict[tuple[str, str], ModelConfig] = {}
    for doc in docs:
        for model in doc.models:
            mc = ModelConfig(**model)
            seen.setdefault((mc.ref, mc.name or ""), mc)
    if not seen:
        raise ConfigError("the serving documents name no model", key="models")
    config = base.model_copy(update={"models": list(seen.values())})
    served = {d.name for d in docs}
    wanted = {name: service for name, service in (features or {}).items() if name in served}
    return config.with_features(wanted) if wanted else config


class DeploymentFollower:
    """Keeps ``server`` and ``router`` on the control plane's serving documents for ``names``."""

    def __init__(
        self,
        server: ModelServer,
        router: TrafficRouter,
        *,
        control_url: str,
        names: Sequence[str],
        token: str | None = None,
        poll_interval: float = 0.2,
        report_interval: float = 1.0,
        replica: str | None = None,
        features: Mapping[str, Any] | None = None,
        features_interval: float = 10.0,
    ) -> None:
        if poll_interval <= 0 or report_interval <= 0:
            raise ConfigError("poll_interval and report_interval must be positive", key="poll_interval")
        if features_interval <= 0:
            raise ConfigError("features_interval must be positive", key="features_interval")
        self.server = server
        self.router = router
        self.control_url = control_url.rstrip("/")
        self.names = list(names)
        self.token = token
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        #: deployment name -> the feature service replacing the one the deployment declares
        self.features = dict(features or {})
        #: seconds between checks for new feature definitions (a small read per project in use)
        self.features_interval = features_interval
        self._docs: dict[str, ServingDocument] = {}
        self._http: httpx.AsyncClient | None = None
        #: (deployment, revision, wall-clock time) of every document applied, in order
        self.applied: list[tuple[str, int, float]] = []

    def install(self, docs: Sequence[ServingDocument]) -> None:
        """Route by ``docs`` from the start (the server was built from :func:`serve_config_for` of them)."""
        for doc in docs:
            self._docs[doc.name] = doc
            self.router.set_table(table_for(doc))
            self.applied.append((doc.name, doc.revision, time.time()))

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.control_url, headers=_headers(self.token), timeout=10)
        return self._http

    async def poll_once(self) -> list[ServingDocument]:
        """Fetch every document that changed (conditional GETs)."""
        changed = []
        for name in self.names:
            held = self._docs.get(name)
            headers = {"If-None-Match": held.etag} if held is not None else {}
            response = await self._client().get(f"{_API}/{quote(name, safe='')}/config", headers=headers)
            if response.status_code == 304:
                continue
            doc = ServingDocument.model_validate(_check(response))
            if held is None or doc.revision != held.revision:
                changed.append(doc)
        return changed

    async def apply(self, changed: Sequence[ServingDocument]) -> bool:
        """Load, switch, retire; False (and nothing switched) when a new version could not be loaded."""
        docs = {**self._docs, **{d.name: d for d in changed}}
        wanted = serve_config_for(self.server.config, list(docs.values()), self.features)
        union = wanted.model_copy(
            update={"models": [*wanted.models, *(m for m in self.server.config.models if m not in wanted.models)]}
        )
        events = await self.server.apply_config(union)
        failures = [e.error for e in events if e.error]
        if failures:
            logger.error("not switching: %s", "; ".join(failures))
            return False
        for doc in changed:
            self._docs[doc.name] = doc
            self.router.set_table(table_for(doc))
            self.applied.append((doc.name, doc.revision, time.time()))
            logger.info("deployment %s: now at revision %s (%s)", doc.name, doc.revision, doc.state)
        await self.server.apply_config(wanted)
        return True

    async def run_polls(self) -> None:
        features_due = time.monotonic() + self.features_interval
        while True:
            try:
                changed = await self.poll_once()
                if changed:
                    await self.apply(changed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the control plane may be down: keep serving what we have
                logger.warning("polling the control plane failed: %s", exc)
            if time.monotonic() >= features_due:
                features_due = time.monotonic() + self.features_interval
                try:
                    await asyncio.to_thread(self.server.features.refresh)
                except Exception as exc:  # never stops following; the next check tries again
                    logger.warning("checking for new feature definitions failed: %s", exc)
            await asyncio.sleep(self.poll_interval)

    async def report_once(self) -> None:
        drained = self.router.collector.drain()
        if not drained:
            return
        groups: dict[tuple[str, int, int], dict[str, VariantStats]] = {}
        for (endpoint, revision, rollout, variant), stats in drained.items():
            groups.setdefault((endpoint, revision, rollout), {})[variant] = stats
        failed: dict[StatsKey, VariantStats] = {}
        for (endpoint, revision, rollout), variants in groups.items():
            body = {
                "source": self.replica,
                "revision": revision,
                "rollout": rollout,
                "variants": {k: v.to_dict() for k, v in variants.items()},
            }
            try:
                _check(await self._client().post(f"{_API}/{quote(endpoint, safe='')}/observations", json=body))
            except NotFoundError:
                continue  # the deployment was deleted: its statistics have nowhere to go
            except Exception as exc:
                logger.warning("reporting statistics for %s failed, keeping them: %s", endpoint, exc)
                failed.update({(endpoint, revision, rollout, k): v for k, v in variants.items()})
        self.router.collector.restore(failed)

    async def run_reports(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.report_interval)
                await self.report_once()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.report_once())
            if self._http is not None:
                await self._http.aclose()
                self._http = None
