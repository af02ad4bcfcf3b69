"""One HTTP transport for every remote backend: auth header, retries on connect errors, error mapping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from mlpilot.errors import RemoteError, error_from_payload

__all__ = ["HttpTransport"]

_RETRY_STATUSES = {502, 503, 504}


class HttpTransport:
    """Talks JSON to ``base_url``; server errors come back as the same MlpilotError types a local call raises.

    >>> transport = HttpTransport("http://127.0.0.1:5080", token=None)  # doctest: +SKIP
    >>> transport.request("GET", "/healthz")  # doctest: +SKIP
    {'status': 'ok', 'store': 'sqlite'}
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "mlpilot-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._retries = retries

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = 0.2
        for attempt in range(self._retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if attempt == self._retries:
                    raise RemoteError(f"cannot reach mlpilot server at {self.base_url}: {exc}") from exc
            except httpx.TimeoutException as exc:
                raise RemoteError(f"mlpilot server at {self.base_url} timed out on {method} {path}") from exc
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self._retries:
                    return response
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        raise error_from_payload(response.status_code, body)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        wait_long: bool = False,
    ) -> Any:
        """``wait_long``: the call takes long on the server by design and the server bounds it itself; wait for
        its answer however long it takes (connecting is still held to the transport's timeout)."""
        extra: dict[str, Any] = {}
        if wait_long:
            extra["timeout"] = httpx.Timeout(self._client.timeout.connect, read=None)
        response = self._send(method, path, json=json, params=params, **extra)
        self._raise_for(response)
        if not response.content:
            return None
        return response.json()

    def put_file(self, path: str, file: str | Path) -> Any:
        with open(file, "rb") as fh:
            response = self._send("PUT", path, content=fh)
        self._raise_for(response)
        return response.json()

    def put_bytes(self, path: str, data: bytes) -> Any:
        response = self._send("PUT", path, content=data)
        self._raise_for(response)
        return response.json()

    def download(self, path: str, dest: str | Path) -> None:
        with self._client.stream("GET", path) as response:
            if not response.is_success:
                response.read()
                self._raise_for(response)
            with open(dest, "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)

    def close(self) -> None:
        self._client.close()
