"""The data plane's traffic router: ASGI middleware in front of the model server.

For an inference request on an endpoint under a deployment (``POST /v2/models/churn/infer``,
``/v1/models/churn:predict``, ``/invocations?model=churn``), it picks the variant by hashing the assignment key
(:class:`~mlpilot.deploy.routing.RouteTable`), rewrites the path to that version
(``/v2/models/churn/versions/4/infer``) and lets the server answer. Requests that name a version already
(the blue-green preview route) pass through untouched. It adds ``x-mlpilot-variant`` to the response, counts
status, latency and predictions per variant, and mirrors a share of requests to shadows *after* the caller has
its answer, on the same event loop but never on the response path.

To mirror, the router puts a :class:`~mlpilot.serving.shadow.MirrorOrder` in the live request's ASGI scope (an
internal marker no HTTP header can set): the model server hands the parsed request to its low-priority shadow
lane for each shadow taking the same inputs, and the router compares the two answers as arrays once the
shadow's arrives. Other shadows get the whole request replayed, carrying a
:class:`~mlpilot.serving.shadow.ShadowTicket` in its scope that sends it to the same lane, behind every live
request. A mirror is *skipped*, never queued without bound, when more than ``max_shadow_in_flight`` are pending
here or when the server sheds it (a 503: its lane is full, or live traffic left it no room before its deadline);
skips are counted in the variant's ``dropped`` (the shadow report's ``skipped``) and never as the candidate's
errors, so agreement and latency are computed on the mirrors that ran. The shadow's latency excludes the time
it waited in the lane.

Swapping a route table is one dictionary assignment on the event loop, so a request sees either the old
table or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import numpy as np
import orjson

from mlpilot.deploy.observations import VariantStats
from mlpilot.deploy.routing import MAX_KEY, RouteTable, key_from_body
from mlpilot.errors import ServiceUnavailableError
from mlpilot.serving.shadow import MIRROR_SCOPE_KEY, SHADOW_SCOPE_KEY, Mirror, MirrorOrder, ShadowTicket

__all__ = ["StatsCollector", "TrafficRouter", "extract_predictions"]

logger = logging.getLogger("mlpilot.deploy.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StatsKey = tuple[str, int, int, str]  # endpoint, revision, rollout, variant

_VARIANT_HEADER = b"x-mlpilot-variant"


def extract_predictions(body: bytes) -> list[Any] | None:
    """The per-row predictions in a JSON response of the model server (``/v1``, ``/invocations`` or OIP v2),
    or None when the body holds none (binary tensors, errors)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    preds = doc.get("predictions")
    if isinstance(preds, list):
        return preds
    if isinstance(preds, dict) and preds:
        first = next(iter(preds.values()))
        return first if isinstance(first, list) else None
    outputs = doc.get("outputs")
    if isinstance(outputs, list) and outputs:
        chosen = next((o for o in outputs if o.get("name") in ("output", "predictions", "label")), outputs[0])
        data, shape = chosen.get("data"), chosen.get("shape") or []
        if not isinstance(data, list) or not shape:
            return None
        rows = int(shape[0]) or 1
        width = max(1, len(data) // rows)
        return data if width == 1 else [data[i * width] for i in range(rows)]
    return None


def _same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            if not math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9):
                return False
        elif x != y:
            return False
    return True


def _agree(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Whether two answers to the same rows agree (numbers within a relative 1e-6), as :func:`_same` does."""
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        return bool(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))
    return _same(a.tolist(), b.tolist())


class StatsCollector:
    """Per-variant statistics since the last report; only touched on the event loop."""

    def __init__(self) -> None:
        self._stats: dict[StatsKey, VariantStats] = {}

    def get(self, key: StatsKey) -> VariantStats:
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = VariantStats()
        return stats

    def drain(self) -> dict[StatsKey, VariantStats]:
        """Everything recorded since the last drain (the collector starts over)."""
        out, self._stats = self._stats, {}
        return out

    def restore(self, stats: dict[StatsKey, VariantStats]) -> None:
        """Put back what could not be reported, so that nothing is lost."""
        for key, value in stats.items():
            self.get(key).merge(value)


def _route_target(scope: Scope, tables: dict[str, RouteTable]) -> tuple[RouteTable, str] | None:
    """The table and protocol of an unversioned inference request on a routed endpoint, else None."""
    path: str = scope["path"]
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        name = path[11:-6]
        protocol = "v2"
    elif path.startswith("/v1/models/") and path.endswith(":predict"):
        name = path[11:-8]
        protocol = "v1"
    elif path == "/invocations":
        query = scope.get("query_string", b"").decode("latin-1")
        if "version=" in query:
            return None
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        name = params.get("model") or (next(iter(tables)) if len(tables) == 1 else "")
        protocol = "invocations"
    else:
        return None
    if "/" in name:  # an explicit version (the preview route): not routed
        return None
    table = tables.get(name)
    return (table, protocol) if table is not None else None


def _rewrite(scope: Scope, table: RouteTable, protocol: str, version: int) -> Scope:
    routed = dict(scope)
    name = table.endpoint
    if protocol == "v2":
        routed["path"] = f"/v2/models/{name}/versions/{version}/infer"
    elif protocol == "v1":
        routed["path"] = f"/v1/models/{name}/versions/{version}:predict"
    else:
        query = f"model={name}&version={version}"
        routed["query_string"] = query.encode()
    routed["raw_path"] = routed["path"].encode()
    return routed


class TrafficRouter:
    """Routes, counts and mirrors inference requests for the endpoints it has tables for.

    >>> router = TrafficRouter(server.app)  # doctest: +SKIP
    >>> router.set_table(RouteTable.build("churn", variants))  # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp, *, max_shadow_in_flight: int = 256) -> None:
        self.app = app
        self.collector = StatsCollector()
        self.max_shadow_in_flight = max_shadow_in_flight
        self._tables: dict[str, RouteTable] = {}
        self._shadow_in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: coroutines started once the server is up (the follower's poll and report loops)
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._running: list[asyncio.Task[None]] = []

    # -- tables ----------------------------------------------------------------------------------------------
    def set_table(self, table: RouteTable) -> None:
        self._tables = {**self._tables, table.endpoint: table}

    def remove_table(self, endpoint: str) -> None:
        self._tables = {k: v for k, v in self._tables.items() if k != endpoint}

    def table(self, endpoint: str) -> RouteTable | None:
        return self._tables.get(endpoint)

    # -- ASGI ------------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http" or scope["method"] != "POST" or not self._tables:
            await self.app(scope, receive, send)
            return
        target = _route_target(scope, self._tables)
        if target is None:
            await self.app(scope, receive, send)
            return
        await self._route(scope, receive, send, *target)

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._running = [asyncio.create_task(job()) for job in self.background]
            elif message["type"] == "lifespan.shutdown.complete":
                await self.stop_background()
            await send(message)

        return wrapped

    async def stop_background(self) -> None:
        for task in self._running:
            task.cancel()
        for task in self._running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running = []
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _route(self, scope: Scope, receive: Receive, send: Send, table: RouteTable, protocol: str) -> None:
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        key_header = table.routing.key_header.encode()
        key: str | None = None
        request_id: bytes | None = None
        for name, value in headers:
            if name == key_header and 0 < len(value) <= MAX_KEY:
                key = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value
        body: bytes | None = None
        if key is None and table.routing.key_field is not None:
            body = await self._read_body(receive)
            key = key_from_body(body, table.routing.key_field)
        if key is None:
            if request_id is None:
                request_id = os.urandom(16).hex().encode()
                headers.append((b"x-request-id", request_id))
            key = request_id.decode("latin-1")
        version = table.choose(key)
        mirrors = table.mirrors(key)
        if mirrors and body is None:
            body = await self._read_body(receive)
        routed = _rewrite(scope, table, protocol, version)
        routed["headers"] = headers
        order: MirrorOrder | None = None
        if mirrors and self._shadow_in_flight < self.max_shadow_in_flight:
            # the server mirrors the parsed request to shadows that take the same inputs (no second parse)
            order = routed[MIRROR_SCOPE_KEY] = MirrorOrder(tuple(mirrors))
        variant = f"v{version}".encode()
        status = 500
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (_VARIANT_HEADER, variant)]}
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        started = time.perf_counter()
        await self.app(routed, self._replay(body, receive) if body is not None else receive, capture)
        elapsed_ms = (time.perf_counter() - started) * 1000
        payload = b"".join(chunks)
        predictions = extract_predictions(payload) if status == 200 else None
        stats = self.collector.get((table.endpoint, table.revision, table.rollout, f"v{version}"))
        stats.record(status=status, latency_ms=elapsed_ms, predictions=predictions or ())
        direct = {m.version: m for m in order.mirrors} if order is not None else {}
        for shadow in mirrors:
            mirror = direct.get(shadow)
            if mirror is not None and order is not None:
                self._watch(mirror, order, table)
            else:
                self._mirror(scope, headers, body or b"", table, protocol, shadow, predictions)

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _replay(body: bytes, receive: Receive) -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    # -- shadows ---------------------------------------------------------------------------------------------
    def _watch(self, mirror: Mirror, order: MirrorOrder, table: RouteTable) -> None:
        """Count a mirror the server made from the parsed request once it is answered (or skipped)."""
        self._shadow_in_flight += 1
        key = (table.endpoint, table.revision, table.rollout, f"v{mirror.version}")
        mirror.future.add_done_callback(functools.partial(self._watched, mirror, key, order.primary))

    def _watched(
        self, mirror: Mirror, key: StatsKey, primary: np.ndarray[Any, Any] | None, future: asyncio.Future[Any]
    ) -> None:
        self._shadow_in_flight -= 1
        stats = self.collector.get(key)
        if future.cancelled() or isinstance(future.exception(), ServiceUnavailableError):
            stats.dropped += 1  # shed by the lane (live traffic first), or the server stopped: skipped
            return
        latency_ms = mirror.elapsed() * 1000
        status = mirror.status()
        if status != 200:
            stats.record(status=status, latency_ms=latency_ms)
            return
        answer = np.asarray(future.result()[mirror.model.main_output])
        stats.record(status=200, latency_ms=latency_ms, predictions=answer.tolist())
        if primary is not None:
            stats.record_pair(_agree(primary, answer))

    def _mirror(
        self,
        scope: Scope,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        table: RouteTable,
        protocol: str,
        version: int,
        primary: list[Any] | None,
    ) -> None:
        stats = self.collector.get((table.endpoint, table.revision, table.rollout, f"v{version}"))
        if self._shadow_in_flight >= self.max_shadow_in_flight:
            stats.dropped += 1
            return
        self._shadow_in_flight += 1
        shadow_headers = [(k, v + b":shadow" if k == b"x-request-id" else v) for k, v in headers]
        ticket = ShadowTicket()
        shadow_scope = {**_rewrite(scope, table, protocol, version), "headers": shadow_headers}
        shadow_scope[SHADOW_SCOPE_KEY] = ticket
        task = asyncio.get_running_loop().create_task(self._shadow(shadow_scope, body, table, version, primary, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow(
        self,
        scope: Scope,
        body: bytes,
        table: RouteTable,
        version: int,
        primary: list[Any] | None,
        ticket: ShadowTicket,
    ) -> None:
        status = 500
        chunks: list[bytes] = []

        async def sink(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        async def disconnected() -> Message:
            return {"type": "http.disconnect"}

        started = time.perf_counter()
        try:
            await self.app(scope, self._replay(body, disconnected), sink)
        except Exception:  # a shadow must never hurt anyone; it counts as its own error
            logger.exception("shadow request to %s v%s failed", table.endpoint, version)
            status = 500
        finally:
            self._shadow_in_flight -= 1
        elapsed_ms = (time.perf_counter() - started - ticket.waited) * 1000
        stats = self.collector.get((table.endpoint, table.revision, table.rollout, f"v{version}"))
        if status == 503:  # the server shed it (live traffic first): skipped, not the candidate's error
            stats.dropped += 1
            return
        predictions = extract_predictions(b"".join(chunks)) if status == 200 else None
        stats.record(status=status, latency_ms=elapsed_ms, predictions=predictions or ())
        if primary is not None and predictions is not None:
            stats.record_pair(_same(primary, predictions))
