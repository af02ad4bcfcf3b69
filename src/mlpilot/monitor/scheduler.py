"""The control plane's monitoring loop: a background thread calling ``Monitor.tick`` every ``interval`` seconds.

Started and stopped with the app's lifespan (``with monitor.scheduler().running(): ...``); tests leave it off
and call ``monitor.tick()`` or ``monitor.alerts.evaluate()`` themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Scheduler"]

logger = logging.getLogger("mlpilot.monitor")


class Scheduler:
    """Runs ``tick`` every ``interval`` seconds in a daemon thread; ``interval`` 0 never runs it.

    >>> ticks = []
    >>> with Scheduler(lambda: ticks.append(1), 0).running():
    ...     pass
    >>> ticks
    []
    """

    def __init__(self, tick: Callable[[], None], interval: float) -> None:
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mlpilot-monitor", daemon=True)
        self._thread.start()
        logger.info("monitor: checking endpoints and alerts every %g s", self.interval)

    def _run(self) -> None:
        # The first round waits one interval: the server answers requests before it starts checking.
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the loop outlives any one failed round
                logger.exception("monitor: scheduled round failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the round in progress (waiting up to ``timeout`` seconds for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @contextmanager
    def running(self) -> Iterator[Scheduler]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
