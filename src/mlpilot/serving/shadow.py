"""The shadow lane: mirrored requests run at low priority, so that shadow traffic never delays live traffic.

The traffic router (:mod:`mlpilot.deploy.router`) mirrors a share of live requests to shadow variants after each
caller has its answer. It marks a mirrored request by putting a :class:`ShadowTicket` in the ASGI scope under
:data:`SHADOW_SCOPE_KEY`. That is an internal marker: uvicorn builds the scope from the HTTP request and no header
can set it, so a caller can neither jump a queue nor push anyone else down one. The model server sends marked
requests to this lane instead of their model's batcher:

- **Own worker process.** A candidate the model source can export (the registry's: :meth:`RegistrySource.export
  <mlpilot.serving.RegistrySource.export>`) runs in a worker process of its own at the lowest CPU priority
  (:mod:`mlpilot.serving.shadow_process`): its computing holds neither the server's GIL nor its event loop, so
  it competes with live requests for the cores only, where the scheduler lets live work go first. The process
  starts, and loads the version from its hash-verified archive, on the first mirrored request for it, in a
  thread of its own; until it is ready, mirrors of that version run in the server as below, so none is lost.
  Columns go there and outputs come back as Arrow IPC over a pipe, never pickled. A version the source cannot
  export (objects already in memory), or one the worker fails to load, runs in a thread of the server
  (``isolation = "thread"``: all of them do). Either way one dedicated thread of the server drives shadow calls,
  never the inference threads that live batches use: a slow or hung candidate can hold up shadow work only.
- **Live first.** A shadow batch starts only when no live batch is queued or running anywhere in the server, and
  one pass of the event loop after the last one finished, so that the live response is written first. A live
  batch that would start while a shadow call runs in the server's thread waits for that call to end, but never
  longer than ``live_grace_ms`` after the call started (then it runs alongside): two model calls fighting over
  the GIL and the cores slow each other down far more than a short wait costs (measured in
  ``bench/rollout_shadow.py``). A call in the worker process holds no GIL of ours: live batches never wait for it.
- **Lower CPU priority.** The worker process and thread run at ``nice`` (19) steps below the server's priority
  (Linux), the process at 19 also in the ``SCHED_IDLE`` class, so that the scheduler runs live work first.
- **Answers between live requests.** The server tells the lane when it starts and ends handling each live
  request. A shadow batch starts only while none is in flight, and the answers of a finished one are handed out
  only while none is in flight, one per pass of the event loop: each answer wakes a handler that encodes a
  response and the router that compares it, Python work that would otherwise run between the steps of a live
  request (measured: a small model's added p99 went from +1.8 ms to +0.6-0.8 ms in 3 of 4 runs). Answers held
  longer than ``deadline_ms`` go out anyway.
- **Few, short batches.** A model call costs about the same for 1 row as for 64 (scikit-learn: 0.2 ms for a
  logistic regression, 2 ms for 200 boosted trees, either way), and every shadow call is a window in which a live
  request may arrive and share the cores and the GIL with it. So mirrored requests wait for company: a batch
  starts once ``max_batch_rows`` rows of one model version are waiting or the oldest has waited ``max_wait_ms``,
  whichever comes first, which makes the windows rare; and never holds more than ``max_batch_rows`` rows (a single
  larger request runs alone), which keeps each one short.
- **Shed, never queued without bound.** A request beyond ``max_queue`` waiting ones, or one that waited longer
  than ``deadline_ms`` (live traffic left no room), is answered 503 at once and counted in
  ``mlpilot_serve_shadow_skipped_requests_total`` by reason (``full``, ``stale``, ``closed``). The
  router counts such a request as *skipped* in the shadow report, never as an error of the candidate.

The time a request waited here is written back on its ticket: the router subtracts it, so the report compares
the candidate's own latency with the primary's, not the delay we imposed.

>>> lane = ShadowLane(ServingMetrics(), ShadowSettings(max_queue=64))  # doctest: +SKIP
>>> outputs = await lane.submit(batcher, columns, 1, frozenset({"output"}), ShadowTicket())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpilot.errors import ConfigError, MlpilotError
from mlpilot.serving.errors import OverloadedError, WorkerLostError
from mlpilot.serving.metrics import ServingMetrics
from mlpilot.serving.model import Outputs, limit_thread_pools
from mlpilot.serving.schema import Columns

if TYPE_CHECKING:
    from mlpilot.serving.batching import Batcher
    from mlpilot.serving.model import ServedModel
    from mlpilot.serving.shadow_process import ShadowProcess
    from mlpilot.serving.source import ResolvedModel

    #: a model source's ``export``: a version's archive fetched into a folder, and what loads it (JSON)
    Exporter = Callable[[ResolvedModel, Path], dict[str, Any]]

logger = logging.getLogger(__name__)

__all__ = [
    "MIRROR_SCOPE_KEY",
    "SHADOW_SCOPE_KEY",
    "Mirror",
    "MirrorOrder",
    "ShadowLane",
    "ShadowSettings",
    "ShadowTicket",
]

#: The ASGI scope key that marks a mirrored request; its value is a :class:`ShadowTicket`.
SHADOW_SCOPE_KEY = "mlpilot.shadow"
#: The ASGI scope key of a live request the router wants mirrored; its value is a :class:`MirrorOrder`.
MIRROR_SCOPE_KEY = "mlpilot.mirror"


class ShadowTicket:
    """The marker of one mirrored request; the lane writes back how long the request waited in it (seconds)."""

    __slots__ = ("waited",)

    def __init__(self) -> None:
        self.waited = 0.0


class Mirror:
    """A live request mirrored to one shadow version straight from its parsed inputs: no second parse, and no
    response to encode and decode again."""

    __slots__ = ("_elapsed", "future", "model", "parse_seconds", "submitted", "ticket", "version")

    def __init__(
        self,
        version: int,
        model: ServedModel,
        future: asyncio.Future[Outputs],
        ticket: ShadowTicket,
        parse_seconds: float,
    ) -> None:
        self.version = version
        #: the shadow version's model (its ``main_output`` is the prediction)
        self.model = model
        self.future = future
        self.ticket = ticket
        self.parse_seconds = parse_seconds
        self.submitted = time.perf_counter()
        self._elapsed: float | None = None

    def status(self) -> int:
        """The HTTP status the shadow's answer would have had (once answered): 200, the error's own, or 500."""
        exc = self.future.exception()
        if exc is None:
            return 200
        return exc.http_status if isinstance(exc, MlpilotError) else 500

    def elapsed(self) -> float:
        """Seconds the shadow took (once answered): the live request's parse plus its own model call, without
        the time the lane held it back."""
        if self._elapsed is None:
            self._elapsed = self.parse_seconds + time.perf_counter() - self.submitted - self.ticket.waited
        return self._elapsed


class MirrorOrder:
    """The router's wish that a live request also go to shadow ``versions`` of its model (in its ASGI scope
    under :data:`MIRROR_SCOPE_KEY`). The server mirrors it from the parsed request to each version that takes
    the same inputs, and fills in ``mirrors`` and ``primary`` (the live answer's main output); the router
    mirrors the others as whole requests."""

    __slots__ = ("mirrors", "primary", "versions")

    def __init__(self, versions: tuple[int, ...]) -> None:
        self.versions = versions
        self.mirrors: list[Mirror] = []
        self.primary: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class ShadowSettings:
    """Knobs of the shadow lane (``[serve.shadow]`` in a serving config).

    >>> ShadowSettings(max_queue=16).max_batch_rows
    64
    """

    #: mirrored requests waiting at most; beyond it new ones are skipped
    max_queue: int = 256
    #: most rows in one shadow batch (a single larger request still runs, alone)
    max_batch_rows: int = 64
    #: how long a shadow batch waits for company, from its oldest request's arrival (fewer, fuller batches)
    max_wait_ms: float = 200.0
    #: a mirrored request still waiting after this long is skipped
    deadline_ms: float = 1000.0
    #: a live batch waits for a running shadow call to end, at most until this long after the call started
    live_grace_ms: float = 5.0
    #: how much lower the shadow worker's CPU priority is than the server's (Linux; 0 = the same, at most 19)
    nice: int = 19
    #: ``process``: candidates the source can export run in a worker process; ``thread``: all in the server
    isolation: str = "process"

    def __post_init__(self) -> None:
        checks = {
            "max_queue": self.max_queue >= 1,
            "max_batch_rows": self.max_batch_rows >= 1,
            "deadline_ms": 0 < self.deadline_ms <= 600_000,
            "max_wait_ms": 0 <= self.max_wait_ms < self.deadline_ms,
            "live_grace_ms": 0 <= self.live_grace_ms <= 60_000,
            "nice": 0 <= self.nice <= 19,
            "isolation": self.isolation in ("process", "thread"),
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"shadow.{key}: out of range (got {getattr(self, key)!r})", key=key)


class _Job:
    __slots__ = ("arrived", "batcher", "columns", "future", "outputs", "rows", "ticket")

    def __init__(
        self,
        batcher: Batcher,
        columns: Columns,
        rows: int,
        outputs: frozenset[str],
        ticket: ShadowTicket,
        future: asyncio.Future[Outputs],
        now: float,
    ) -> None:
        self.batcher = batcher
        self.columns = columns
        self.rows = rows
        self.outputs = outputs
        self.ticket = ticket
        self.future = future
        self.arrived = now


def _shadow_thread(model_threads: int, nice: int) -> None:
    """The shadow worker's initializer: its BLAS/OpenMP limits, and its CPU priority lowered by ``nice``.

    On Linux ``setpriority`` on a thread id changes that thread only; raising one's own niceness needs no
    privilege. Elsewhere (or if refused) the thread keeps the process's priority.
    """
    import os
    import threading

    limit_thread_pools(model_threads)
    if nice and hasattr(os, "setpriority") and sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError as exc:
            logger.warning("the shadow lane keeps the server's CPU priority: %s", exc)


class ShadowLane:
    """The server-wide queue and worker thread of mirrored requests; every method runs on the event loop thread
    except :meth:`close`'s wait for the worker."""

    def __init__(
        self,
        metrics: ServingMetrics,
        settings: ShadowSettings | None = None,
        *,
        model_threads: int = 1,
        exporter: Exporter | None = None,
    ) -> None:
        self.settings = settings or ShadowSettings()
        self._model_threads = model_threads
        self._exporter = exporter
        #: the worker process (created in the worker thread on the first version it should run)
        self.process: ShadowProcess | None = None
        #: where each version runs: its key in the worker process, or None for a thread of the server
        self._placed: dict[ServedModel, str | None] = {}
        self._loading: set[ServedModel] = set()
        self._forgotten: set[ServedModel] = set()
        self._keys = itertools.count(1)
        self._skipped = metrics.shadow_skipped
        self._in_process = metrics.shadow_process_versions
        self._queue: deque[_Job] = deque()
        self._rows = 0
        self._live = 0
        #: live requests between the start of their handling and the end of their response
        self._live_requests = 0
        #: a finished shadow batch's answers not handed out yet, held while live requests are in flight
        self._held: tuple[deque[tuple[_Job, Outputs | BaseException]], float] | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        self._running = False
        self._call_started: float | None = None
        self._after_call: set[Callable[[], None]] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(
            1,
            thread_name_prefix="mlpilot-shadow",
            initializer=_shadow_thread,
            initargs=(model_threads, self.settings.nice),
        )
        # Start the thread (and set its BLAS/OpenMP limits, which takes a few ms holding the GIL) now, at load
        # time, rather than in the middle of live traffic on the first mirrored request.
        self._executor.submit(int).result()
        #: exports versions and loads them in the worker process, apart from the thread that runs shadow batches
        self._loader = ThreadPoolExecutor(
            1, thread_name_prefix="mlpilot-shadow-load", initializer=_shadow_thread, initargs=(1, self.settings.nice)
        )

    # -- live traffic (called by every batcher) ---------------------------------------------------------------
    def live_started(self) -> None:
        """A live batcher got work: no shadow batch starts until it is idle again."""
        self._live += 1

    def live_finished(self) -> None:
        """A live batcher is idle again."""
        self._live -= 1
        if not self._live and self._queue:
            self._schedule()

    def live_request_started(self) -> None:
        """A live request is being handled (called by the server's request handler, on the event loop)."""
        self._live_requests += 1

    def live_request_finished(self) -> None:
        """A live request's response is out: answers held back and waiting mirrors may go now."""
        self._live_requests -= 1
        if self._live_requests:
            return
        if self._held is not None and self._loop is not None:
            self._loop.call_soon(self._release)
        elif self._queue:
            self._schedule()

    def live_pause(self, now: float) -> float:
        """Seconds a live batch about to start should wait for the running shadow call to end (0: start now)."""
        started = self._call_started
        if started is None:
            return 0.0
        return max(0.0, started + self.settings.live_grace_ms / 1000.0 - now)

    def wake_after_call(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (a live batcher's dispatch) when the running shadow call ends."""
        self._after_call.add(callback)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def held(self) -> int:
        """Answers of a finished shadow batch held back while live requests are in flight."""
        return len(self._held[0]) if self._held is not None else 0

    # -- shadow traffic -------------------------------------------------------------------------------------
    def submit(
        self, batcher: Batcher, columns: Columns, rows: int, outputs: frozenset[str], ticket: ShadowTicket
    ) -> asyncio.Future[Outputs]:
        """Queue a validated mirrored request; the future resolves to its outputs, or to
        :class:`~mlpilot.serving.errors.OverloadedError` when it is skipped. Raises that at once when the lane is
        full."""
        name = batcher.model.name
        if self._closed:
            raise self._skip(name, "closed", "the server is shutting down")
        if len(self._queue) >= self.settings.max_queue:
            raise self._skip(name, "full", f"{len(self._queue)} mirrored requests are waiting (max_queue)")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append(_Job(batcher, columns, rows, outputs, ticket, future, loop.time()))
        self._rows += rows
        self._idle.clear()
        self._schedule()
        return future

    # -- where a version runs ------------------------------------------------------------------------------
    def _place(self, model: ServedModel) -> str | None:
        """The version's key in the worker process, or None to run it in a thread here (for good, or until the
        worker process has loaded it: the first call starts that)."""
        try:
            return self._placed[model]
        except KeyError:
            pass
        if self._exporter is None or self.settings.isolation != "process":
            self._placed[model] = None
        elif model not in self._loading and not self._closed:
            loop = self._loop
            assert loop is not None
            self._loading.add(model)
            future = self._loader.submit(self._load_in_process, model)
            future.add_done_callback(functools.partial(self._loaded_threadsafe, loop, model))
        return None

    def _load_in_process(self, model: ServedModel) -> str:
        """(worker thread) Export ``model`` from the source and load it in the worker process: its key there."""
        from mlpilot.serving.shadow_process import ShadowProcess

        assert self._exporter is not None
        if self.process is None:
            self.process = ShadowProcess(nice=self.settings.nice, model_threads=self._model_threads)
        key = f"{model.name}/{model.version}/{next(self._keys)}"
        folder = tempfile.mkdtemp(prefix="mlpilot-shadow-")
        try:
            self.process.load(key, self._exporter(model.resolved, Path(folder)), model.name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return key

    def _loaded_threadsafe(self, loop: asyncio.AbstractEventLoop, model: ServedModel, future: Future[str]) -> None:
        # (the loop may have closed while the worker loaded: the server stopped, and there is nothing to tell)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._loaded, model, future)

    def _loaded(self, model: ServedModel, future: Future[str]) -> None:
        self._loading.discard(model)
        if future.cancelled():  # the lane closed before the load began
            return
        exc = future.exception()
        if exc is not None:
            detail = exc.message if isinstance(exc, MlpilotError) else f"{type(exc).__name__}: {exc}"
            logger.warning("shadow %s v%s runs in a thread of the server: %s", model.name, model.version, detail)
            key = None
        else:
            key = future.result()
        if model in self._forgotten:
            self._forgotten.discard(model)
            self._unload(key)
            return
        self._placed[model] = key
        self._count_in_process()

    def _count_in_process(self) -> None:
        self._in_process.set(sum(key is not None for key in self._placed.values()))

    def forget(self, model: ServedModel) -> None:
        """The server no longer serves ``model``: the worker process drops it."""
        if model in self._loading:
            self._forgotten.add(model)
            return
        self._unload(self._placed.pop(model, None))
        self._count_in_process()

    def _unload(self, key: str | None) -> None:
        process = self.process
        if key is not None and process is not None and not self._closed:
            self._loader.submit(process.unload, key)

    def _skip(self, model: str, reason: str, detail: str) -> OverloadedError:
        self._skipped.labels(model, reason).inc()
        return OverloadedError(f"shadow request to {model!r} skipped: {detail}", retry_after=1.0)

    def _schedule(self) -> None:
        """Dispatch at the next pass of the event loop: live work woken in this pass goes first."""
        if not self._tick_pending and self._loop is not None:
            self._tick_pending = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_pending = False
        self._dispatch()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._shed_stale(now)
        queue = self._queue
        # Compare ``now`` with the same sum that `_arm` armed the timer for: ``now - arrived >= wait`` can be false
        # at ``now == arrived + wait`` in floating point, and the timer would then skip to the deadline.
        due = queue[0].arrived + self.settings.max_wait_ms / 1000.0 if queue else 0.0
        if (
            queue
            and not self._running
            and not self._live
            and not self._live_requests
            and (self._rows >= self.settings.max_batch_rows or now >= due)
        ):
            self._start(loop, self._take(), now)
        self._arm(loop, now)
        if not self._queue and not self._running:
            self._idle.set()

    def _arm(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        """Wake up when the oldest request has waited long enough for company, then when its deadline passes:
        if live traffic or a long batch leaves no room, it is skipped then, so that whoever mirrored it gets its
        answer (and memory its bound) without waiting for the lane."""
        if not self._queue:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        oldest = self._queue[0].arrived
        wake = oldest + self.settings.max_wait_ms / 1000.0
        if wake <= now:
            wake = oldest + self.settings.deadline_ms / 1000.0
        if self._timer is not None:
            if self._timer_at == wake:
                return
            self._timer.cancel()
        self._timer_at = wake
        self._timer = loop.call_later(max(wake - now, 0.0), self._on_timer)

    def _shed_stale(self, now: float) -> None:
        deadline = self.settings.deadline_ms / 1000.0
        queue = self._queue
        while queue and (queue[0].future.done() or now >= queue[0].arrived + deadline):
            job = queue.popleft()
            self._rows -= job.rows
            if not job.future.done():  # else the caller went away
                name = job.batcher.model.name
                job.future.set_exception(
                    self._skip(name, "stale", f"waited over {self.settings.deadline_ms:.0f} ms (deadline_ms)")
                )

    def _take(self) -> list[_Job]:
        """The oldest request and, up to ``max_batch_rows`` rows, later ones for the same model version."""
        first = self._queue.popleft()
        self._rows -= first.rows
        batch = [first]
        rows = first.rows
        limit = self.settings.max_batch_rows
        if rows < limit and self._queue:
            rest: deque[_Job] = deque()
            for job in self._queue:
                if job.batcher is first.batcher and rows + job.rows <= limit and not job.future.done():
                    batch.append(job)
                    rows += job.rows
                    self._rows -= job.rows
                else:
                    rest.append(job)
            self._queue = rest
        return batch

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Job], now: float) -> None:
        wanted = batch[0].outputs
        for job in batch[1:]:
            if job.outputs is not wanted:
                wanted = wanted | job.outputs
        for job in batch:
            job.ticket.waited = now - job.arrived
        model = batch[0].batcher.model
        columns = [j.columns for j in batch]
        key = self._place(model)
        if key is not None and self.process is not None:
            call = functools.partial(self.process.run_batch, key, columns, wanted, model.name, model.version)
        else:
            call = functools.partial(model.run_batch, columns, wanted)
        try:
            fut = loop.run_in_executor(self._executor, call)
        except RuntimeError:  # the worker was shut down under us
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(self._skip(model.name, "closed", "the server is shutting down"))
            return
        self._running = True
        # A call in the worker process shares neither the GIL nor the loop: live batches need not wait for it.
        self._call_started = now if key is None else None
        started = time.perf_counter()
        fut.add_done_callback(lambda f: self._finish(batch, started, f.exception() or f.result()))

    def _finish(self, batch: list[_Job], started: float, results: list[Outputs | MlpilotError] | BaseException) -> None:
        elapsed = time.perf_counter() - started
        self._call_started = None
        waiting, self._after_call = self._after_call, set()
        for wake in waiting:
            wake()
        metrics = batch[0].batcher.metrics
        metrics.inference.observe(elapsed)
        metrics.batch_rows.observe(sum(job.rows for job in batch))
        metrics.batch_requests.observe(len(batch))
        if isinstance(results, WorkerLostError):
            logger.warning("%s; it starts again on the next mirrored request", results.message)
            # every version it held is gone with it: the next mirrored request of each loads it again
            self._placed = {m: k for m, k in self._placed.items() if k is None}
            self._count_in_process()
        outcomes: list[Outputs | BaseException]
        outcomes = [results] * len(batch) if isinstance(results, BaseException) else list(results)
        assert self._loop is not None
        self._deliver(deque(zip(batch, outcomes, strict=True)), self._loop.time())

    def _deliver(
        self, pending: deque[tuple[_Job, Outputs | BaseException]], finished: float, force: bool = False
    ) -> None:
        """Answer one request of a finished batch per pass of the event loop, and only while no live request is
        being handled: each answer wakes a handler that encodes a response and the router that compares it, work
        that would otherwise run between the steps of a live request. Answers held back longer than
        ``deadline_ms`` go out anyway. The batch counts as running until its last answer is out."""
        loop = self._loop
        assert loop is not None
        if self._live_requests and not force:
            until = finished + self.settings.deadline_ms / 1000.0
            if loop.time() < until:
                self._held = (pending, finished)
                if self._held_timer is None:
                    self._held_timer = loop.call_at(until, self._release, True)
                return
            force = True  # held long enough: the rest goes out now
        job, outcome = pending.popleft()
        if not job.future.done():
            job.ticket.waited += loop.time() - finished
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        if pending:
            loop.call_soon(self._deliver, pending, finished, force)
            return
        self._running = False
        self._schedule()
        if not self._queue:
            self._idle.set()

    def _release(self, force: bool = False) -> None:
        """Hand out held answers again: no live request is in flight, or (``force``) they waited ``deadline_ms``."""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held = self._held, None
        if held is not None:
            self._deliver(held[0], held[1], force)

    async def drain(self) -> None:
        """Wait until every waiting and running mirrored request has been answered (or skipped)."""
        await self._idle.wait()

    def close(self) -> None:
        """Skip whatever still waits and stop the worker thread (blocking until its batch ends)."""
        self._closed = True
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(self._skip(job.batcher.model.name, "closed", "the server is shutting down"))
        self._rows = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.process is not None and (self._loading or self._running):
            self.process.abort()  # a load or a batch under way would hold the shutdown up to its timeout
        self._loader.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True)
        if self.process is not None:
            self.process.close()
        self._idle.set()
