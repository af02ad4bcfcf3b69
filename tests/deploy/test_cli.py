"""``mlpilot deploy …`` over the embedded store: the same operations as the SDK, one-line errors, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import mlpilot
from mlpilot.cli.context import settings
from mlpilot.cli.main import cli

from .conftest import log_tiny_models


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    settings.cache_clear()


@pytest.fixture
def models() -> None:
    pytest.importorskip("sklearn")
    client = mlpilot.Client()
    log_tiny_models(client.registry, client.artifacts, [0.9, 0.91, 0.5])
    client.close()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["deploy", *args])
    return result.exit_code, result.output


def test_lifecycle_from_the_command_line(models: None) -> None:
    code, out = invoke("create", "churn", "--model", "churn", "--version", "1", "-r", "first")
    assert code == 0, out
    assert "primary" in out
    code, out = invoke("canary", "churn", "2", "--steps", "10,50,100", "-r", "retrained", "--json")
    assert code == 0, out
    assert json.loads(out)["spec"]["state"] == "canary"
    code, out = invoke("analyze", "churn")
    assert code == 0, out
    assert "continue" in out
    code, out = invoke("rollback", "churn", "-r", "dashboard looked off")
    assert code == 0, out
    code, out = invoke("show", "churn", "--json")
    history = json.loads(out)["history"]
    assert [(h["action"], h["actor"], h["reason"]) for h in history][-1] == (
        "rolled_back",
        "cli",
        "dashboard looked off",
    )
    code, out = invoke("list")
    assert code == 0
    assert "churn" in out


def test_gate_refusal_is_one_line_and_exit_4(models: None) -> None:
    invoke("create", "churn", "--model", "churn", "--version", "2")
    code, out = invoke("canary", "churn", "1", "--steps", "10,100")
    assert code == 0, out  # no metric gate configured: the signature and load checks pass
    invoke("rollback", "churn")
    from mlpilot.deploy import GateConfig

    client = mlpilot.Client()
    from mlpilot.deploy import Deployments

    deployments = Deployments(client.store, artifacts=client.artifacts)
    deployments.create("strict", model="churn", version=2, gate=GateConfig(metric="accuracy"))
    client.close()
    code, out = invoke("blue-green", "strict", "3")
    assert code == 4
    assert out.startswith("error: the gate refused v3")
    assert out.count("\n") == 1


def test_bad_input_is_a_one_line_error(models: None) -> None:
    invoke("create", "churn", "--model", "churn", "--version", "1")
    code, out = invoke("canary", "churn", "2", "--steps", "10,x")
    assert code == 2
    assert "--steps" in out
    code, out = invoke("show", "nope")
    assert code == 3


def test_render_writes_valid_manifests(models: None, tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate")
    invoke("create", "churn", "--model", "churn", "--version", "1")
    code, out = invoke(
        "render",
        "churn",
        "--target",
        "kubernetes",
        "-o",
        str(tmp_path / "k8s"),
        "--namespace",
        "ml",
        "--predictions-url",
        "s3://ml-artifacts/mlpilot/predictions",
    )
    assert code == 0, out
    files = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert files == [
        "configmap.yaml",
        "deployment.yaml",
        "horizontalpodautoscaler.yaml",
        "poddisruptionbudget.yaml",
        "service.yaml",
    ]
    assert "validated" in out
