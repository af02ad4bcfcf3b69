"""The rendered pods keep nothing of their own: the prediction log goes to shared storage the control plane
reads, an endpoint with a feature service reads a shared online store, credentials come from a Secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mlpilot.cli.context import settings
from mlpilot.cli.main import cli
from mlpilot.deploy import DeploymentInfo, DeploymentSpec, EndpointFeatures, Variant
from mlpilot.deploy.kubernetes import KubernetesOptions, render_kubernetes, validate_manifests
from mlpilot.errors import InvalidInputError

pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

SHARED = "s3://ml-artifacts/mlpilot/predictions"
REDIS = "redis://redis.ml.svc:6379/0"


def _info(features: EndpointFeatures | None = None) -> DeploymentInfo:
    spec = DeploymentSpec(model="churn", variants=[Variant(version=3, role="primary", weight=100)], features=features)
    return DeploymentInfo(name="churn", revision=2, spec=spec, created_at=1, updated_at=2, updated_by="alice")


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_prediction_log_goes_where_the_control_plane_reads_it() -> None:
    docs = render_kubernetes(_info(), KubernetesOptions(predictions_url=SHARED, env_secret="mlpilot-storage"))
    validate_manifests(docs)
    container = _container(docs)
    assert _env(container)["MLPILOT_PREDICTIONS_URL"] == SHARED
    assert container["envFrom"] == [{"secretRef": {"name": "mlpilot-storage"}}]
    assert "MLPILOT_FEATURES_ONLINE_URL" not in _env(container)


def test_an_endpoint_with_a_feature_service_reads_a_shared_online_store() -> None:
    info = _info(EndpointFeatures(service="churn"))
    with pytest.raises(InvalidInputError, match="feature service 'churn': name the shared online store") as err:
        render_kubernetes(info, KubernetesOptions(predictions_url=SHARED))
    assert err.value.field == "features_online_url"
    docs = render_kubernetes(info, KubernetesOptions(predictions_url=SHARED, features_online_url=REDIS))
    validate_manifests(docs)
    assert _env(_container(docs))["MLPILOT_FEATURES_ONLINE_URL"] == REDIS
    # or the URL (with its password) comes from the Secret
    docs = render_kubernetes(info, KubernetesOptions(predictions_url=SHARED, env_secret="mlpilot-storage"))
    validate_manifests(docs)
    assert "MLPILOT_FEATURES_ONLINE_URL" not in _env(_container(docs))


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({}, "predictions_url", "name the shared storage the pods write the prediction log to"),
        ({"predictions_url": "/data/predictions"}, "predictions_url", "is not shared storage"),
        ({"predictions_url": "file:///data/predictions"}, "predictions_url", "is not shared storage"),
        (
            {"predictions_url": SHARED, "features_online_url": "sqlite:///online.db"},
            "features_online_url",
            "expected a URL such as redis://",
        ),
        (
            {"predictions_url": SHARED, "features_online_url": "redis://:hunter2@redis:6379/0"},
            "features_online_url",
            "holds a password: put it in the Secret",
        ),
    ],
)
def test_storage_that_pods_cannot_share_is_refused(options: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as err:
        render_kubernetes(_info(), KubernetesOptions(**options))
    assert err.value.field == field
    assert "hunter2" not in err.value.message


@pytest.fixture
def deployed() -> None:
    """A deployment ``churn`` in the embedded store of the test's MLPILOT_HOME."""
    pytest.importorskip("sklearn")
    import mlpilot

    from .conftest import log_tiny_models

    settings.cache_clear()
    client = mlpilot.Client()
    log_tiny_models(client.registry, client.artifacts, [0.9])
    client.deployments.create("churn", model="churn", version=1)
    client.close()


def _render(tmp_path: Path, *args: str) -> tuple[int, str]:
    settings.cache_clear()
    result = CliRunner().invoke(cli, ["deploy", "render", "churn", "-o", str(tmp_path / "k8s"), *args])
    settings.cache_clear()
    return result.exit_code, result.output


def test_render_takes_the_prediction_log_url_from_the_settings(
    deployed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = _render(tmp_path)
    assert code == 2, out
    assert out.startswith("error: --predictions-url: name the shared storage")
    assert out.count("\n") == 1

    # the CLI runs with the control plane's settings: its artifact store's /predictions, where it reads
    monkeypatch.setenv("MLPILOT_ARTIFACT_URL", "s3://ml-artifacts/mlpilot/")
    code, out = _render(tmp_path, "--env-secret", "mlpilot-storage")
    assert code == 0, out
    container = _container([yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "k8s").iterdir())])
    assert _env(container)["MLPILOT_PREDICTIONS_URL"] == SHARED
    assert container["envFrom"] == [{"secretRef": {"name": "mlpilot-storage"}}]

    monkeypatch.setenv("MLPILOT_PREDICTIONS_URL", "gs://elsewhere/predictions")
    code, out = _render(tmp_path)
    assert code == 0, out
    container = _container([yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "k8s").iterdir())])
    assert _env(container)["MLPILOT_PREDICTIONS_URL"] == "gs://elsewhere/predictions"

    code, out = _render(tmp_path, "--predictions-url", "/tmp/predictions")
    assert code == 2, out
    assert out.startswith("error: predictions_url: '/tmp/predictions' is not shared storage")
