"""Structured access logs: one JSON object per request, written off the request path.

The request path only serialises a small dict (orjson, a couple of microseconds) and appends the line to a
buffer; a background thread writes buffered lines in one go every ``flush_interval`` seconds, either to a binary
stream (what ``mlpilot serve`` does with stderr) or, line by line, to the ``mlpilot.serving.access`` logger::

    >>> log = AccessLog(sys.stderr.buffer).start()  # doctest: +SKIP
    >>> log.write({"request_id": "ab12", "status": 200, "duration_ms": 1.2})  # doctest: +SKIP
    >>> log.close()  # flushes  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from typing import IO, Any

import orjson

__all__ = ["AccessLog"]

logger = logging.getLogger("mlpilot.serving.access")


class AccessLog:
    """Buffers JSON access-log lines and writes them from a background thread; drops (and counts) lines when
    more than ``max_lines`` wait, so a stalled stream cannot grow memory."""

    def __init__(
        self, stream: IO[bytes] | None = None, *, flush_interval: float = 0.2, max_lines: int = 100_000
    ) -> None:
        self.stream = stream
        self.flush_interval = flush_interval
        self.max_lines = max_lines
        self.dropped = 0
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AccessLog:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mlpilot-access-log", daemon=True)
            self._thread.start()
        return self

    def write(self, doc: dict[str, Any]) -> None:
        line = orjson.dumps(doc)
        with self._lock:
            if len(self._lines) >= self.max_lines:
                self.dropped += 1
                return
            self._lines.append(line)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if not lines:
            return
        if self.stream is None:
            if logger.isEnabledFor(logging.INFO):
                for line in lines:
                    logger.info(line.decode())
            return
        try:
            self.stream.write(b"\n".join(lines) + b"\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not take the server down
            self.dropped += len(lines)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
