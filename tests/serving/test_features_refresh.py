"""A running server picks up newly applied feature definitions: its refresh loop sees the registered version
change, builds the lookup from the new definitions and swaps it in without failing a request."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlpilot.serving import FeaturesConfig, RegistrySource, ServeConfig
from mlpilot.serving.testing import RunningServer, serve_in_thread
from tests.serving.conftest import wait_for
from tests.serving.feature_defs import churn_definitions, train, write_sources
from tests.serving.test_features_endpoint import COMPLETE, STALE

pytest.importorskip("duckdb")
pytest.importorskip("sklearn")
pytest.importorskip("pandas")

CHURN = FeaturesConfig(service="churn")
LONG_TTL = timedelta(hours=72)  # long enough for customers last active 30-40 hours ago


@dataclass
class Setup:
    folder: Path
    client: Any
    online_url: str


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A store with ``churn`` registered and definitions version 1 (activity TTL 24 hours) applied; the online
    store holds the last 72 hours of activity, so the TTL decides whether stale customers have values."""
    import mlpilot
    from mlpilot.config import load_settings
    from mlpilot.features import apply_definitions, materialize

    write_sources(tmp_path)
    settings = load_settings(
        home=str(tmp_path / "home"), db_url=f"sqlite:///{tmp_path / 'meta.db'}", artifact_url=str(tmp_path / "art")
    )
    client = mlpilot.Client(settings=settings)
    model, frame = train(0)
    client.log_model(model, "churn", input_example=frame.head(5), aliases=["champion"])
    apply_definitions(client.features, churn_definitions(tmp_path))
    online = f"sqlite:///{tmp_path / 'online.db'}"
    materialize(list(churn_definitions(tmp_path, activity_ttl=LONG_TTL).views.values()), store=online)
    yield Setup(tmp_path, client, online)
    client.close()


def _serve(setup: Setup, refresh_interval: float) -> RunningServer:
    source = RegistrySource(setup.client.registry, setup.client.artifacts, features=setup.client.features)
    config = ServeConfig.from_refs(["churn@champion"], refresh_interval=refresh_interval)
    return serve_in_thread(
        source, config=config, features={"churn": "churn"}, features_online_url=setup.online_url, log_url=None
    )


def _apply(setup: Setup, **options: Any) -> int:
    from mlpilot.features import apply_definitions

    apply_definitions(setup.client.features, churn_definitions(setup.folder, **options))
    return setup.client.features.load_specs().version


def _predict(url: str, customer: int) -> httpx.Response:
    body = {"instances": [{"customer_id": customer, "channel": "web"}]}
    return httpx.post(f"{url}/v1/models/churn:predict", json=body, timeout=30)


def test_the_refresh_loop_swaps_in_new_definitions_without_a_failed_request(setup: Setup) -> None:
    with _serve(setup, refresh_interval=0.2) as running:
        stale = _predict(running.url, STALE)
        assert stale.status_code == 422, stale.text  # activity older than the 24-hour TTL: no value
        assert running.server.features.built_version(CHURN) == 1

        statuses: Counter[int] = Counter()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=running.url, timeout=30) as http:
                i = 0
                while not stop.is_set():
                    customer = COMPLETE[i % len(COMPLETE)]
                    body = {"instances": [{"customer_id": customer, "channel": "app"}]}
                    statuses[http.post("/v1/models/churn:predict", json=body).status_code] += 1
                    i += 1

        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            wait_for(lambda: sum(statuses.values()) >= 50, timeout=60, what="traffic before the apply")
            version = _apply(setup, activity_ttl=LONG_TTL)
            wait_for(lambda: _predict(running.url, STALE).status_code == 200, timeout=60, what="the new definitions")
            before = sum(statuses.values())
            wait_for(lambda: sum(statuses.values()) >= before + 50, timeout=60, what="traffic after the swap")
        finally:
            stop.set()
            for w in workers:
                w.join(30)
        assert set(statuses) == {200}, statuses
        assert running.server.features.built_version(CHURN) == version == 2
        assert running.server.features.refresh() == [], "nothing new: nothing rebuilt"


def test_definitions_that_drop_the_service_keep_the_current_lookup(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(setup, refresh_interval=0) as running:
        features = running.server.features
        assert features.refresh() == []
        endpoint = features.get("churn")
        # version 2 renames the service: this server's endpoint cannot be rebuilt from it
        assert _apply(setup, service="retention") == 2
        with caplog.at_level(logging.ERROR, logger="mlpilot.serving"):
            assert features.refresh() == []
        assert "unknown feature service 'churn'" in caplog.text
        assert features.get("churn") is endpoint
        assert _predict(running.url, COMPLETE[0]).status_code == 200
        assert features.built_version(CHURN) == 2, "not retried until the next apply"
        assert features.refresh() == []

        # version 3 has the service again, with the longer TTL: rebuilt and swapped in
        assert _apply(setup, activity_ttl=LONG_TTL) == 3
        assert features.refresh() == [CHURN]
        assert features.get("churn") is not endpoint
        assert features.built_version(CHURN) == 3
        assert _predict(running.url, STALE).status_code == 200
