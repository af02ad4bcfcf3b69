"""The model server's ASGI application: plain ASGI, no framework on the request path.

Routes (``{m}`` a served model name, ``{v}`` a version number):

=================================================  =========================================================
``GET  /v2``, ``/v2/health/live``, ``…/ready``     OIP server metadata and health
``GET  /v2/models/{m}[/versions/{v}][/ready]``     OIP model metadata (from the signature) and readiness
``POST /v2/models/{m}[/versions/{v}]/infer``       OIP inference, JSON or binary tensors
``POST /invocations``                              MLflow scoring protocol (``?model=`` picks a model)
``GET  /ping``, ``/health``, ``/version``          MLflow's health routes
``POST /v1/models/{m}[/versions/{v}]:predict``     plain JSON rows
``GET  /v1/models``, ``/v1/models/{m}``            what is served
``GET  /metrics``                                  Prometheus exposition
=================================================  =========================================================

Every response carries ``x-request-id`` (the caller's, if it sent one).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from mlpilot.errors import InvalidInputError, MlpilotError, NotFoundError
from mlpilot.serving import features, oip, payloads
from mlpilot.serving.errors import OverloadedError, PredictionError, RequestTooLargeError
from mlpilot.serving.metrics import CONTENT_TYPE
from mlpilot.serving.predlog import LogRecord
from mlpilot.serving.schema import Columns
from mlpilot.serving.shadow import MIRROR_SCOPE_KEY, SHADOW_SCOPE_KEY, Mirror, MirrorOrder, ShadowTicket

if TYPE_CHECKING:
    from mlpilot.serving.accesslog import AccessLog
    from mlpilot.serving.model import Outputs
    from mlpilot.serving.repository import Deployed
    from mlpilot.serving.server import ModelServer

__all__ = ["ServingApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("mlpilot.serving")

_JSON = b"application/json"
_MAX_REQUEST_ID = 128


class _Disconnected(Exception):
    pass


def _valid_id(value: bytes) -> bool:
    """Request ids go back in a header and into the log: printable ASCII, bounded."""
    return 0 < len(value) <= _MAX_REQUEST_ID and all(32 < c < 127 for c in value)


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidInputError(f"version: expected a positive integer, got {text[:40]!r}", field="version")
    return int(text)


def _model_path(rest: str) -> tuple[str, str | None, str]:
    """``churn/versions/3/infer`` -> (``churn``, ``3``, ``infer``); the tail may be empty."""
    parts = rest.split("/")
    name = parts[0]
    if len(parts) >= 3 and parts[1] == "versions":
        return name, parts[2], "/".join(parts[3:])
    return name, None, "/".join(parts[1:])


class ServingApp:
    """ASGI callable of a :class:`~mlpilot.serving.server.ModelServer`."""

    def __init__(self, server: ModelServer) -> None:
        from mlpilot.serving.server import server_version

        self.server = server
        self.repo = server.repository
        self.metrics = server.metrics
        self.predlog = server.predlog
        config = server.config
        self._max_body = config.max_request_bytes
        self._max_in_flight = config.max_in_flight
        self._access = server.access_log
        self._in_flight = 0
        self.metrics.in_flight.set_function(lambda: self._in_flight)
        self._version = server_version()
        self._server_meta = orjson.dumps(
            {"name": "mlpilot", "version": self._version, "extensions": ["binary_tensor_data"]}
        )
        self._default_model = config.models[0].name
        self._features = server.features

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.server.startup()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.server.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch --------------------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path: str = scope["path"]
        if method == "POST":
            if path == "/invocations":
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                name = query.get("model", [None])[0] or self._default_model or self._first_name()
                await self._predict(scope, receive, send, "invocations", name, query.get("version", [None])[0])
                return
            if path.startswith("/v2/models/"):
                name, version, tail = _model_path(path[11:])
                if tail == "infer":
                    await self._predict(scope, receive, send, "v2", name, version)
                    return
            elif path.startswith("/v1/models/") and path.endswith(":predict"):
                name, version, _ = _model_path(path[11:-8])
                await self._predict(scope, receive, send, "v1", name, version)
                return
            await self._simple(send, scope, 404, {"error": f"no route POST {path}"})
            return
        if method != "GET":
            await self._simple(send, scope, 405, {"error": f"method {method} not allowed"})
            return
        try:
            await self._get(scope, send, path)
        except MlpilotError as exc:
            await self._simple(send, scope, exc.http_status, self._error_doc(exc, None))

    def _first_name(self) -> str:
        names = self.repo.names
        return names[0] if names else ""

    async def _get(self, scope: Scope, send: Send, path: str) -> None:
        if path == "/metrics":
            await self._raw(send, scope, 200, self.metrics.render(), CONTENT_TYPE.encode())
        elif path in ("/v2/health/live", "/ping", "/health"):
            await self._simple(send, scope, 200, {"live": True})
        elif path == "/v2/health/ready":
            ready = self.repo.ready
            await self._simple(send, scope, 200 if ready else 503, {"ready": ready})
        elif path == "/v2":
            await self._raw(send, scope, 200, self._server_meta, _JSON)
        elif path == "/version":
            await self._simple(send, scope, 200, {"version": self._version})
        elif path.startswith(("/v2/models/", "/v1/models/")):
            name, version_text, tail = _model_path(path[11:])
            deployed = self.repo.lookup(name, _version(version_text))
            if tail == "ready":
                await self._simple(send, scope, 200, {"name": name, "ready": True})
            elif tail == "":
                versions = self.repo.versions(name) if version_text is None else [deployed.model.version]
                await self._simple(send, scope, 200, deployed.model.metadata(versions))
            else:
                raise NotFoundError(f"no route GET {path}", field="path")
        elif path == "/v1/models":
            await self._simple(send, scope, 200, {"models": self.repo.describe()})
        else:
            raise NotFoundError(f"no route GET {path}", field="path")

    # -- inference -------------------------------------------------------------------------------------------
    async def _body(self, receive: Receive, length: int | None) -> bytes:
        if length is not None and length > self._max_body:
            raise RequestTooLargeError(
                f"body: {length} bytes is over the limit of {self._max_body}", field="body", got=length
            )
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise RequestTooLargeError(f"body: over the limit of {self._max_body} bytes", field="body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _predict(
        self, scope: Scope, receive: Receive, send: Send, protocol: str, name: str, version_text: str | None
    ) -> None:
        if SHADOW_SCOPE_KEY in scope:
            await self._handle_predict(scope, receive, send, protocol, name, version_text)
            return
        # The shadow lane hands out mirrored answers (and starts shadow batches) only between live requests.
        lane = self.repo.shadow
        lane.live_request_started()
        try:
            await self._handle_predict(scope, receive, send, protocol, name, version_text)
        finally:
            lane.live_request_finished()

    async def _handle_predict(
        self, scope: Scope, receive: Receive, send: Send, protocol: str, name: str, version_text: str | None
    ) -> None:
        started = time.perf_counter()
        arrived_ms = time.time_ns() // 1_000_000
        request_id: str | None = None
        header_length: int | None = None
        length: int | None = None
        content_type = b""
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = int(value) if value.isdigit() else None
            elif key == b"x-request-id":
                if _valid_id(value):
                    request_id = value.decode()
            elif key == oip.HEADER_LENGTH:
                header_length = int(value) if value.isdigit() else -1
            elif key == b"content-type":
                content_type = value
        deployed: Deployed | None = None
        status = 200
        extra: list[tuple[bytes, bytes]] = []
        parsed: Any = None
        outputs: Any = None
        entity: str | list[str] | None = None
        segments: dict[str, str] = {}
        logged: Columns | None = None
        explain: Callable[[str], MlpilotError] | None = None
        self._in_flight += 1
        try:
            if self._in_flight > self._max_in_flight:
                self.metrics.rejected.labels("", "in_flight").inc()
                raise OverloadedError(
                    f"the server is handling {self._max_in_flight} requests already (max_in_flight)",
                    retry_after=1.0,
                )
            deployed = self.repo.lookup(name, _version(version_text))
            body = await self._body(receive, length)
            model = deployed.model
            endpoint = self._features.get(model.name)
            if endpoint is not None:
                # Callers send entity keys: the model's inputs are looked up (mlpilot.serving.features).
                request = features.parse_request(protocol, body, header_length, content_type, model)
                if request.id is not None and not _valid_id(request.id.encode()):
                    raise InvalidInputError(
                        f"id: expected 1-{_MAX_REQUEST_ID} printable ASCII characters, got {request.id[:40]!r}",
                        field="id",
                    )
                request_id = request_id or request.id or os.urandom(16).hex()
                looked = await endpoint.resolve(request, model, request_id, arrived_ms)
                parsed, logged = looked.parsed(request), looked.log_columns
                wanted, entity, segments = request.wanted, looked.entity_id, request.segments
                if looked.missing:
                    explain = functools.partial(endpoint.missing_error, request, looked, model)
            elif protocol == "v2":
                parsed = oip.parse_request(body, header_length, model)
                if parsed.id is not None and not _valid_id(parsed.id.encode()):
                    raise InvalidInputError(
                        f"id: expected 1-{_MAX_REQUEST_ID} printable ASCII characters, got {parsed.id[:40]!r}",
                        field="id",
                    )
                request_id = request_id or parsed.id
                wanted = frozenset(n for n, _ in parsed.outputs)
                entity, segments = payloads.parse_meta(parsed.parameters, parsed.rows)
            elif protocol == "v1":
                parsed = payloads.parse_v1(payloads.load_json(body), model)
                wanted, entity, segments = parsed.outputs, parsed.entity_id, parsed.segments
            elif content_type.startswith(b"text/csv"):
                parsed = payloads.parse_csv(body, model)
                wanted, entity, segments = parsed.outputs, parsed.entity_id, parsed.segments
            else:
                parsed = payloads.parse_invocations(payloads.load_json(body), model)
                wanted, entity, segments = parsed.outputs, parsed.entity_id, parsed.segments
            request_id = request_id or os.urandom(16).hex()
            # The router's wish to mirror this request (no header can put it in the scope): shadows that take
            # the same inputs get the parsed columns now, and run in the shadow lane once live work allows.
            order: MirrorOrder | None = scope.get(MIRROR_SCOPE_KEY)
            if order is not None and endpoint is None:
                self._mirror(order, deployed, parsed, protocol, request_id, arrived_ms, entity, segments, started)
            # Mirrored requests carry the router's ticket in the scope (no header can): they run at low priority.
            shadow = scope.get(SHADOW_SCOPE_KEY)
            outputs = await deployed.batcher.submit(parsed.columns, parsed.rows, wanted, shadow=shadow)
            if order is not None:
                order.primary = outputs.get(model.main_output)
            if protocol == "v2":
                payload, json_length = oip.encode_response(model, request_id, outputs, parsed.outputs)
                if json_length is not None:
                    extra.append((oip.HEADER_LENGTH, str(json_length).encode()))
                content = b"application/octet-stream" if json_length is not None else _JSON
            elif protocol == "v1":
                payload, content = payloads.encode_v1(model, request_id, parsed, outputs), _JSON
            else:
                payload, content = payloads.encode_invocations(model, outputs), _JSON
        except _Disconnected:
            return
        except MlpilotError as error:
            exc = explain(error.message) if explain is not None and isinstance(error, PredictionError) else error
            status = exc.http_status
            request_id = request_id or os.urandom(16).hex()
            payload, content = orjson.dumps(self._error_doc(exc, request_id), default=str), _JSON
            if isinstance(exc, OverloadedError):
                extra.append((b"retry-after", str(math.ceil(exc.retry_after)).encode()))
        except Exception as exc:
            logger.exception("request %s failed", request_id)
            status = 500
            request_id = request_id or os.urandom(16).hex()
            payload = orjson.dumps({"error": f"internal error: {type(exc).__name__}", "request_id": request_id})
            content = _JSON
        finally:
            self._in_flight -= 1
        headers = [
            (b"content-type", content),
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", request_id.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        elapsed = time.perf_counter() - started
        if deployed is None:
            self.metrics.unrouted(protocol, status)
        else:
            deployed.batcher.metrics.request(protocol, status, elapsed)
            if status == 200 and self.predlog is not None and self.predlog.sampled():
                self.predlog.record(
                    LogRecord(
                        request_id,
                        arrived_ms,
                        protocol,
                        deployed.model.name,
                        deployed.model.version,
                        parsed.rows,
                        parsed.columns if logged is None else logged,
                        outputs,
                        elapsed,
                        entity,
                        segments,
                    )
                )
        if self._access is not None:
            self._access_line(self._access, scope, status, request_id, deployed, parsed, elapsed)

    # -- mirrors from parsed requests -------------------------------------------------------------------------
    def _mirror(
        self,
        order: MirrorOrder,
        deployed: Deployed,
        parsed: Any,
        protocol: str,
        request_id: str,
        arrived_ms: int,
        entity: str | list[str] | None,
        segments: dict[str, str],
        started: float,
    ) -> None:
        """Hand the parsed request to the shadow lane for each version of ``order`` that takes the same inputs
        (the router mirrors the others as whole requests)."""
        model = deployed.model
        lane = self.repo.shadow
        parse_seconds = time.perf_counter() - started
        for version in order.versions:
            try:
                shadow = self.repo.lookup(model.name, version)
            except NotFoundError:
                continue
            if shadow.model.schema.key != model.schema.key:
                continue
            ticket = ShadowTicket()
            wanted = frozenset((shadow.model.main_output,))
            try:
                future = lane.submit(shadow.batcher, parsed.columns, parsed.rows, wanted, ticket)
            except OverloadedError as exc:
                future = asyncio.get_running_loop().create_future()
                future.set_exception(exc)
            mirror = Mirror(version, shadow.model, future, ticket, parse_seconds)
            order.mirrors.append(mirror)
            record = (protocol, f"{request_id}:shadow", arrived_ms, parsed, entity, segments)
            future.add_done_callback(functools.partial(self._mirrored, mirror, shadow, record))

    def _mirrored(
        self,
        mirror: Mirror,
        shadow: Deployed,
        record: tuple[str, str, int, Any, str | list[str] | None, dict[str, str]],
        future: asyncio.Future[Outputs],
    ) -> None:
        """A mirror's answer: the shadow version's request metrics and prediction log, as for any request."""
        if future.cancelled():
            return
        protocol, request_id, arrived_ms, parsed, entity, segments = record
        status = mirror.status()
        elapsed = mirror.elapsed()
        shadow.batcher.metrics.request(protocol, status, elapsed)
        if status == 200 and self.predlog is not None and self.predlog.sampled():
            model = shadow.model
            self.predlog.record(
                LogRecord(
                    request_id,
                    arrived_ms,
                    protocol,
                    model.name,
                    model.version,
                    parsed.rows,
                    parsed.columns,
                    future.result(),
                    elapsed,
                    entity,
                    segments,
                )
            )

    # -- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def _access_line(
        sink: AccessLog,
        scope: Scope,
        status: int,
        request_id: str,
        deployed: Deployed | None,
        parsed: Any,
        elapsed: float,
    ) -> None:
        client = scope.get("client")
        sink.write(
            {
                "time": time.time(),
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "model": deployed.model.name if deployed else None,
                "version": deployed.model.version if deployed else None,
                "rows": parsed.rows if parsed is not None else None,
                "duration_ms": round(elapsed * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
        )

    @staticmethod
    def _error_doc(exc: MlpilotError, request_id: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": exc.message, "type": type(exc).__name__}
        if exc.field is not None:
            doc["field"] = exc.field
        for key in ("expected", "got"):
            if key in exc.details:
                doc[key] = exc.details[key]
        if request_id is not None:
            doc["request_id"] = request_id
        return doc

    async def _simple(self, send: Send, scope: Scope, status: int, doc: dict[str, Any]) -> None:
        await self._raw(send, scope, status, orjson.dumps(doc, default=str), _JSON)

    async def _raw(self, send: Send, scope: Scope, status: int, body: bytes, content_type: bytes) -> None:
        request_id = None
        for key, value in scope["headers"]:
            if key == b"x-request-id" and _valid_id(value):
                request_id = value
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id or os.urandom(16).hex().encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
