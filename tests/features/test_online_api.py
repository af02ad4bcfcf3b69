"""The feature store on a real control plane: POST /v1/features/online, the registry routes, RestFeatureStore."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from mlpilot.features import (
    Definitions,
    Entity,
    Feature,
    FeatureService,
    FeatureStoreBackend,
    FeatureStoreService,
    FeatureView,
    ParquetSource,
    RestFeatureStore,
    apply_definitions,
    get_online_features,
    materialize,
)
from mlpilot.remote.http import HttpTransport

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

# Rows relative to the real clock: the server always reads "now", and the view's TTL is one day.
BASE = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=48)


def hours(h: float) -> datetime:
    return BASE + timedelta(hours=h)


@pytest.fixture
def repo(tmp_path: Path) -> Definitions:
    rows = pa.table(
        {
            "cid": pa.array([1, 1, 2, 3], pa.int64()),
            "et": pa.array([hours(0), hours(30), hours(40), hours(1)], pa.timestamp("us")),
            "amount": [1.5, 2.5, float("nan"), 4.0],
            "plan": ["basic", "pro", None, "basic"],
            "seen": pa.array([hours(29), hours(29), hours(39), None], pa.timestamp("us")),
            "since": pa.array([date(2020, 1, 1), date(2021, 1, 1), date(2022, 2, 2), None], pa.date32()),
        }
    )
    pq.write_table(rows, tmp_path / "txn.parquet")
    customer = Entity("customer", ["cid"])
    txn = FeatureView(
        "txn",
        [customer],
        ParquetSource(tmp_path / "txn.parquet"),
        "et",
        ttl=timedelta(days=1),
        features=[
            Feature("amount", "float64"),
            Feature("plan", "string"),
            Feature("seen", "timestamp"),
            Feature("since", "date"),
        ],
    )
    return Definitions([customer, txn, FeatureService("churn", [txn[["amount", "plan"]]])])


@pytest.fixture
def remote() -> Iterator[Callable[..., RestFeatureStore]]:
    """RestFeatureStore factory over real HTTP transports, closed after the test."""
    transports: list[HttpTransport] = []

    def make(server: Any, token: str | None = None) -> RestFeatureStore:
        transports.append(HttpTransport(server.url, token=token))
        return RestFeatureStore(transports[-1])

    yield make
    for transport in transports:
        transport.close()


def test_apply_and_read_the_registry_over_rest(
    remote: Callable[..., RestFeatureStore], live_server: Any, repo: Definitions
) -> None:
    features = remote(live_server)
    assert isinstance(features, FeatureStoreBackend)
    result = apply_definitions(features, repo)
    assert [c.name for c in result.added] == ["customer", "txn", "churn"]
    assert features.load_specs().version == 1
    local = live_server.services.features
    assert local.load_specs().specs == features.load_specs().specs
    assert [h.version for h in features.history()] == [1]
    assert features.history()[0].actor == "local"
    stale = features.load_specs().version - 1
    with pytest.raises(ConflictError, match="plan again"):
        features.apply(list(result.specs), expected_version=stale)


def test_online_lookups_agree_locally_and_over_rest(
    remote: Callable[..., RestFeatureStore], live_server: Any, repo: Definitions
) -> None:
    features = remote(live_server)
    apply_definitions(features, repo)
    service: FeatureStoreService = live_server.services.features
    materialize(list(repo.views.values()), store=service.online)
    rows = [{"cid": 1}, {"cid": 2}, {"cid": 3}, {"cid": 99}]
    expected = get_online_features(rows, ["txn"], store=service.online, definitions=repo)
    assert expected["amount"][0] == 2.5
    assert math.isnan(expected["amount"][1])
    assert expected["amount"][2:] == [None, None], "customer 3's row is older than the TTL; 99 is unknown"
    assert expected["seen"][0] == hours(29).replace(tzinfo=UTC)
    assert _same(service.get_online_features(rows, ["txn"]), expected)
    over_rest = features.get_online_features({"cid": [1, 2, 3, 99]}, ["txn"])
    assert _same(over_rest, expected)
    by_service = features.get_online_features(rows, feature_service="churn", full_names=True)
    assert list(by_service) == ["cid", "txn__amount", "txn__plan"]


def _same(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> bool:
    def norm(v: Any) -> Any:
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return {k: [norm(v) for v in vs] for k, vs in a.items()} == {k: [norm(v) for v in vs] for k, vs in b.items()}


def test_values_survive_the_wire_exactly(
    remote: Callable[..., RestFeatureStore], live_server: Any, repo: Definitions
) -> None:
    """Timestamps, dates, NaN and strings come back from the server as the local lookup returns them."""
    features = remote(live_server)
    apply_definitions(features, repo)
    service: FeatureStoreService = live_server.services.features
    now = datetime.now(UTC)
    fresh = [{"cid": 7, "et": now, "amount": float("-inf"), "plan": "ü", "seen": now, "since": date(2024, 2, 29)}]
    from mlpilot.features import push

    push(repo.view("txn"), fresh, store=service.online)
    got = features.get_online_features([{"cid": 7}], ["txn"])
    assert got == {"cid": [7], "amount": [float("-inf")], "plan": ["ü"], "seen": [now], "since": [date(2024, 2, 29)]}
    assert got == service.get_online_features([{"cid": 7}], ["txn"])


BAD_LOOKUPS: list[tuple[dict[str, Any], int, str, str]] = [
    ({"features": ["txn"]}, 400, "entity_rows", "Field required"),
    ({"entity_rows": [{"cid": 1.5}], "features": ["txn"]}, 400, "entity_rows", ""),
    ({"entity_rows": [{"cid": True}], "features": ["txn"]}, 400, "entity_rows", ""),
    ({"entity_rows": [{"cid": 1}], "features": ["nope"]}, 400, "features", "unknown feature view 'nope'"),
    ({"entity_rows": [{"cid": 1}], "features": ["txn:nope"]}, 400, "features", "has no feature 'nope'"),
    ({"entity_rows": [{"customer": 1}], "features": ["txn"]}, 400, "entity_rows.cid", "missing join key 'cid'"),
    ({"entity_rows": {"cid": [1, 2]}, "features": ["txn"], "feature_service": "churn"}, 400, "features", "either"),
    ({"entity_rows": [{"cid": 1}]}, 400, "features", "either"),
    ({"entity_rows": [{"cid": 1}], "feature_service": "gone"}, 400, "feature_service", "unknown feature service"),
    ({"entity_rows": [{"cid": 1}] * 10_001, "features": ["txn"]}, 400, "entity_rows", ""),
    (
        {"entity_rows": [{"cid": 1}], "features": ["txn"], "project": "other"},
        404,
        "project",
        "no feature definitions",
    ),
    ({"entity_rows": [{"cid": 1}], "features": ["txn"], "project": "bad name"}, 400, "project", "project"),
    ({"entity_rows": [{"cid": 1}], "features": ["txn"], "extra": 1}, 400, "extra", ""),
]


def test_bad_lookups_get_json_4xx_naming_the_field(
    remote: Callable[..., RestFeatureStore], live_server: Any, repo: Definitions
) -> None:
    apply_definitions(remote(live_server), repo)
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        for body, status, field, message in BAD_LOOKUPS:
            response = http.post("/v1/features/online", json=body)
            assert response.status_code == status, (str(body)[:80], response.text)
            doc = response.json()
            assert doc["field"].startswith(field), (str(body)[:80], doc)
            assert message in doc["message"], (str(body)[:80], doc)


def test_remote_errors_are_the_local_types(
    remote: Callable[..., RestFeatureStore], live_server: Any, repo: Definitions
) -> None:
    features = remote(live_server)
    with pytest.raises(NotFoundError, match="no feature definitions"):
        features.get_online_features([{"cid": 1}], ["txn"])
    apply_definitions(features, repo)
    with pytest.raises(InvalidInputError, match="unknown feature view 'nope'") as exc:
        features.get_online_features([{"cid": 1}], ["nope"])
    assert exc.value.field == "features"
    bad = [{"kind": "feature_service", "name": "s", "features": [{"view": "missing"}]}]
    with pytest.raises(InvalidInputError, match="unknown feature view 'missing'"):
        features.apply(bad)
    assert features.load_specs().version == 1


def test_lookups_need_viewer_and_applies_editor(
    remote: Callable[..., RestFeatureStore], secured_server: Any, repo: Definitions
) -> None:
    viewer, _ = secured_server.services.tokens.create("reader", role="viewer")
    editor, _ = secured_server.services.tokens.create("writer", role="editor")
    with pytest.raises(PermissionDeniedError):
        apply_definitions(remote(secured_server, viewer), repo)
    apply_definitions(remote(secured_server, editor), repo)
    assert remote(secured_server, viewer).history()[0].actor == "writer"
    assert remote(secured_server, viewer).get_online_features([{"cid": 1}], ["txn:plan"]) == {
        "cid": [1],
        "plan": [None],
    }
    assert httpx.post(f"{secured_server.url}/v1/features/online", json={}).status_code == 401


def test_registry_routes_refuse_bad_input_with_4xx(live_server: Any) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        cases = [
            http.get("/api/v1/features/registry", params={"version": 10**25}),
            http.get("/api/v1/features/registry", params={"project": "a b"}),
            http.get("/api/v1/features/registry/history", params={"limit": 0}),
            http.put("/api/v1/features/registry", json={"specs": [], "expected_version": 10**25}),
            http.put("/api/v1/features/registry", json={"specs": [1, 2]}),
            http.put("/api/v1/features/registry", json={"specs": [{"kind": "entity"}]}),
            http.put("/api/v1/features/registry", json={"specs": [{"kind": "table", "name": "x"}]}),
            http.post("/v1/features/online", json={"entity_rows": [{"cid": 10**30}], "features": ["a"]}),
        ]
        for response in cases:
            assert 400 <= response.status_code < 500, (response.request.url, response.text)
            assert "field" in response.json(), response.text
        missing = http.get("/api/v1/features/registry", params={"version": 7})
        assert missing.status_code == 404
        assert missing.json()["field"] == "version"
