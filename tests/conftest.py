"""Shared fixtures: a metadata store per backend, an artifact store, service URLs, an S3 server (moto).

Service-backed tests read their URLs from ``MLPILOT_TEST_PG_URL`` and ``MLPILOT_TEST_REDIS_URL``. They skip
with a reason when a URL is unset or unreachable, except under ``MLPILOT_TEST_REQUIRE_SERVICES=1`` (CI), where
an unreachable service fails the run instead of hiding it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.store import Store

REQUIRE_SERVICES = os.environ.get("MLPILOT_TEST_REQUIRE_SERVICES") == "1"


def service_url(var: str) -> str:
    """The URL in ``var``, or skip (fail under MLPILOT_TEST_REQUIRE_SERVICES=1) when unset."""
    url = os.environ.get(var)
    if not url:
        if REQUIRE_SERVICES:
            pytest.fail(f"{var} is not set but MLPILOT_TEST_REQUIRE_SERVICES=1")
        pytest.skip(f"{var} is not set: no service to test against")
    return url


def unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own MLPILOT_* settings or writes into ./.mlpilot."""
    for key in list(os.environ):
        if key.startswith("MLPILOT_") and not key.startswith("MLPILOT_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLPILOT_HOME", str(tmp_path / "mlpilot-home"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_free_port = free_port


class CliProcess:
    """``python -m mlpilot.cli ARGS`` in a process of its own, serving HTTP on ``port``; its stderr is kept for
    the test to assert on, and :meth:`ready` fails at once (with that stderr) if the process has exited."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, health: str = "/healthz") -> None:
        import subprocess
        import sys

        self.url = f"http://127.0.0.1:{port}"
        self.health = health
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlpilot.cli", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> bool:
        import httpx

        proc = self.proc
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "the server exited"
        try:
            return httpx.get(f"{self.url}{self.health}", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on 127.0.0.1, one per test session."""
    import subprocess
    import sys
    import time

    import httpx

    pytest.importorskip("s3fs", reason="needs the s3 extra: pip install 'mlpilot[s3]'")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("moto server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on :func:`s3_endpoint`, with test credentials in the usual AWS environment variables."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = service_url("MLPILOT_TEST_PG_URL")
    try:
        import psycopg

        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3).close()
    except Exception as exc:
        unavailable(f"PostgreSQL at {url} is unreachable: {exc}")
    return url


def _pg_schema_url(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards: isolation without creating databases."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    raw = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty metadata database URL: SQLite in tmp_path, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from _pg_schema_url(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated metadata store on each backend."""
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> FsspecArtifactStore:
    return FsspecArtifactStore(str(tmp_path / "artifacts"))


class RoutedServer:
    """A loaded :class:`~mlpilot.serving.ModelServer` behind a :class:`~mlpilot.deploy.router.TrafficRouter`,
    served by uvicorn on an ephemeral port of 127.0.0.1 in a thread; ``stop()`` ends it."""

    def __init__(self, server: Any, router: Any) -> None:
        import socket
        import threading
        import time

        import uvicorn

        self.server = server
        self.router = router
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = server.uvicorn_config("127.0.0.1", port)
        config.app = router
        self._uv = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uv.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._uv.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError("the routed server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._uv.should_exit = True
        self._thread.join(60)
        self._sock.close()


class LiveServer:
    """A real ``mlpilot server`` (uvicorn) in a thread on 127.0.0.1, over its own store and artifact folder."""

    def __init__(
        self, home: Path, *, require_auth: bool = False, db_url: str | None = None, background: bool = False
    ) -> None:
        import socket
        import threading

        import uvicorn

        from mlpilot.api import Services, create_app
        from mlpilot.config import load_settings

        self._clients: list[Any] = []
        self.settings = load_settings(home=str(home), db_url=db_url)
        self.services = Services.from_settings(self.settings)
        # Control loops (rollout controller, monitoring scheduler) are off unless a test asks: tests drive them.
        app = create_app(self.services, require_auth=require_auth, background=background)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        import time

        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.01)

    @property
    def client(self) -> Any:
        """An SDK client pointed at this server (no token)."""
        return self.client_with(None)

    def client_with(self, token: str | None) -> Any:
        import mlpilot

        client = mlpilot.Client(self.url, token=token)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        self.services.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real control plane on 127.0.0.1 (writes open: bound to loopback)."""
    server = LiveServer(tmp_path / "server-home")
    yield server
    server.stop()


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real control plane that demands a token on every request, as when bound beyond loopback."""
    server = LiveServer(tmp_path / "secured-home", require_auth=True)
    yield server
    server.stop()
