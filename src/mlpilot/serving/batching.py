"""Adaptive batching: requests that arrive together for one model version run as one call to the model.

Each model version has a bounded queue and a number of execution slots (worker threads). When a slot is free
the batcher takes queued requests, up to ``max_batch_size`` rows, and runs them together. While every slot is
busy, new requests simply accumulate: under load, batches form without any timer. Dispatch happens at the end
of the event loop's current pass, so requests parsed in the same pass share a batch at no cost.

A batch *waits* for more requests only when that pays: the wait is measured from its first request's arrival
and never exceeds ``max_wait_ms``; it is only taken while requests keep arriving as others are in flight, and
while recent waits actually gained requests (the batcher measures it, and re-checks with an occasional probe).
A lone client (concurrency 1) never waits for company, and neither do clients that are all already queued.

Backpressure: a request is refused at once with :class:`~mlpilot.serving.errors.OverloadedError` (HTTP 503
with ``Retry-After``) when the queue already holds ``max_queue_size`` rows, or when the estimated wait exceeds
``queue_timeout_ms``; a request that nevertheless waited longer than that is answered 503 instead of being
run.

Mirrored (shadow) requests do not queue here: :meth:`Batcher.submit` hands them to the server's
:class:`~mlpilot.serving.shadow.ShadowLane`, which runs them only while no batcher has live work, and every
batcher tells the lane when it gets work and when it is idle again. A live batch that would start while a shadow
call runs waits for it to end, for at most the lane's ``live_grace_ms`` from the call's start.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlpilot.errors import MlpilotError
from mlpilot.serving.errors import OverloadedError
from mlpilot.serving.metrics import ModelMetrics, ServingMetrics
from mlpilot.serving.model import Outputs, ServedModel
from mlpilot.serving.schema import Columns

if TYPE_CHECKING:
    from mlpilot.serving.shadow import ShadowLane, ShadowTicket

__all__ = ["BatchSettings", "Batcher"]

_EWMA = 0.2
#: while waits do not pay, one decision in this many still waits, to notice when they start paying again
_PROBE_EVERY = 32
#: a lone request for a model cheaper than this runs on the event loop itself (no thread hop)
_INLINE_SECONDS = 0.002


@dataclass(frozen=True)
class BatchSettings:
    """Batching and backpressure knobs of one model.

    >>> BatchSettings(max_batch_size=32, max_wait_ms=1.0).max_batch_size
    32
    """

    #: most rows in one call to the model (a single larger request still runs, alone)
    max_batch_size: int = 64
    #: longest a batch may wait for company, from its first request's arrival; 0 disables waiting
    max_wait_ms: float = 2.0
    #: most rows waiting per model version; beyond it requests get 503 at once
    max_queue_size: int = 2048
    #: a request that would wait (or has waited) longer than this in the queue gets 503
    queue_timeout_ms: float = 1000.0
    #: batches of this model running at once (worker threads it may use); 0 means every worker thread
    max_concurrency: int = 0

    def __post_init__(self) -> None:
        from mlpilot.errors import ConfigError

        checks = {
            "max_batch_size": self.max_batch_size >= 1,
            "max_wait_ms": 0 <= self.max_wait_ms <= 10_000,
            "max_queue_size": self.max_queue_size >= 1,
            "queue_timeout_ms": self.queue_timeout_ms > 0,
            "max_concurrency": self.max_concurrency >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"batching.{key}: out of range (got {getattr(self, key)!r})", key=key)


class _Item:
    __slots__ = ("arrived", "columns", "future", "outputs", "rows")

    def __init__(
        self,
        columns: Columns,
        rows: int,
        outputs: frozenset[str],
        future: asyncio.Future[Outputs],
        now: float,
    ) -> None:
        self.columns = columns
        self.rows = rows
        self.outputs = outputs
        self.future = future
        self.arrived = now


class Batcher:
    """The queue and dispatcher of one model version; all methods run on the event loop thread.

    >>> outputs = await batcher.submit(columns, rows=1, outputs=frozenset({"output"}))  # doctest: +SKIP
    """

    def __init__(
        self,
        model: ServedModel,
        executor: Executor,
        slots: int,
        settings: BatchSettings,
        metrics: ServingMetrics,
        lane: ShadowLane | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.metrics: ModelMetrics = metrics.for_model(model.name, model.version)
        self._rejected = metrics.rejected
        self._executor = executor
        self._lane = lane
        self._slots = min(slots, settings.max_concurrency) if settings.max_concurrency else slots
        self._max_rows = settings.max_batch_size
        self._max_wait = settings.max_wait_ms / 1000.0
        self._timeout = settings.queue_timeout_ms / 1000.0
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._running = 0
        self._in_system = 0
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Estimates, updated as the traffic goes: seconds per batch, gap between arrivals, and how often a
        # request arrives while others of this model are in flight (1.0 = always: company is coming).
        self._batch_seconds = 0.0  # until the first batch: the model's warm-up time
        self._overlap = 0.0
        # What waiting has been worth: requests gained per wait (EWMA), and the wait under way.
        self._gain = 0.0
        self._decisions = 0
        self._wait_start_len: int | None = None
        self._tick_pending = False
        #: whether a lone request may run on the event loop thread (the server limits that thread's thread pools)
        self.inline = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def estimated_wait(self, rows: int) -> float:
        """Seconds a request of ``rows`` rows would wait for its batch to start (from recent batch costs)."""
        batches_ahead = math.ceil((self._queued_rows + rows) / self._max_rows)
        if self._running < self._slots and batches_ahead <= 1:
            return 0.0
        cost = self._batch_seconds or max(self.model.warm_seconds, 1e-4)
        return batches_ahead * cost / self._slots

    def submit(
        self, columns: Columns, rows: int, outputs: frozenset[str], *, shadow: ShadowTicket | None = None
    ) -> asyncio.Future[Outputs]:
        """Queue a validated request; the future resolves to its outputs. Refuses at once under overload.

        A mirrored request (``shadow``, its ticket from the ASGI scope) goes to the shadow lane instead.
        """
        if shadow is not None and self._lane is not None:
            return self._lane.submit(self, columns, rows, outputs, shadow)
        if self._queued_rows + rows > self.settings.max_queue_size and self._queued_rows:
            self._rejected.labels(self.model.name, "queue_full").inc()
            raise OverloadedError(
                f"model {self.model.name!r} is overloaded: its queue holds {self._queued_rows} rows "
                f"(max_queue_size {self.settings.max_queue_size})",
                retry_after=max(1.0, self.estimated_wait(rows)),
            )
        wait = self.estimated_wait(rows)
        if wait > self._timeout and self._queued_rows:
            self._rejected.labels(self.model.name, "budget").inc()
            raise OverloadedError(
                f"model {self.model.name!r} is overloaded: expected queue time {wait * 1000:.0f} ms is over "
                f"the budget of {self.settings.queue_timeout_ms:.0f} ms",
                retry_after=max(1.0, wait),
            )
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        self._overlap += _EWMA * ((1.0 if self._in_system else 0.0) - self._overlap)
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append(_Item(columns, rows, outputs, future, now))
        self._queued_rows += rows
        self._in_system += 1
        future.add_done_callback(self._leave)
        if self._idle.is_set():
            self._idle.clear()
            if self._lane is not None:
                self._lane.live_started()
        self._schedule()
        return future

    def _leave(self, _: asyncio.Future[Outputs]) -> None:
        self._in_system -= 1

    def _schedule(self) -> None:
        """Dispatch at the end of this pass of the event loop: requests already read in it join the batch."""
        if not self._tick_pending:
            self._tick_pending = True
            assert self._loop is not None
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_pending = False
        self._dispatch()

    def _hold(self, now: float) -> float:
        """Seconds to keep the queue waiting for company, or 0 to run it now."""
        remaining = self._queue[0].arrived + self._max_wait - now
        if self._wait_start_len is not None:  # a wait is under way: until the deadline or a full batch
            return remaining if remaining > 0 and self._queued_rows < self._max_rows else 0.0
        if remaining <= 0 or self._queued_rows >= self._max_rows or self._overlap < 0.5:
            return 0.0
        self._decisions += 1
        if self._gain < 1.0 and self._decisions % _PROBE_EVERY:
            return 0.0
        self._wait_start_len = len(self._queue)
        return remaining

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        loop = self._loop
        assert loop is not None
        while self._queue and self._running < self._slots:
            now = loop.time()
            if self._max_wait > 0:
                hold = self._hold(now)
                if hold > 0:
                    if self._timer is None:
                        self._timer = loop.call_later(hold, self._on_timer)
                    break
                if self._wait_start_len is not None:
                    self._gain += _EWMA * (len(self._queue) - self._wait_start_len - self._gain)
                    self._wait_start_len = None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            if self._lane is not None:
                pause = self._lane.live_pause(now)
                if pause > 0:
                    # A shadow call is under way: two model calls fighting over the GIL and the cores slow each
                    # other down far more than a short wait for it to end costs (bounded by the lane's grace).
                    self._lane.wake_after_call(self._schedule)
                    if self._timer is None:
                        self._timer = loop.call_later(pause, self._on_timer)
                    break
            batch = self._take(now)
            if batch:
                self._start(loop, batch, now)
        self.metrics.queued_rows.set(self._queued_rows)
        if not self._queue and not self._running and not self._idle.is_set():
            self._idle.set()
            if self._lane is not None:
                self._lane.live_finished()

    def _take(self, now: float) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        queue = self._queue
        while queue and (not batch or rows + queue[0].rows <= self._max_rows):
            item = queue.popleft()
            self._queued_rows -= item.rows
            if item.future.done():
                continue  # the caller went away
            if now - item.arrived > self._timeout:
                self._rejected.labels(self.model.name, "late").inc()
                item.future.set_exception(
                    OverloadedError(
                        f"model {self.model.name!r} is overloaded: the request waited over "
                        f"{self.settings.queue_timeout_ms:.0f} ms in the queue",
                        retry_after=1.0,
                    )
                )
                continue
            batch.append(item)
            rows += item.rows
        return batch

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Item], now: float) -> None:
        self._running += 1
        wanted: frozenset[str] = batch[0].outputs
        for item in batch[1:]:
            if item.outputs is not wanted:
                wanted = wanted | item.outputs
        queue_hist = self.metrics.queue
        for item in batch:
            queue_hist.observe(now - item.arrived)
        started = time.perf_counter()
        columns = [i.columns for i in batch]
        if self.inline and self._running == 1 and len(batch) == 1 and self._overlap < 0.5 and self._cheap():
            # A lone client and a cheap model: a hop to a worker thread and back would cost more than it saves.
            try:
                results: list[Outputs | MlpilotError] | BaseException = self.model.run_batch(columns, wanted)
            except Exception as exc:
                results = exc
            self._finish(batch, started, results)
            return
        fut = loop.run_in_executor(self._executor, self.model.run_batch, columns, wanted)
        fut.add_done_callback(lambda f: self._finish(batch, started, f.exception() or f.result()))

    def _cheap(self) -> bool:
        return (self._batch_seconds or self.model.warm_seconds) < _INLINE_SECONDS

    def _finish(
        self, batch: list[_Item], started: float, results: list[Outputs | MlpilotError] | BaseException
    ) -> None:
        elapsed = time.perf_counter() - started
        self._running -= 1
        if self._batch_seconds:
            # One stalled batch (the process descheduled, a GC pause) must not make the estimate refuse traffic.
            sample = min(elapsed, 4 * self._batch_seconds + 0.001)
            self._batch_seconds += _EWMA * (sample - self._batch_seconds)
        else:
            self._batch_seconds = elapsed
        rows = sum(item.rows for item in batch)
        self.metrics.inference.observe(elapsed)
        self.metrics.batch_rows.observe(rows)
        self.metrics.batch_requests.observe(len(batch))
        if isinstance(results, BaseException):
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(results)
        else:
            for item, result in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, MlpilotError):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        self._schedule()

    async def drain(self) -> None:
        """Wait until every queued and running request of this version has been answered."""
        await self._idle.wait()

    def stats(self) -> dict[str, Any]:
        return {
            "queued_rows": self._queued_rows,
            "running_batches": self._running,
            "batch_seconds": self._batch_seconds,
        }
