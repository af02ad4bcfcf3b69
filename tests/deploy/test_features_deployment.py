"""A deployment can declare the feature service its endpoint looks inputs up from: stored in the spec (so in the
history and the audit trail), carried by the serving document to every version, refused at create when the
service is not registered or a version takes no named inputs. The end-to-end run is ``test_features_e2e.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli
from mlpilot.deploy import CanaryConfig, Deployments, EndpointFeatures, serving_document
from mlpilot.errors import InvalidInputError
from mlpilot.features.store_registry import StoreFeatureRegistry
from mlpilot.registry import RegistryService, Signature, TensorSpec
from mlpilot.store import Store
from tests.conftest import LiveServer

from .conftest import register

QUICK = CanaryConfig(steps=[50, 100], min_step_seconds=3600, min_step_requests=10**6)


def named_signature() -> Signature:
    """What a model logged with a DataFrame input example takes: named columns."""
    return Signature(
        kind="dataframe",
        inputs=[
            TensorSpec(name="tenure", dtype="float64", shape=[-1]),
            TensorSpec(name="channel", dtype="str", shape=[-1]),
        ],
        outputs=[TensorSpec(name="output", dtype="int64", shape=[-1])],
    )


def feature_specs() -> list[dict[str, Any]]:
    """Definitions of a ``churn`` feature service (its source is never opened: only registered)."""
    from mlpilot.features import Definitions, Entity, Feature, FeatureService, FeatureView, ParquetSource

    customer = Entity("customer", ["customer_id"])
    profile = FeatureView(
        "profile", [customer], ParquetSource("/data/profile.parquet"), "signup", features=[Feature("tenure", "float64")]
    )
    return Definitions([FeatureService("churn", [profile])]).to_specs()


def apply_features(store: Store, project: str = "default") -> None:
    StoreFeatureRegistry(store, project=project).apply(feature_specs())


@pytest.fixture
def featured(store: Store, registry: RegistryService) -> Store:
    """``churn`` versions 1 and 2 taking named inputs, version 3 one tensor; feature service ``churn``."""
    register(registry, sig=named_signature())
    register(registry, sig=named_signature())
    register(registry)
    apply_features(store)
    return store


def test_the_feature_service_is_in_the_spec_history_audit_and_every_served_version(
    featured: Store, deployments: Deployments
) -> None:
    created = deployments.create("churn", model="churn", version=1, features="churn", reason="by customer id")
    assert created.spec.features == EndpointFeatures(service="churn", project="default")
    canary = deployments.start_canary("churn", 2, canary=QUICK, skip_gate=True, reason="retrained")
    doc = deployments.serving_config("churn")
    assert doc.features == EndpointFeatures(service="churn")
    # every variant (primary and canary here; shadows and previews alike) is served with the lookup
    assert [(m["ref"], m["features"]) for m in doc.models] == [
        ("churn/1", {"service": "churn", "project": "default"}),
        ("churn/2", {"service": "churn", "project": "default"}),
    ]
    assert canary.spec.features == created.spec.features
    rolled_back = deployments.rollback("churn", reason="test")
    assert rolled_back.spec.features == created.spec.features
    assert all(h.spec.features == created.spec.features for h in deployments.history("churn"))
    created_event = deployments.events("churn")[0]
    assert created_event.kind == "deployment.created"
    assert created_event.payload["features"] == {"service": "churn", "project": "default"}


def test_without_a_feature_service_the_document_is_unchanged(featured: Store, deployments: Deployments) -> None:
    info = deployments.create("plain", model="churn", version=3)
    assert info.spec.features is None
    doc = serving_document(info)
    assert doc.features is None
    assert doc.models == [{"ref": "churn/3", "name": "plain"}]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ("nope", "project 'default' has no feature service 'nope' (known: churn)"),
        (EndpointFeatures(service="churn", project="other"), "has no feature service 'churn' (none registered"),
    ],
)
def test_an_unregistered_feature_service_is_refused_naming_the_field(
    featured: Store, deployments: Deployments, features: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        deployments.create("churn", model="churn", version=1, features=features)
    assert err.value.field == "features.service"
    assert deployments.list_deployments() == [], "nothing was created"


def test_a_version_without_named_inputs_cannot_serve_a_feature_service(
    featured: Store, deployments: Deployments
) -> None:
    with pytest.raises(InvalidInputError, match="version 3 takes one unnamed tensor") as err:
        deployments.create("churn", model="churn", version=3, features="churn")
    assert err.value.field == "features"
    deployments.create("churn", model="churn", version=1, features="churn")
    for skip_gate in (False, True):  # not a gate check: skipping the gate does not skip it
        with pytest.raises(InvalidInputError, match="version 3 takes one unnamed tensor") as err:
            deployments.start_canary("churn", 3, canary=QUICK, skip_gate=skip_gate)
        assert err.value.field == "version"
    assert deployments.get("churn").spec.state == "stable"


@pytest.fixture
def served_control(tmp_path: Any) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "control")
    registry = RegistryService(server.services.store)
    register(registry, sig=named_signature())
    apply_features(server.services.store)
    yield server
    server.stop()


def test_rest_and_sdk_create_with_a_feature_service(served_control: LiveServer) -> None:
    url = f"{served_control.url}/api/v1/deployments"
    bad = httpx.post(url, json={"name": "churn", "model": "churn", "version": 1, "features": {"service": "nope"}})
    assert bad.status_code == 400, bad.text
    assert bad.json()["field"] == "features.service"
    assert "no feature service 'nope' (known: churn)" in bad.json()["message"]
    typo = httpx.post(url, json={"name": "churn", "model": "churn", "version": 1, "features": {"servce": "churn"}})
    assert (typo.status_code, typo.json()["field"]) == (400, "features.service")
    assert "Field required" in typo.json()["message"]

    info = served_control.client.deployments.create("churn", model="churn", version=1, features="churn")
    assert info.spec.features == EndpointFeatures(service="churn")
    config = httpx.get(f"{url}/churn/config").json()
    assert config["features"] == {"service": "churn", "project": "default"}
    assert config["models"] == [{"ref": "churn/1", "name": "churn", "features": config["features"]}]


@pytest.fixture
def cli_store() -> Iterator[Store]:
    settings.cache_clear()
    s = settings()
    store = Store(s.resolved_db_url)
    registry = RegistryService(store)
    register(registry, sig=named_signature())
    register(registry)
    apply_features(store)
    yield store
    store.close()
    settings.cache_clear()


def _deploy(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["deploy", *args])
    return result.exit_code, result.output


def test_cli_create_with_features(cli_store: Store) -> None:
    code, out = _deploy("create", "churn", "-m", "churn", "-v", "1", "--features", "churn", "-r", "by customer id")
    assert code == 0, out
    assert "feature service: churn (project default)" in out
    code, out = _deploy("show", "churn", "--json")
    assert code == 0, out
    assert '"features": {' in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--features", "nope"), 2, "error: features.service: feature registry project 'default' has no feature"),
        (("--features", "churn", "--features-project", "no such"), 2, "error: --features-project: String should"),
        (("--features-project", "other"), 2, "error: --features-project: goes with --features SERVICE"),
        (("-v", "2", "--features", "churn"), 2, "error: features: model 'churn' version 2 takes one unnamed"),
    ],
)
def test_cli_create_errors_are_one_line(cli_store: Store, args: tuple[str, ...], code: int, message: str) -> None:
    base = ["create", "churn", "-m", "churn"]
    exit_code, out = _deploy(*base, *args) if "-v" in args else _deploy(*base, "-v", "1", *args)
    assert exit_code == code, out
    assert out.startswith(message), out
    assert out.count("\n") == 1


def test_serve_follow_with_features_points_at_deploy_create() -> None:
    settings.cache_clear()
    result = CliRunner().invoke(cli, ["serve", "--follow", "churn", "--features", "churn"])
    assert result.exit_code == 2, result.output
    assert "deploy create" in result.output
    assert "--features SERVICE" in result.output
    assert result.output.count("\n") == 1
