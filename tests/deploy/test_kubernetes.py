"""Rendered manifests validate against the official Kubernetes schemas, offline."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from mlpilot.deploy import DeploymentInfo, DeploymentSpec, Variant
from mlpilot.deploy.kubernetes import KubernetesOptions, render_kubernetes, validate_manifests, write_manifests
from mlpilot.errors import InvalidInputError

pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")


def _info(*variants: Variant, state: str = "canary") -> DeploymentInfo:
    spec = DeploymentSpec(model="churn", variants=list(variants), state=state, strategy="canary")  # type: ignore[arg-type]
    return DeploymentInfo(name="churn", revision=7, spec=spec, created_at=1, updated_at=2, updated_by="alice")


CANARY = _info(Variant(version=3, role="primary", weight=90), Variant(version=4, role="canary", weight=10))
SHARED = "s3://ml-artifacts/mlpilot/predictions"
OPTIONS = KubernetesOptions(predictions_url=SHARED)


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("version", ["1.28", "1.30"])
def test_manifests_validate_strictly(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_: Any, **__: Any) -> None:
        raise AssertionError("validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    docs = render_kubernetes(
        CANARY, KubernetesOptions(namespace="ml", kubernetes_version=version, predictions_url=SHARED)
    )
    validate_manifests(docs, version)
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]


def test_deployment_has_probes_resources_and_follows_the_control_plane() -> None:
    docs = _by_kind(
        render_kubernetes(CANARY, KubernetesOptions(control_plane_url="http://cp:5080", predictions_url=SHARED))
    )
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["args"][:5] == ["deploy", "serve", "churn", "--control-plane", "http://cp:5080"]
    assert docs["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    serving = json.loads(docs["ConfigMap"]["data"]["serving.json"])
    assert serving["revision"] == 7
    assert [m["ref"] for m in serving["models"]] == ["churn/3", "churn/4"]
    assert [v["weight"] for v in serving["variants"]] == [90.0, 10.0]


def test_config_change_rolls_the_pods() -> None:
    stable = _info(Variant(version=3, role="primary", weight=100), state="stable")
    a = _by_kind(render_kubernetes(CANARY, OPTIONS))["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    b = _by_kind(render_kubernetes(stable, OPTIONS))["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    key = "mlpilot.dev/serving-config-sha256"
    assert a[key] != b[key]


def test_invalid_manifests_are_refused_naming_the_field() -> None:
    docs = render_kubernetes(CANARY, OPTIONS)
    docs[1]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecondz"] = 2
    with pytest.raises(InvalidInputError, match="readinessProbe") as err:
        validate_manifests(docs)
    assert err.value.field is not None
    assert "readinessProbe" in err.value.field
    docs = render_kubernetes(CANARY, OPTIONS)
    docs[3]["spec"]["minReplicas"] = "two"
    with pytest.raises(InvalidInputError, match="minReplicas"):
        validate_manifests(docs)


def test_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="replicas"):
        KubernetesOptions(min_replicas=5, max_replicas=2)


def test_written_yaml_round_trips(tmp_path: Path) -> None:
    docs = render_kubernetes(CANARY, KubernetesOptions(token_secret=None, predictions_url=SHARED))
    paths = write_manifests(docs, tmp_path / "out")
    loaded = [yaml.safe_load(p.read_text()) for p in paths]
    assert loaded == docs
    validate_manifests(loaded)
    env = _by_kind(loaded)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all(e["name"] != "MLPILOT_TOKEN" for e in env)
