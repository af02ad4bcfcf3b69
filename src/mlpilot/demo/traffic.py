"""The demo's callers and their ground truth during the rollouts.

:class:`Traffic` is a few threads sending one-row predictions keyed by customer id to the data plane, counting
every answer by status and variant. :class:`LabelJob` is what a user's label pipeline would do: once a
customer's outcome is known, log it through the monitoring API (``client.monitor.log_labels``) keyed by the
request id the data plane answered with. The control plane's label feed joins those labels to the prediction
log and hands the rollout analysis each variant's online accuracy; nobody tells it which variant answered.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpilot.demo.data import FEATURES, TARGET
from mlpilot.demo.state import ENDPOINT
from mlpilot.errors import NotFoundError

__all__ = ["CALLERS", "LabelJob", "Traffic"]

#: Callers sending requests while the rollouts run.
CALLERS = 4
#: Labels are sent for answers at least this old: the data plane flushes its prediction log every half second.
SETTLE_SECONDS = 1.0
#: An answer the prediction log still does not hold after this long is given up on (its label is dropped).
GIVE_UP_SECONDS = 15.0


@dataclass
class Traffic:
    """Threads sending one-row predictions for ``customers`` to a data plane until stopped.

    Each request carries the customer id as its sticky assignment key. Every answer is counted by status and
    variant (a request that got no answer at all counts as status 0 of variant ``?``); every prediction is
    kept as (time, request id, the customer's true label) for the label job.
    """

    url: str
    endpoint: str
    customers: Any
    by_id: bool
    threads: int = CALLERS
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    _answers: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _bodies(self) -> list[tuple[str, bytes, int]]:
        import orjson

        ids = self.customers["customer_id"].tolist()
        truth = self.customers[TARGET].tolist()
        if self.by_id:
            rows: list[dict[str, Any]] = [{"customer_id": int(c)} for c in ids]
        else:
            rows = self.customers[FEATURES].to_dict(orient="records")
        return [
            (str(c), orjson.dumps({"instances": [row]}), int(y)) for c, row, y in zip(ids, rows, truth, strict=True)
        ]

    def _work(self, seed: int, bodies: list[tuple[str, bytes, int]]) -> None:
        import httpx

        order = np.random.default_rng(seed).permutation(len(bodies))
        path = f"/v1/models/{self.endpoint}:predict"
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                key, body, label = bodies[order[i % len(order)]]
                i += 1
                headers = {"content-type": "application/json", "x-mlpilot-key": key}
                try:
                    response = http.post(path, content=body, headers=headers)
                except httpx.HTTPError:
                    with self._lock:
                        self.counts[(0, "?")] += 1
                    continue
                variant = response.headers.get("x-mlpilot-variant", "?")
                with self._lock:
                    self.counts[(response.status_code, variant)] += 1
                    if response.status_code == 200:
                        self._answers.append((time.monotonic(), response.headers["x-request-id"], label))

    def start(self) -> Traffic:
        bodies = self._bodies()
        for i in range(self.threads):
            worker = threading.Thread(target=self._work, args=(i, bodies), name=f"demo-traffic-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def take_answers(self) -> list[tuple[float, str, int]]:
        """The predictions answered since the last call: (monotonic time, request id, true label)."""
        with self._lock:
            taken, self._answers = self._answers, []
        return taken

    def snapshot(self) -> Counter[tuple[int, str]]:
        with self._lock:
            return Counter(self.counts)


@dataclass
class LabelJob:
    """Logs the true label of every answered request through ``monitor`` (a monitoring backend: here the
    control plane's REST API), in batches keyed by request id, once the prediction log holds the request."""

    monitor: Any
    pending: list[tuple[float, str, int]] = field(default_factory=list)
    #: labels stored, and batches sent
    logged: int = 0
    batches: int = 0

    def send(self, answers: list[tuple[float, str, int]]) -> int:
        """Queue ``answers`` and log the labels of those old enough to be in the log; returns how many."""
        from mlpilot.monitor import LabelBatch

        self.pending.extend(answers)
        now = time.monotonic()
        ready = [a for a in self.pending if now - a[0] >= SETTLE_SECONDS]
        if not ready:
            return 0
        batch = LabelBatch.from_request_ids([r for _, r, _ in ready], [y for _, _, y in ready], endpoint=ENDPOINT)
        try:
            receipt = self.monitor.log_labels(batch, actor="demo")
        except NotFoundError as exc:
            # The batch is refused whole when a request is not in the log yet: keep them all for the next
            # round, except those the log has been missing for too long.
            unknown = set(exc.details.get("unknown", ()))
            self.pending = [
                a for a in self.pending if now - a[0] < GIVE_UP_SECONDS or (unknown and a[1] not in unknown)
            ]
            return 0
        sent = {r for _, r, _ in ready}
        self.pending = [a for a in self.pending if a[1] not in sent]
        self.logged += receipt.stored
        self.batches += 1
        return int(receipt.stored)
