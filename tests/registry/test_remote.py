"""The registry through a real ``mlpilot server`` on 127.0.0.1: same protocol, same errors, same models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from mlpilot.errors import ConflictError, InvalidInputError, NotFoundError
from mlpilot.registry import RegistryBackend, load_model, log_model
from mlpilot.remote.artifacts import RestArtifactStore
from mlpilot.remote.http import HttpTransport
from mlpilot.remote.registry import RestRegistry


class Remote:
    def __init__(self, url: str) -> None:
        self.url = url
        self.transport = HttpTransport(url)
        self.registry = RestRegistry(self.transport)
        self.artifacts = RestArtifactStore(self.transport)


@pytest.fixture
def remote(live_server: Any) -> Iterator[Remote]:
    client = Remote(live_server.url)
    yield client
    client.transport.close()


def halve(x: Any) -> Any:
    return np.asarray(x, dtype=float) / 2


def test_rest_registry_implements_the_protocol(remote: Remote) -> None:
    assert isinstance(remote.registry, RegistryBackend)


def test_log_and_load_through_the_server(remote: Remote, numeric_data: Any) -> None:
    x, _y = numeric_data
    v1 = log_model(halve, "churn", registry=remote.registry, artifacts=remote.artifacts, input_example=x[:5])
    assert (v1.name, v1.version, v1.flavor) == ("churn", 1, "pyfunc")
    assert v1.signature is not None
    assert v1.signature.inputs[0].shape == [-1, 4]
    v2 = log_model(
        halve,
        "churn",
        registry=remote.registry,
        artifacts=remote.artifacts,
        input_example=x[:5],
        aliases=["champion"],
    )
    assert v2.aliases == ["champion"]
    predictor = load_model("models:/churn@champion", remote.registry, remote.artifacts)
    assert np.array_equal(predictor.predict(x), x / 2)
    assert predictor.version_info == remote.registry.get_model_version("churn", 2)


def test_sklearn_model_through_the_server(remote: Remote, churn_frame: Any) -> None:
    pytest.importorskip("skops")
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    frame, label = churn_frame
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan", "region"]), remainder="passthrough"),
        DecisionTreeClassifier(max_depth=3, random_state=0),
    ).fit(frame, label)
    log_model(model, "tree", registry=remote.registry, artifacts=remote.artifacts, input_example=frame.head(5))
    loaded = load_model("tree/latest", remote.registry, remote.artifacts)
    assert np.array_equal(loaded.predict(frame), model.predict(frame))
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))


def test_aliases_tags_search_and_history(remote: Remote) -> None:
    reg = remote.registry
    for _ in range(2):
        log_model(halve, "churn", registry=reg, artifacts=remote.artifacts)
    log_model(halve, "fraud", registry=reg, artifacts=remote.artifacts)
    reg.set_alias("churn", "champion", 1)
    reg.set_alias("churn", "champion", 2)
    reg.set_alias("churn", "challenger", 1)
    reg.delete_alias("churn", "challenger")
    assert reg.get_model("churn").aliases == {"champion": 2}
    assert reg.resolve("churn@champion").version == 2
    reg.update_model("churn", description="churn", set_tags={"team": "growth"})
    reg.update_model_version("churn", 1, set_tags={"stage": "old"})
    assert [m.name for m in reg.search_models(tags={"team": "growth"})] == ["churn"]
    assert [m.name for m in reg.search_models("fr")] == ["fraud"]
    assert [v.version for v in reg.list_model_versions("churn")] == [2, 1]
    assert [(v.name, v.version) for v in reg.search_model_versions(tags={"stage": "old"})] == [("churn", 1)]
    kinds = [e.kind for e in reg.model_history("churn")]
    assert kinds.count("model.alias_set") == 3
    assert kinds.count("model.alias_deleted") == 1
    with pytest.raises(ConflictError):
        reg.delete_model_version("churn", 2)
    reg.delete_model_version("churn", 1)
    assert [v.version for v in reg.list_model_versions("churn")] == [2]
    created = reg.create_model("empty", description="soon", tags={"a": "b"})
    assert (created.name, created.latest_version, created.tags) == ("empty", None, {"a": "b"})


def test_errors_come_back_as_the_same_types(remote: Remote) -> None:
    reg = remote.registry
    with pytest.raises(NotFoundError) as err:
        reg.get_model("ghost")
    assert err.value.field == "name"
    reg.create_model("churn")
    with pytest.raises(NotFoundError) as err:
        reg.resolve("churn@champion")
    assert err.value.field == "alias"
    with pytest.raises(InvalidInputError) as err:
        reg.set_alias("churn", "Not An Alias", 1)
    assert err.value.field == "alias"
    with pytest.raises(InvalidInputError) as err:
        reg.resolve("not a uri")
    assert err.value.field == "uri"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/v1/models/churn/versions/abc", None, "version"),
        ("GET", "/api/v1/models?max_results=0", None, "max_results"),
        ("PUT", "/api/v1/models/churn/aliases/champion", {"version": "x"}, "version"),
        ("PUT", "/api/v1/models/churn/aliases/champion", {}, "version"),
        (
            "POST",
            "/api/v1/models/churn/versions",
            {"flavor": "pyfunc", "artifact_size": 1},
            "artifact_sha256",
        ),
        (
            "POST",
            "/api/v1/models/churn/versions",
            {"flavor": "pyfunc", "artifact_sha256": "z" * 64, "artifact_size": 1},
            "artifact_sha256",
        ),
        ("PATCH", "/api/v1/models/churn", {"surprise": 1}, "surprise"),
        ("GET", "/api/v1/models?tag=novalue", None, "tag"),
        ("GET", "/api/v1/model-versions/resolve", None, "uri"),
    ],
)
def test_invalid_requests_get_a_400_naming_the_field(
    remote: Remote, method: str, path: str, body: Any, field: str
) -> None:
    response = httpx.request(method, f"{remote.url}{path}", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "InvalidInputError"
    assert payload["field"] == field


def test_writes_need_an_editor_token_on_a_secured_server(secured_server: Any) -> None:
    url = f"{secured_server.url}/api/v1/models/churn/aliases/champion"
    assert httpx.put(url, json={"version": 1}).status_code == 401
    viewer, _ = secured_server.services.tokens.create("reader", role="viewer")
    response = httpx.put(url, json={"version": 1}, headers={"Authorization": f"Bearer {viewer}"})
    assert response.status_code == 403
    editor, _ = secured_server.services.tokens.create("trainer", role="editor")
    transport = HttpTransport(secured_server.url, token=editor)
    try:
        registry = RestRegistry(transport)
        version = log_model(halve, "churn", registry=registry, artifacts=RestArtifactStore(transport))
        registry.set_alias("churn", "champion", version.version)
        assert {e.actor for e in registry.model_history("churn")} == {"trainer"}
    finally:
        transport.close()
