"""The end-to-end harness of the deployment tests: a real control plane (``mlpilot server`` in a thread) with the
rollout controller, real data planes (the model server behind the traffic router, following the control plane
over HTTP), and a load generator whose every answer is recorded. Models are pyfunc models with planted
problems (:mod:`tests.deploy.planted`), loaded through the registry over REST.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from mlpilot.deploy import AnalysisConfig, Controller, Deployments
from mlpilot.deploy.dataplane import DataPlane, RunningDataPlane, build_data_plane, serve_in_thread
from tests.conftest import LiveServer

from . import planted

#: The versions of ``churn`` every environment registers, in order.
GOOD, GOOD_TOO, FLAKY, SLOW, WRONG = 1, 2, 3, 4, 5

Protocol = Literal["v1", "v2", "invocations"]


@dataclass
class Env:
    control: LiveServer
    deployments: Deployments
    client: Any


@contextmanager
def start_env(home: Path) -> Iterator[Env]:
    """A control plane with ``churn`` v1-v5 registered and its rollout controller looking every 0.1 s."""
    import cloudpickle  # type: ignore[import-untyped]

    from mlpilot.registry import log_model

    cloudpickle.register_pickle_by_value(planted)
    control = LiveServer(home)
    controller = Controller(control.services.deployments, interval=0.1)
    try:
        client = control.client
        example = np.zeros((8, 4))
        models = [planted.Threshold(), planted.Threshold(), planted.Flaky(0.3), planted.Slow(25), planted.Wrong(0.3)]
        for model in models:
            log_model(model, "churn", registry=client.registry, artifacts=client.artifacts, input_example=example)
        cloudpickle.unregister_pickle_by_value(planted)
        controller.start()
        yield Env(control, control.services.deployments, client)
    finally:
        controller.stop()
        control.stop()


def plane(
    env: Env, name: str, *, log_url: str | None = None, serve_options: dict[str, Any] | None = None
) -> RunningDataPlane:
    """A data plane following ``name`` on an ephemeral port (polls every 0.1 s, reports every 0.2 s).

    By default it has enough worker threads that a slow candidate cannot hold up the primary's requests;
    ``log_url`` and ``serve_options`` are passed on to :func:`build_data_plane`.
    """
    from mlpilot.serving import RegistrySource

    built = build_data_plane(
        RegistrySource(env.client.registry, env.client.artifacts),
        control_url=env.control.url,
        names=[name],
        poll_interval=0.1,
        report_interval=0.2,
        log_url=log_url,
        serve_options=serve_options if serve_options is not None else {"inference_threads": 4},
    )
    return serve_in_thread(built)


def deployment(env: Env, *, create: dict[str, Any] | None = None, **analysis: Any) -> str:
    """A new deployment of ``churn`` v1 with a unique name; ``create`` holds more arguments of ``create``."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    env.deployments.create(
        name, model="churn", version=GOOD, analysis=AnalysisConfig(min_samples=100, **analysis), **(create or {})
    )
    return name


def wait(
    check: Callable[[], bool],
    timeout: float = 60.0,
    what: str | Callable[[], str] = "condition",
    *,
    step: float = 0.02,
) -> None:
    """Poll ``check`` every ``step`` seconds until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(step)


def applied(plane: DataPlane, revision: int) -> bool:
    """Whether the data plane routes by ``revision`` (or a later one) of its deployment."""
    return any(rev >= revision for _, rev, _ in plane.follower.applied)


def follow(env: Env, running: RunningDataPlane, name: str) -> int:
    """Wait until the data plane routes by the deployment's current revision; returns that revision."""
    revision = env.deployments.get(name).revision
    wait(lambda: applied(running.plane, revision), what=f"the data plane to apply revision {revision}")
    return revision


def model_loads(url: str, model: str) -> int:
    """How many model versions the model server at ``url`` has loaded for ``model`` (its Prometheus count)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlpilot_serve_model_load_duration_seconds_count" and sample.labels["model"] == model:
                return int(sample.value)
    return 0


def _request(protocol: Protocol, name: str, row: list[float], key_field: str | None, key: str) -> tuple[str, Any]:
    """The path and JSON body of a one-row prediction; with ``key_field``, the key goes where the protocol lets a
    caller put a field (top level on ``/v1``, the request parameters on OIP v2 and ``/invocations``)."""
    field = {key_field: key} if key_field else {}
    if protocol == "v1":
        return f"/v1/models/{name}:predict", {"instances": [row], **field}
    if protocol == "v2":
        tensor = {"name": "input", "datatype": "FP64", "shape": [1, 4], "data": row}
        return f"/v2/models/{name}/infer", {"inputs": [tensor], **({"parameters": field} if field else {})}
    return f"/invocations?model={name}", {"instances": [row], **({"params": field} if field else {})}


def _prediction(protocol: Protocol, body: Any) -> int:
    if protocol == "v2":
        return int(body["outputs"][0]["data"][0])
    return int(body["predictions"][0])


@dataclass
class Load:
    """Threads sending one-row predictions until stopped; records every answer and every failure.

    Each request draws an assignment key (``user-<n>``, from ``keys`` when given) and passes it as the
    ``x-mlpilot-key`` header (``key_via="header"``), in the body field ``key_field`` (``"field"``), or not at all;
    requests rotate over ``protocols``. With ``resend`` set to a variant, every request it answered is sent once
    more with the same key (a client that retries on one arm: a planted sample-ratio mismatch).
    """

    url: str
    name: str
    threads: int = 4
    key_via: Literal["none", "header", "field"] = "none"
    key_field: str = "entity_id"
    keys: Sequence[str] | None = None
    protocols: Sequence[Protocol] = ("v1",)
    resend: str | None = None
    statuses: Counter[tuple[int, str | None]] = field(default_factory=Counter)
    #: requests that got no answer (connection errors, timeouts), described
    failures: list[str] = field(default_factory=list)
    #: answers other than 200, described
    refused: list[str] = field(default_factory=list)
    #: (time sent, variant, prediction, truth, key) of every 200
    answers: list[tuple[float, str, int, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _send(self, http: httpx.Client, protocol: Protocol, row: list[float], key: str) -> str | None:
        path, body = _request(protocol, self.name, row, self.key_field if self.key_via == "field" else None, key)
        headers = {"x-mlpilot-key": key} if self.key_via == "header" else {}
        started = time.time()
        try:
            r = http.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            with self._lock:
                self.failures.append(f"{protocol}: {exc!r}")
            return None
        variant = r.headers.get("x-mlpilot-variant")
        with self._lock:
            self.statuses[(r.status_code, variant)] += 1
            if r.status_code == 200:
                self.answers.append((started, variant or "", _prediction(protocol, r.json()), int(row[0] > 0), key))
            else:
                self.refused.append(f"{protocol}: {r.status_code} from {variant}: {r.text[:200]}")
        return variant

    def _work(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = seed
            while not self._stop.is_set():
                row = rng.normal(size=4).tolist()
                n = rng.integers(len(self.keys) if self.keys else 1_000_000)
                key = self.keys[n] if self.keys else f"user-{n}"
                protocol = self.protocols[i % len(self.protocols)]
                i += 1
                variant = self._send(http, protocol, row, key)
                if self.resend is not None and variant == self.resend:
                    self._send(http, protocol, row, key)

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._work, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def count(self, status: int | None = None, variant: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (s, v), n in self.statuses.items()
                if (status is None or s == status) and (variant is None or v == variant)
            )

    def variants_since(self, since: float) -> list[str]:
        """The variants that answered (200) the requests sent at or after ``since`` (``time.time()``)."""
        with self._lock:
            return [variant for sent, variant, _, _, _ in self.answers if sent >= since]

    def mark(self) -> int:
        """The number of answers so far: wait for ``load.count() > mark + n`` to see traffic after a switch."""
        return self.count()

    def assert_clean(self, *, allow: Callable[[int, str | None], bool] | None = None) -> None:
        """Every request was answered with a 200 (or a status ``allow`` accepts): no connection error, no 5xx,
        no 503 shed at a switch."""
        with self._lock:
            bad = {k: n for k, n in self.statuses.items() if k[0] != 200 and not (allow and allow(*k))}
            total = sum(self.statuses.values())
        assert not self.failures, f"{len(self.failures)} requests got no answer, e.g. {self.failures[:3]}"
        assert not bad, f"answers other than 200 among {total}: {bad}; e.g. {self.refused[:3]}"
        assert total > 0
