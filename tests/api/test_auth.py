from __future__ import annotations

import httpx
import pytest

from mlpilot.auth import TokenService
from tests.conftest import LiveServer


def _token(server: LiveServer, name: str, role: str) -> str:
    secret, _ = TokenService(server.services.store).create(name, role=role)
    return secret


def test_loopback_server_allows_reads_and_writes_without_a_token(live_server: LiveServer) -> None:
    r = httpx.post(f"{live_server.url}/api/v1/tokens", json={"name": "x", "role": "viewer"})
    assert r.status_code == 201
    assert r.json()["token"].startswith("mlp_")
    assert httpx.get(f"{live_server.url}/api/v1/tokens").status_code == 200


def test_secured_server_refuses_requests_without_a_token(secured_server: LiveServer) -> None:
    r = httpx.get(f"{secured_server.url}/api/v1/tokens")
    assert r.status_code == 401
    assert r.json()["field"] == "authorization"
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("role", "read", "write", "admin"),
    [("viewer", 200, 403, 403), ("editor", 200, 201, 403), ("admin", 200, 201, 201)],
)
def test_roles_are_ordered(secured_server: LiveServer, role: str, read: int, write: int, admin: int) -> None:
    headers = {"Authorization": f"Bearer {_token(secured_server, 'who', role)}"}
    url = secured_server.url
    assert httpx.get(f"{url}/healthz", headers=headers).status_code == 200
    assert httpx.get(f"{url}/api/v1/artifacts/{'0' * 64}", headers=headers).status_code == 404 if read == 200 else 0
    put = httpx.put(
        f"{url}/api/v1/artifacts/{__import__('hashlib').sha256(b'z').hexdigest()}", content=b"z", headers=headers
    )
    assert put.status_code == write
    assert httpx.post(f"{url}/api/v1/tokens", json={"name": "n2"}, headers=headers).status_code == admin


def test_revoked_and_unknown_tokens_are_refused(secured_server: LiveServer) -> None:
    secret = _token(secured_server, "gone", "admin")
    TokenService(secured_server.services.store).revoke("gone")
    for value in (f"Bearer {secret}", "Bearer mlp_unknown", "Basic abc", "Bearer"):
        r = httpx.get(f"{secured_server.url}/api/v1/tokens", headers={"Authorization": value})
        assert r.status_code == 401, value
        assert r.json()["error"] == "AuthenticationError"


def test_a_sent_token_is_checked_even_on_loopback(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/api/v1/tokens", headers={"Authorization": "Bearer mlp_nope"})
    assert r.status_code == 401


def test_tokens_are_stored_hashed(live_server: LiveServer) -> None:
    from sqlalchemy import text

    secret = _token(live_server, "hashed", "viewer")
    with live_server.services.store.read() as s:
        stored = s.execute(text("SELECT token_hash, prefix FROM api_tokens")).all()
    assert all(secret not in (h, p) for h, p in stored)
    assert secret[:8] in {p for _, p in stored}


def test_sdk_uses_the_token_against_a_secured_server(secured_server: LiveServer) -> None:
    client = secured_server.client_with(_token(secured_server, "sdk", "editor"))
    with client.start_run("exp") as run:
        run.log_metric("m", 1.0, step=0)
    assert client.get_run(run.id).metrics == {"m": 1.0}
    from mlpilot.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        secured_server.client.search_runs()
