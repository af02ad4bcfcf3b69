"""Deployments and safe rollouts: blue-green, canary with sequential analysis, shadow, A/B, gates, rollback.

A deployment is an endpoint serving versions of one registered model. The control plane keeps its spec and
full history (:class:`Deployments`); the data plane follows its serving document, routes by deterministic
hashing (:class:`RouteTable`) and reports per-variant statistics that the analysis
(:func:`analyze_canary`, :func:`analyze_ab`, :func:`shadow_report`) turns into promote / continue / pause /
rollback decisions, applied by the :class:`Controller`.

>>> from mlpilot.store import Store
>>> deployments = Deployments(Store("sqlite:///:memory:"))
>>> deployments.create("churn", model="churn", version=3)  # doctest: +SKIP
>>> deployments.start_canary("churn", 4, reason="retrained")  # doctest: +SKIP
>>> Controller(deployments).start()  # doctest: +SKIP
"""

from __future__ import annotations

from mlpilot.deploy.analysis import (
    ABReport,
    Check,
    Decision,
    RolloutData,
    ShadowReport,
    analyze_ab,
    analyze_canary,
    shadow_report,
)
from mlpilot.deploy.backend import DeploymentsBackend
from mlpilot.deploy.controller import Controller, StepOutcome, reconcile
from mlpilot.deploy.entities import (
    ABConfig,
    AnalysisConfig,
    CanaryConfig,
    DeploymentInfo,
    DeploymentSpec,
    EndpointFeatures,
    GateConfig,
    PreviewCheck,
    PreviewVerification,
    RevisionInfo,
    RoutingConfig,
    ServingDocument,
    Variant,
)
from mlpilot.deploy.gates import GateCheck, GateReport, evaluate_gate, signature_problems
from mlpilot.deploy.observations import Moments, VariantStats
from mlpilot.deploy.reports import AnalysisReport, Outcome
from mlpilot.deploy.routing import RouteTable
from mlpilot.deploy.sequential import SequentialResult, compare_means, homogeneity_test, sample_ratio_test
from mlpilot.deploy.service import CHAMPION, Deployments, serving_document

__all__ = [
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
]
