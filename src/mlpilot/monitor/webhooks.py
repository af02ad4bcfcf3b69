"""Webhook delivery: one JSON POST, retried with exponential backoff on connection errors, timeouts, 429 and 5xx.

>>> deliver("http://127.0.0.1:9/hook", {"event": "alert.fired"}, retries=0)  # doctest: +SKIP
Delivery(delivered=False, attempts=1, status=None, error='ConnectError: ...')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Delivery", "deliver"]


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    status: int | None
    error: str | None = None


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def deliver(
    url: str,
    payload: dict[str, Any],
    *,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 5.0,
    sleep: Any = time.sleep,
) -> Delivery:
    """POST ``payload`` to ``url``; retry up to ``retries`` times, waiting ``backoff * 2**attempt`` seconds.

    A 2xx answer is delivered; other 4xx answers are final (the receiver rejected the payload itself).
    """
    status: int | None = None
    error: str | None = None
    attempts = 0
    headers = {"user-agent": "mlpilot-monitor", "content-type": "application/json"}
    with httpx.Client(timeout=timeout, headers=headers) as client:
        for attempt in range(retries + 1):
            attempts = attempt + 1
            try:
                response = client.post(url, json=payload)
                status, error = response.status_code, None
                if response.is_success:
                    return Delivery(True, attempts, status)
                error = f"HTTP {status}"
                if not _retryable(status):
                    break
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            if attempt < retries:
                sleep(backoff * 2**attempt)
    return Delivery(False, attempts, status, error)
