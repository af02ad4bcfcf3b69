"""Hot swap: alias moves and config changes swap versions with zero failed requests; a version that cannot load
is refused while the old one keeps serving."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.registry import RegistryService, log_model
from mlpilot.serving import RegistrySource, ServeConfig
from mlpilot.serving.testing import InMemorySource, RunningServer, serve_in_thread
from mlpilot.store import Store
from tests.serving.conftest import wait_for


class Load:
    """Threads sending one-row predictions until stopped, recording (status, version) of every answer."""

    def __init__(self, url: str, row: list[float], threads: int = 4, limit: int = 5000) -> None:
        self.results: list[list[tuple[int, int | None]]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url, row, self.results[i], limit)) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _run(self, url: str, row: list[float], out: list[tuple[int, int | None]], limit: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self._stop.is_set() and len(out) < limit:
                try:
                    r = client.post("/v1/models/cancer:predict", json={"instances": [row]})
                    out.append((r.status_code, r.json().get("version") if r.status_code == 200 else None))
                except httpx.HTTPError:
                    out.append((0, None))

    def seen(self, version: int) -> bool:
        return any(v == version for results in self.results for _, v in list(results))

    def count(self) -> int:
        return sum(len(r) for r in self.results)

    def stop(self) -> list[tuple[int, int | None]]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return [item for results in self.results for item in results]


def _constant(X: Any, y: Any, value: int) -> DummyClassifier:
    return DummyClassifier(strategy="constant", constant=value).fit(X, y)


def test_alias_move_under_load_fails_no_request(serve: Any, cancer: Any) -> None:
    X, y = cancer
    source = InMemorySource()
    source.add("cancer", _constant(X, y, 0), input_example=X[:5], aliases=["champion"])
    source.add("cancer", _constant(X, y, 1), input_example=X[:5])
    running = serve(source, ["cancer@champion"], refresh_interval=0.05)
    load = Load(running.url, X[0].tolist())
    try:
        wait_for(lambda: load.count() > 200, what="traffic on version 1")
        source.set_alias("cancer", "champion", 2)
        wait_for(lambda: load.seen(2), what="version 2 to be served")
        before = load.count()
        wait_for(lambda: load.count() > before + 200, what="traffic on version 2")
    finally:
        results = load.stop()
    assert {status for status, _ in results} == {200}
    for per_thread in load.results:
        versions = [v for _, v in per_thread]
        switch = versions.index(2)
        # Each client saw version 1, then version 2 only: the swap is one step.
        assert set(versions[:switch]) == {1}
        assert set(versions[switch:]) == {2}
    metrics = httpx.get(f"{running.url}/metrics").text
    assert 'mlpilot_serve_model_swaps_total{model="cancer"} 1.0' in metrics
    assert 'mlpilot_serve_model_info{digest="' in metrics
    assert httpx.get(f"{running.url}/v2/models/cancer").json()["versions"] == ["2"]


def _blob(artifacts: FsspecArtifactStore, digest: str) -> Path:
    return Path(artifacts.root, "sha256", digest[:2], digest[2:])


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    yield RegistryService(store)
    store.close()


def test_registry_swap_and_corrupt_version_refused(
    registry: RegistryService, tmp_path: Path, cancer: Any, cancer_model: Any
) -> None:
    X, y = cancer
    artifacts = FsspecArtifactStore(str(tmp_path / "artifacts"))
    log_model(cancer_model, "cancer", registry=registry, artifacts=artifacts, input_example=X[:5], aliases=["champion"])
    source = RegistrySource(registry, artifacts)
    config = ServeConfig.from_refs(["cancer@champion"], refresh_interval=0)
    running: RunningServer = serve_in_thread(source, config=config, log_url=tmp_path / "predictions")
    client = running.client()
    try:
        assert client.metadata("cancer")["platform"] == "mlpilot_sklearn"
        assert client.predict("cancer", X[:3].tolist()).predictions == cancer_model.predict(X[:3]).tolist()

        log_model(_constant(X, y, 1), "cancer", registry=registry, artifacts=artifacts, input_example=X[:5])
        registry.set_alias("cancer", "champion", 2)
        events = running.call(running.server.refresh())
        assert [(e.ref, e.old, e.new, e.error) for e in events] == [("cancer@champion", 1, 2, None)]
        assert client.predict("cancer", X[:3].tolist()).predictions == [1, 1, 1]

        bad = log_model(_constant(X, y, 0), "cancer", registry=registry, artifacts=artifacts, input_example=X[:5])
        blob = _blob(artifacts, bad.artifact_sha256)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        registry.set_alias("cancer", "champion", 3)
        load = Load(running.url, X[0].tolist(), threads=2, limit=2000)
        try:
            wait_for(lambda: load.count() > 50, what="traffic")
            events = running.call(running.server.refresh())
            before = load.count()
            wait_for(lambda: load.count() > before + 50, what="traffic after the refused swap")
        finally:
            results = load.stop()
        assert len(events) == 1
        assert events[0].new is None
        assert "refused" in (events[0].error or "")
        assert "corrupt" in (events[0].error or "")
        assert events[0].cause == "IntegrityError"
        assert set(results) == {(200, 2)}
        metrics = client.metrics()
        assert 'mlpilot_serve_model_load_failures_total{model="cancer"} 1.0' in metrics
        assert client.metadata("cancer")["versions"] == ["2"]
    finally:
        client.close()
        running.stop()


class Broken:
    def predict(self, x: Any) -> Any:
        raise RuntimeError("cannot predict anything")


def test_model_failing_its_warm_up_is_refused_at_start(cancer: Any, tmp_path: Path) -> None:
    from mlpilot.serving import ModelLoadError
    from mlpilot.serving.testing import predictor_for

    X, _ = cancer
    source = InMemorySource()
    good = predictor_for(DummyClassifier().fit(X, np.zeros(len(X))), X[:5])
    source.add("broken", type(good)(type(good._handle)(Broken().predict), None, good.signature))
    with pytest.raises(ModelLoadError, match="warm-up prediction failed: cannot predict anything"):
        serve_in_thread(source, ["broken/1"], log_url=tmp_path)


def test_config_file_change_adds_and_removes_models(tmp_path: Path, cancer: Any) -> None:
    from mlpilot.serving import load_serve_config

    X, y = cancer
    source = InMemorySource()
    source.add("a", _constant(X, y, 0), input_example=X[:5])
    source.add("b", _constant(X, y, 1), input_example=X[:5])
    path = tmp_path / "serve.toml"
    path.write_text('[serve]\nrefresh_interval = 0.05\n[[serve.models]]\nref = "a/1"\n')
    running = serve_in_thread(source, config=load_serve_config(path), config_path=path, log_url=tmp_path / "log")
    try:
        with httpx.Client(base_url=running.url) as http:
            assert http.get("/v2/models/a").status_code == 200
            assert http.get("/v2/models/b").status_code == 404
            path.write_text(
                '[serve]\nrefresh_interval = 0.05\n[[serve.models]]\nref = "b/1"\nname = "bee"\nmax_batch_size = 8\n'
            )
            wait_for(lambda: http.get("/v2/models/bee").status_code == 200, what="the new config")
            assert http.get("/v2/models/a").status_code == 404
            assert http.post("/v1/models/bee:predict", json={"instances": X[:1].tolist()}).json()["predictions"] == [1]
            path.write_text("[serve]\nmodels = 3\n")  # not a valid config: ignored, bee keeps serving
            mtime = path.stat().st_mtime
            wait_for(lambda: running.server._config_mtime == mtime, what="the broken config to be read")
            assert http.get("/v2/models/bee/ready").status_code == 200
    finally:
        running.stop()
