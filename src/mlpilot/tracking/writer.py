"""The background writer: logging appends to memory; a thread sends batches to the backend in order.

``add_metric`` is a deque append (thread-safe, no lock): a training loop pays about a microsecond per point.
A daemon thread drains the buffer every ``flush_interval`` seconds, or as soon as ``max_batch`` points wait,
into one ``backend.log_batch`` call per batch. ``flush()`` drains synchronously from the caller's thread: one
lock makes the thread and callers take turns, and each drains from the front of the queue, so points reach the
store in the order they were logged.

A failed batch is never dropped silently: transient store errors are retried, and any other error is kept and
re-raised by the next ``add_*``/``flush`` call (with how many points and params were lost).

>>> import tempfile
>>> from mlpilot.store import Store
>>> from mlpilot.tracking import TrackingService, RunSpec
>>> svc = TrackingService(Store(f"sqlite:///{tempfile.mkdtemp()}/mlpilot.db"))
>>> run_id = svc.create_run(RunSpec(experiment="e")).id
>>> writer = BackgroundWriter(svc, run_id)
>>> writer.add_metric("loss", 0.1, 0, 1_700_000_000_000)
>>> writer.close()
>>> [p.value for p in svc.get_metric_history(run_id, "loss")]
[0.1]
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from mlpilot.errors import MlpilotError, ServiceUnavailableError, StoreError
from mlpilot.tracking.backend import TrackingBackend

__all__ = ["BackgroundWriter", "WriterError"]

R = TypeVar("R")
MetricRow = tuple[str, float, int, int]
#: Receives one batch: (metric points, params, tags).
Finish = Callable[[list[MetricRow], dict[str, str], dict[str, str]], R]

_RETRIES = 5
_RETRY_BASE_DELAY = 0.2
# Past this many waiting points a producer waits for the writer rather than grow memory without bound.
_MAX_BUFFERED = 1_000_000


class WriterError(MlpilotError):
    """A batch could not be written; raised at the next log call or at run end. ``cause`` is the original."""

    def __init__(self, message: str, cause: MlpilotError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class BackgroundWriter:
    """Buffers one run's metric points, params and tags and writes them in batches from a daemon thread."""

    def __init__(
        self,
        backend: TrackingBackend,
        run_id: str,
        *,
        flush_interval: float = 0.5,
        max_batch: int = 10_000,
        actor: str = "local",
    ) -> None:
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self.backend = backend
        self.run_id = run_id
        self.flush_interval = flush_interval
        self.max_batch = max(1, max_batch)
        self.actor = actor
        self._metrics: collections.deque[MetricRow] = collections.deque()
        self._params: dict[str, str] = {}
        self._tags: dict[str, str] = {}
        self._maps_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._error: WriterError | None = None
        self._thread = threading.Thread(target=self._loop, name=f"mlpilot-writer-{run_id[:8]}", daemon=True)
        self._thread.start()

    # -- producer side (any thread) --------------------------------------------------------------------------

    def add_metric(self, key: str, value: float, step: int, timestamp: int) -> None:
        if self._error is not None:
            self._raise_error()
        metrics = self._metrics
        metrics.append((key, value, step, timestamp))
        size = len(metrics)
        if size >= self.max_batch:
            self._wake.set()
            if size >= _MAX_BUFFERED:
                self.flush()

    def add_params(self, params: Mapping[str, str]) -> None:
        if self._error is not None:
            self._raise_error()
        with self._maps_lock:
            self._params.update(params)

    def add_tags(self, tags: Mapping[str, str]) -> None:
        if self._error is not None:
            self._raise_error()
        with self._maps_lock:
            self._tags.update(tags)

    @property
    def pending(self) -> int:
        """Points, params and tags not yet handed to the backend."""
        return len(self._metrics) + len(self._params) + len(self._tags)

    def flush(self) -> None:
        """Write everything logged so far; raise the writer's error if a batch failed."""
        self._drain()
        if self._error is not None:
            self._raise_error()

    def close(self, finish: Finish[R] | None = None) -> R | None:
        """Stop the thread and write what is left; raise a pending error. Idempotent.

        With ``finish``, the last batch goes to ``finish(metrics, params, tags)`` instead of ``log_batch`` and its
        result is returned: ``ActiveRun.end`` passes ``end_run``, so the last points commit with the run's status.
        """
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        result: R | None = None
        with self._flush_lock:
            while self._error is None and len(self._metrics) > self.max_batch:
                self._send(self._log_batch, *self._take())
            if self._error is None:
                batch, params, tags = self._take()
                if finish is not None:
                    result = self._send(finish, batch, params, tags)
                elif batch or params or tags:
                    self._send(self._log_batch, batch, params, tags)
        if self._error is not None:
            self._raise_error()
        return result

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        assert error is not None
        raise error from error.cause

    # -- writer side -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            if self._stopped.is_set():
                return  # close() writes what is left, with the run's end when it has one
            self._wake.clear()
            if self._error is None:
                self._drain()

    def _take(self) -> tuple[list[MetricRow], dict[str, str], dict[str, str]]:
        metrics = self._metrics
        count = min(len(metrics), self.max_batch)
        batch = [metrics.popleft() for _ in range(count)]
        with self._maps_lock:
            params, self._params = self._params, {}
            tags, self._tags = self._tags, {}
        return batch, params, tags

    def _drain(self) -> None:
        with self._flush_lock:
            while self._error is None:
                batch, params, tags = self._take()
                if not (batch or params or tags):
                    return
                self._send(self._log_batch, batch, params, tags)

    def _log_batch(self, metrics: list[MetricRow], params: dict[str, str], tags: dict[str, str]) -> None:
        self.backend.log_batch(self.run_id, metrics=metrics, params=params, tags=tags, actor=self.actor)

    def _send(self, write: Finish[R], batch: list[MetricRow], params: dict[str, str], tags: dict[str, str]) -> R | None:
        """Call ``write`` with one batch, retrying transient failures; record any other failure."""
        for attempt in range(_RETRIES):
            try:
                return write(batch, params, tags)
            except (StoreError, ServiceUnavailableError) as exc:
                if attempt == _RETRIES - 1:
                    self._fail(exc, batch, params)
                    return None
                time.sleep(_RETRY_BASE_DELAY * 2**attempt)
            except MlpilotError as exc:
                self._fail(exc, batch, params)
                return None
            except Exception as exc:
                # A bug or a library error must still reach the user, not kill the thread.
                wrapped = MlpilotError(f"{type(exc).__name__}: {exc}")
                wrapped.__cause__ = exc
                self._fail(wrapped, batch, params)
                return None
        return None

    def _fail(self, exc: MlpilotError, batch: list[MetricRow], params: dict[str, str]) -> None:
        # Everything still queued is dropped with the failed batch (writing it would leave a gap) and counted.
        lost_points = len(batch) + len(self._metrics)
        self._metrics.clear()
        with self._maps_lock:
            lost_params = len(params) + len(self._params)
            self._params.clear()
            self._tags.clear()
        self._error = WriterError(
            f"run {self.run_id}: logging failed, {lost_points} metric point(s) and {lost_params} param(s) "
            f"were not written: {exc.message}",
            cause=exc,
        )
