"""A registry with versions of ``churn`` (signatures, recorded metrics) and a deployments service on a fake
clock, so canary durations are stepped through without sleeping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from mlpilot.deploy import Deployments, VariantStats
from mlpilot.registry import NewModelVersion, RegistryService, Signature, TensorSpec
from mlpilot.store import Store


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def signature(width: int = 4, dtype: str = "float64") -> Signature:
    return Signature(
        kind="ndarray",
        inputs=[TensorSpec(name="input", dtype=dtype, shape=[-1, width])],
        outputs=[TensorSpec(name="output", dtype="int64", shape=[-1])],
    )


def register(
    registry: RegistryService, name: str = "churn", *, accuracy: float = 0.9, sig: Signature | None = None
) -> int:
    new = NewModelVersion(
        flavor="sklearn",
        artifact_sha256="0" * 64,
        artifact_size=1,
        signature=sig or signature(),
        metrics={"accuracy": accuracy},
    )
    return registry.create_model_version(name, new).version


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(store: Store) -> RegistryService:
    return RegistryService(store)


@pytest.fixture
def deployments(store: Store, clock: FakeClock) -> Deployments:
    return Deployments(store, clock=clock)


@pytest.fixture
def churn(registry: RegistryService, deployments: Deployments) -> Deployments:
    """``churn`` versions 1-3 (accuracy .90, .91, .92) and a deployment ``churn`` serving version 1."""
    for acc in (0.90, 0.91, 0.92):
        register(registry, accuracy=acc)
    deployments.create("churn", model="churn", version=1, reason="first release")
    return deployments


def traffic(
    deployments: Deployments,
    name: str,
    requests: int,
    *,
    error_rate: dict[int, float] | None = None,
    latency_ms: dict[int, float] | None = None,
    positive_rate: dict[int, float] | None = None,
    source: str = "replica-1",
) -> None:
    """Report ``requests`` requests split exactly by the live weights, as a data-plane replica would:
    per version an error rate, a typical latency (spread +-20%) and a share of positive predictions."""
    info = deployments.get(name)
    variants: dict[str, VariantStats] = {}
    for v in info.spec.variants:
        if v.role not in ("primary", "canary") or not v.weight:
            continue
        n = round(requests * v.weight / 100)
        stats = VariantStats()
        bad = round(n * (error_rate or {}).get(v.version, 0.0))
        base = (latency_ms or {}).get(v.version, 5.0)
        positive = (positive_rate or {}).get(v.version, 0.5)
        for i in range(n):
            spread = 0.8 + 0.4 * ((i * 37) % 100) / 100
            label = 1 if ((i * 61) % 100) < positive * 100 else 0
            stats.record(status=500 if i < bad else 200, latency_ms=base * spread, predictions=[label])
        variants[v.name] = stats
    deployments.record_observations(
        name, source=source, revision=info.revision, rollout=info.spec.rollout, variants=variants
    )


def log_tiny_models(registry: Any, artifacts: Any, accuracies: Sequence[float], name: str = "churn") -> list[int]:
    """Register real (tiny) scikit-learn classifiers on 4 features, one per recorded accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlpilot.registry import log_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    versions = []
    for i, acc in enumerate(accuracies):
        model = LogisticRegression(C=1.0 + i).fit(X, y)
        info = log_model(
            model, name, registry=registry, artifacts=artifacts, input_example=X[:10], metrics={"accuracy": acc}
        )
        versions.append(info.version)
    return versions
