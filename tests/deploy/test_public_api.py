"""The deploy package's public names are pinned, and the control-plane side never needs the model server."""

from __future__ import annotations

import subprocess
import sys

import mlpilot.deploy as deploy

EXPECTED = {
    "CHAMPION",
    "ABConfig",
    "ABReport",
    "AnalysisConfig",
    "AnalysisReport",
    "CanaryConfig",
    "Check",
    "Controller",
    "Decision",
    "DeploymentInfo",
    "DeploymentSpec",
    "Deployments",
    "DeploymentsBackend",
    "EndpointFeatures",
    "GateCheck",
    "GateConfig",
    "GateReport",
    "Moments",
    "Outcome",
    "PreviewCheck",
    "PreviewVerification",
    "RevisionInfo",
    "RolloutData",
    "RouteTable",
    "RoutingConfig",
    "SequentialResult",
    "ServingDocument",
    "ShadowReport",
    "StepOutcome",
    "Variant",
    "VariantStats",
    "analyze_ab",
    "analyze_canary",
    "compare_means",
    "evaluate_gate",
    "homogeneity_test",
    "reconcile",
    "sample_ratio_test",
    "serving_document",
    "shadow_report",
    "signature_problems",
}


def test_public_names_are_pinned() -> None:
    assert set(deploy.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(deploy, name) is not None


def test_the_control_plane_side_does_not_import_the_model_server() -> None:
    code = "import sys, mlpilot.deploy; print(sorted(m for m in sys.modules if m.startswith('mlpilot.serving')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
