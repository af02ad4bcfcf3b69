"""The shadow lane's worker process: candidates exported from the registry run in a process of their own, fed
and answered over a pipe as Arrow IPC; it verifies what it loads, survives bad requests, is restarted when it
dies, and a real server behind the real traffic router gets the same answers from it as from the model itself."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.deploy import RouteTable, Variant, VariantStats
from mlpilot.deploy.router import TrafficRouter
from mlpilot.errors import MlpilotError
from mlpilot.registry import RegistryService, log_model
from mlpilot.serving import ModelServer, RegistrySource, ServeConfig
from mlpilot.serving.errors import ModelLoadError, PredictionError, WorkerLostError
from mlpilot.serving.shadow_process import ShadowProcess, decode_arrays, encode_arrays
from mlpilot.store import Store
from tests.conftest import RoutedServer
from tests.serving.conftest import wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the worker talks over inherited POSIX pipes")


def test_arrays_cross_as_arrow_with_their_shapes_and_dtypes() -> None:
    arrays = {
        "f64": np.array([0.5, -1.25, np.nan]),
        "i8": np.array([1, -2, 3], dtype=np.int8),
        "wide": np.arange(12, dtype=np.float32).reshape(3, 4),
        "cube": np.arange(24, dtype=np.int64).reshape(3, 2, 4),
        "flag": np.array([True, False, True]),
        "text": np.array(["a", None, "ccc"], dtype=object),
        "fixed": np.array(["x", "yy", "z"]),
        "when": np.array(["2026-01-01", "2026-06-30", "2027-01-01"], dtype="datetime64[ms]"),
    }
    back = decode_arrays(encode_arrays(arrays))
    assert list(back) == list(arrays)
    for name, arr in arrays.items():
        assert back[name].shape == arr.shape, name
        assert back[name].dtype == arr.dtype, name
        if arr.dtype.kind == "f":
            np.testing.assert_array_equal(back[name], arr)
        else:
            assert back[name].tolist() == arr.tolist(), name


@pytest.fixture
def registry_source(tmp_path: Path, frame_model: Any, customers: Any, cancer_model: Any, cancer: Any) -> RegistrySource:
    """``customers`` v1 (a table with a text column) and ``cancer`` v1 (30 floats), in a registry on SQLite."""
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    registry = RegistryService(store)
    artifacts = FsspecArtifactStore(str(tmp_path / "artifacts"))
    frame, _ = customers
    X, _ = cancer
    log_model(frame_model, "customers", registry=registry, artifacts=artifacts, input_example=frame.head(5))
    log_model(cancer_model, "cancer", registry=registry, artifacts=artifacts, input_example=X[:5])
    log_model(cancer_model, "cancer", registry=registry, artifacts=artifacts, input_example=X[:5])
    return RegistrySource(registry, artifacts)


@pytest.fixture
def worker() -> Iterator[ShadowProcess]:
    process = ShadowProcess(nice=19, model_threads=1)
    yield process
    process.close()


def _load(worker: ShadowProcess, source: RegistrySource, ref: str, tmp_path: Path, key: str) -> Any:
    resolved = source.resolve(ref)
    folder = tmp_path / key
    folder.mkdir()
    worker.load(key, source.export(resolved, folder), resolved.name)
    return resolved


def test_the_worker_answers_as_the_model_does_in_the_server(
    worker: ShadowProcess, registry_source: RegistrySource, tmp_path: Path, customers: Any, frame_model: Any
) -> None:
    from mlpilot.serving.model import ServedModel

    resolved = _load(worker, registry_source, "customers/1", tmp_path, "c1")
    assert worker.pid is not None
    assert worker.pid != os.getpid()
    local = ServedModel.prepare("customers", resolved, registry_source.load(resolved))
    frame, _ = customers
    batch = [local.schema.from_rows(frame.iloc[i : i + n].to_dict("records")) for i, n in ((0, 3), (3, 1), (4, 7))]
    wanted = frozenset({"output", "probabilities"})
    remote = worker.run_batch("c1", batch, wanted, "customers", 1)
    expected = local.run_batch(batch, wanted)
    assert len(remote) == 3
    for got, want in zip(remote, expected, strict=True):
        assert not isinstance(got, MlpilotError)
        assert not isinstance(want, MlpilotError)
        assert got["output"].tolist() == want["output"].tolist()
        np.testing.assert_allclose(got["probabilities"], want["probabilities"])
    last = remote[2]
    assert not isinstance(last, MlpilotError)
    assert last["probabilities"].shape == (7, 2)


def test_one_bad_request_fails_alone_and_the_worker_keeps_serving(
    worker: ShadowProcess, registry_source: RegistrySource, tmp_path: Path, customers: Any
) -> None:
    from mlpilot.registry.signature import Signature
    from mlpilot.serving.schema import InputSchema

    frame, _ = customers
    resolved = _load(worker, registry_source, "customers/1", tmp_path, "k")
    assert isinstance(resolved.signature, Signature)
    schema = InputSchema.compile(resolved.signature)
    good = schema.from_rows(frame.head(2).to_dict("records"))
    bad = schema.from_rows(frame.head(2).to_dict("records"))
    bad["income"] = np.array([np.nan, 1.0])  # the logistic regression refuses NaN: this request fails alone
    results = worker.run_batch("k", [good, bad, good], frozenset({"output"}), "customers", 1)
    assert not isinstance(results[0], MlpilotError)
    assert not isinstance(results[2], MlpilotError)
    assert results[0]["output"].shape == (2,)
    assert results[2]["output"].tolist() == results[0]["output"].tolist()
    assert isinstance(results[1], PredictionError)
    assert "NaN" in results[1].message
    [ok] = worker.run_batch("k", [good], frozenset({"output"}), "customers", 1)
    assert not isinstance(ok, MlpilotError)
    assert ok["output"].shape == (2,)


def test_the_worker_refuses_an_archive_whose_hash_does_not_match(
    worker: ShadowProcess, registry_source: RegistrySource, tmp_path: Path
) -> None:
    resolved = registry_source.resolve("cancer/1")
    spec = registry_source.export(resolved, tmp_path)
    archive = Path(spec["archive"])
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="SHA-256"):
        worker.load("bad", spec, "cancer")
    assert "bad" not in worker.loaded
    assert worker.pid is not None  # it refused the model, and lives on


def test_a_dead_worker_fails_its_batch_and_a_new_one_starts_on_the_next_load(
    worker: ShadowProcess, registry_source: RegistrySource, tmp_path: Path, cancer: Any
) -> None:
    X, _ = cancer
    _load(worker, registry_source, "cancer/1", tmp_path, "a")
    first = worker.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match=r"exited|stopped answering"):
        worker.run_batch("a", [{"input": X[:2]}], frozenset({"output"}), "cancer", 1)
    assert worker.loaded == set()
    _load(worker, registry_source, "cancer/1", tmp_path, "b")
    assert worker.starts == 2
    assert worker.pid not in (None, first)
    [ok] = worker.run_batch("b", [{"input": X[:2]}], frozenset({"output"}), "cancer", 1)
    assert not isinstance(ok, MlpilotError)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="priorities are read from /proc")
def test_the_worker_runs_at_a_lower_cpu_priority(
    worker: ShadowProcess, registry_source: RegistrySource, tmp_path: Path
) -> None:
    _load(worker, registry_source, "cancer/1", tmp_path, "k")
    assert worker.pid is not None
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, base + 19)


def test_the_worker_exits_when_the_server_goes_away(registry_source: RegistrySource, tmp_path: Path) -> None:
    process = ShadowProcess(nice=0, model_threads=1)
    _load(process, registry_source, "cancer/1", tmp_path, "k")
    proc = process._proc
    assert proc is not None
    os.close(process._send)  # what the server's death does to the pipe
    process._send = -1
    assert proc.wait(60) == 0
    process.close()


# -- behind the real router ----------------------------------------------------------------------------------
@pytest.fixture
def routed(registry_source: RegistrySource) -> Iterator[Callable[..., tuple[str, ModelServer, TrafficRouter]]]:
    """``cancer`` v1 (primary) and v2 (a 100% shadow of the same model) behind the router, on 127.0.0.1."""
    started: list[RoutedServer] = []

    def start(
        source: RegistrySource = registry_source, name: str = "cancer", **shadow: Any
    ) -> tuple[str, ModelServer, TrafficRouter]:
        config = ServeConfig.from_dict(
            {
                "models": [{"ref": f"{name}/1"}, {"ref": f"{name}/2"}],
                "inference_threads": 1,
                "refresh_interval": 0,
                "access_log": False,
                "log": {"enabled": False},
                "shadow": {"max_wait_ms": 0, **shadow},
            }
        )
        server = ModelServer(config, source).load()
        router = TrafficRouter(server.app)
        variants = [Variant(version=1, role="primary", weight=100), Variant(version=2, role="shadow", weight=100)]
        router.set_table(RouteTable.build(name, variants))
        running = RoutedServer(server, router)
        started.append(running)
        return running.url, server, router

    yield start
    for running in started:
        running.stop()


def _stats(server: ModelServer, router: TrafficRouter, name: str = "cancer") -> VariantStats:
    import asyncio

    async def read() -> VariantStats:
        return VariantStats().merge(router.collector.get((name, 0, 0, "v2")))

    assert server.loop is not None
    return asyncio.run_coroutine_threadsafe(read(), server.loop).result(30)


def test_mirrors_run_in_the_worker_process_and_agree_with_the_primary(
    routed: Callable[..., tuple[str, ModelServer, TrafficRouter]], cancer: Any
) -> None:
    url, server, router = routed()
    lane = server.repository.shadow
    X, _ = cancer
    with httpx.Client(base_url=url, timeout=60) as client:

        def predict(i: int) -> None:
            answer = client.post("/v1/models/cancer:predict", json={"instances": X[i : i + 2].tolist()})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-mlpilot-variant"] == "v1"

        predict(0)  # its mirror runs in the server, and starts the worker loading version 2
        wait_for(lambda: lane.process is not None and bool(lane.process.loaded), what="the worker to load version 2")
        assert lane.process is not None
        pid = lane.process.pid
        assert pid not in (None, os.getpid())
        for i in range(20):
            predict(i)
        wait_for(lambda: _stats(server, router).requests == 21, what="21 mirrors to run")
        stats = _stats(server, router)
        assert (stats.paired, stats.agreed, stats.errors, stats.dropped) == (21, 21, 0, 0)
        assert lane.process.batches >= 1  # (mirrors wait for company: 20 may make a single batch)
        assert "mlpilot_serve_shadow_process_versions 1.0" in client.get("/metrics").text

        os.kill(pid, signal.SIGKILL)  # a candidate that crashes its worker costs its own mirrors, nobody else's
        predict(0)
        wait_for(lambda: _stats(server, router).errors == 1, what="the lost batch to count as the candidate's error")
        predict(0)  # it runs in the server, and starts a new worker loading version 2
        wait_for(lambda: lane.process is not None and bool(lane.process.loaded), what="a new worker to load version 2")
        assert lane.process.pid != pid
        assert lane.process.starts == 2
        for i in range(5):
            predict(i)
        wait_for(lambda: _stats(server, router).agreed == 27, what="mirrors to run in the new worker")
        assert lane.process.batches >= 1


def test_a_retired_shadow_version_leaves_the_worker(
    routed: Callable[..., tuple[str, ModelServer, TrafficRouter]], cancer: Any
) -> None:
    import asyncio

    url, server, _router = routed()
    lane = server.repository.shadow
    X, _ = cancer
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/v1/models/cancer:predict", json={"instances": X[:1].tolist()}).status_code == 200
        wait_for(lambda: lane.process is not None and bool(lane.process.loaded), what="the worker to load version 2")
        assert "mlpilot_serve_shadow_process_versions 1.0" in client.get("/metrics").text
        only_v1 = server.config.model_copy(update={"models": server.config.models[:1]})
        assert server.loop is not None
        events = asyncio.run_coroutine_threadsafe(server.apply_config(only_v1), server.loop).result(60)
        assert not [e for e in events if e.error]
        wait_for(lambda: lane.process is not None and not lane.process.loaded, what="the worker to drop version 2")
        assert "mlpilot_serve_shadow_process_versions 0.0" in client.get("/metrics").text
        assert lane.process.pid is not None  # the process stays, ready for the next shadow


def test_thread_isolation_keeps_mirrors_in_the_server(
    routed: Callable[..., tuple[str, ModelServer, TrafficRouter]], cancer: Any
) -> None:
    url, server, router = routed(isolation="thread")
    X, _ = cancer
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(5):
            assert (
                client.post("/v1/models/cancer:predict", json={"instances": X[i : i + 1].tolist()}).status_code == 200
            )
    wait_for(lambda: _stats(server, router).agreed == 5, what="5 mirrors to run")
    assert server.repository.shadow.process is None
    assert _stats(server, router).dropped == 0


class FileGated:
    """Predicts zeros; once the file ``armed`` exists in ``folder``, each call creates ``entered`` there and
    waits for ``gate``: a model that blocks inside the worker process for as long as a test wants."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def predict(self, x: Any) -> Any:
        import os

        import numpy

        if os.path.exists(os.path.join(self.folder, "armed")):
            with open(os.path.join(self.folder, "entered"), "w"):
                pass
            while not os.path.exists(os.path.join(self.folder, "gate")):
                time.sleep(0.01)
        return numpy.zeros(len(x), dtype=numpy.int64)


def gated_source(tmp_path: Path, *folders: Path) -> RegistrySource:
    """A registry on SQLite with one ``gated`` version per folder (version 1 first), each a :class:`FileGated`."""
    cloudpickle = pytest.importorskip("cloudpickle")
    registry = RegistryService(Store(f"sqlite:///{tmp_path / 'gated.db'}"))
    artifacts = FsspecArtifactStore(str(tmp_path / "gated-artifacts"))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker process cannot import this module
    try:
        for folder in folders:
            folder.mkdir()
            model = FileGated(str(folder))
            log_model(model, "gated", registry=registry, artifacts=artifacts, input_example=np.ones((2, 3)))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return RegistrySource(registry, artifacts)


def test_live_requests_never_wait_for_a_shadow_call_in_the_worker(
    routed: Callable[..., tuple[str, ModelServer, TrafficRouter]], tmp_path: Path
) -> None:
    live, shadow = tmp_path / "live", tmp_path / "shadow"
    source = gated_source(tmp_path, live, shadow)
    # A live batch waits for a shadow call in the server's thread up to the grace (here a minute, longer than the
    # client's timeout): never for one in the worker process, which shares neither our GIL nor our event loop.
    url, server, router = routed(source, "gated", live_grace_ms=60_000)
    lane = server.repository.shadow
    with httpx.Client(base_url=url, timeout=30) as client:

        def predict() -> int:
            return client.post("/v1/models/gated:predict", json={"instances": [[1.0, 2.0, 3.0]]}).status_code

        assert predict() == 200  # its mirror runs in the server while the worker loads version 2
        wait_for(lambda: lane.process is not None and bool(lane.process.loaded), what="the worker to load version 2")
        wait_for(lambda: _stats(server, router, "gated").requests == 1, what="the first mirror")
        (shadow / "armed").touch()
        assert predict() == 200
        wait_for((shadow / "entered").exists, what="the shadow call to block in the worker")
        for _ in range(3):
            assert predict() == 200  # answered while the shadow call is still blocked
        assert not (shadow / "gate").exists()
        (shadow / "gate").touch()
    wait_for(lambda: _stats(server, router, "gated").requests == 5, what="the blocked mirror and the next ones")
    stats = _stats(server, router, "gated")
    assert (stats.agreed, stats.errors) == (5, 0)


def test_abort_ends_a_load_under_way_at_once(tmp_path: Path) -> None:
    """A server stopping while its worker loads a version does not wait for the load (up to its timeout)."""
    import threading

    folder = tmp_path / "model"
    source = gated_source(tmp_path, folder)
    (folder / "armed").touch()  # the worker's warm-up prediction blocks: the load never ends by itself
    process = ShadowProcess(nice=0, model_threads=1)
    failures: list[BaseException] = []

    def load() -> None:
        try:
            _load(process, source, "gated/1", tmp_path, "k")
        except BaseException as exc:
            failures.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    wait_for((folder / "entered").exists, what="the load to block in the worker's warm-up")
    process.abort()
    loader.join(process.start_timeout / 2)  # without abort it would wait for the whole start timeout
    assert not loader.is_alive()
    assert len(failures) == 1
    assert isinstance(failures[0], ModelLoadError)
    assert "k" not in process.loaded
    process.close()
