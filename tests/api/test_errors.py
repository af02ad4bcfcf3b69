"""Every invalid request gets a 4xx JSON error naming the field: never a 500."""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer


def test_healthz(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/healthz")
    assert r.json() == {"status": "ok", "store": "sqlite"}


def test_validation_error_names_the_field(live_server: LiveServer) -> None:
    r = httpx.post(f"{live_server.url}/api/v1/tokens", json={"name": "x", "role": "boss"})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "InvalidInputError"
    assert body["field"] == "role"


def test_malformed_json_is_a_400(live_server: LiveServer) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/tokens", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "InvalidInputError"


def test_unknown_route_is_a_json_404(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"] == "HTTPError"


def test_upload_with_the_wrong_hash_is_refused_and_not_stored(live_server: LiveServer) -> None:
    claimed = hashlib.sha256(b"one thing").hexdigest()
    r = httpx.put(f"{live_server.url}/api/v1/artifacts/{claimed}", content=b"another")
    assert r.status_code == 400
    assert r.json()["field"] == "sha256"
    assert not live_server.services.artifacts.exists(claimed)


@pytest.mark.parametrize("digest", ["..%2F..%2Fetc%2Fpasswd", "abc", "Z" * 64])
def test_bad_digests_are_refused(live_server: LiveServer, digest: str) -> None:
    r = httpx.get(f"{live_server.url}/api/v1/artifacts/{digest}")
    assert 400 <= r.status_code < 500


GARBAGE: list[Any] = [
    None,
    {},
    [],
    "x",
    0,
    -1,
    1e308,
    {"name": None},
    {"name": ""},
    {"name": "x" * 5000},
    {"experiment": ""},
    {"filter": "((("},
    {"version": "NaN"},
    {"metrics": [["k", "v", 0, 0]]},
]


def _concrete(path: str) -> list[str]:
    fillers = ["x", "0", "..", "%00", "9" * 30, "a" * 64]
    names = re.findall(r"{([^}]+)}", path)
    out = []
    for combo in itertools.islice(itertools.product(fillers, repeat=len(names)), 12):
        p = path
        for name, value in zip(names, combo, strict=True):
            p = p.replace("{" + name + "}", value)
        out.append(p)
    return out or [path]


def test_no_route_answers_garbage_with_a_5xx(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    checked = 0
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        for path, ops in spec["paths"].items():
            for method in ops:
                for concrete in _concrete(path):
                    for body in GARBAGE[:6] if method in ("post", "put", "patch") else [None]:
                        r = http.request(
                            method.upper(), concrete, json=body, params={"filter": "(", "max_results": "-5"}
                        )
                        assert r.status_code < 500, (method, concrete, body, r.status_code, r.text[:300])
                        if r.status_code >= 400 and method != "head":
                            assert "error" in r.json(), (method, concrete, r.text[:200])
                        checked += 1
                for body in GARBAGE if method in ("post", "put", "patch") else []:
                    r = http.request(method.upper(), _concrete(path)[0], json=body)
                    assert r.status_code < 500, (method, path, body, r.status_code, r.text[:300])
                    checked += 1
    assert checked > 50
