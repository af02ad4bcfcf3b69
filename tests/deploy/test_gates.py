"""The gate refuses a worse model (on a holdout, or by recorded metrics), an incompatible signature, a model that
fails on its own sample, and one over the latency budget; real scikit-learn models, real artifact store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.deploy import Deployments, GateConfig, signature_problems
from mlpilot.errors import ConflictError
from mlpilot.registry import RegistryService, Signature, TensorSpec, log_model
from mlpilot.store import Store

sklearn = pytest.importorskip("sklearn")


@pytest.fixture
def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


@pytest.fixture
def setup(tmp_path: Path, data: Any) -> tuple[Deployments, RegistryService, FsspecArtifactStore]:
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = data
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    artifacts = FsspecArtifactStore(str(tmp_path / "artifacts"))
    registry = RegistryService(store)
    good = LogisticRegression().fit(X[:800], y[:800])
    worse = DummyClassifier(strategy="most_frequent").fit(X[:800], y[:800])
    narrow = LogisticRegression().fit(X[:800, :3], y[:800])
    for model, example, acc in ((good, X[:20], 0.95), (worse, X[:20], 0.55), (narrow, X[:20, :3], 0.96)):
        log_model(
            model, "churn", registry=registry, artifacts=artifacts, input_example=example, metrics={"accuracy": acc}
        )
    deployments = Deployments(store, artifacts=artifacts)
    deployments.create("churn", model="churn", version=1, gate=GateConfig(metric="accuracy", tolerance=0.01))
    return deployments, registry, artifacts


def test_gate_refuses_a_worse_model_on_a_holdout(setup: Any, data: Any) -> None:
    deployments, _, _ = setup
    X, y = data
    report = deployments.check_gate("churn", 2, holdout=(X[800:], y[800:]))
    assert not report.passed
    evaluation = next(c for c in report.checks if c.name == "evaluation")
    assert "on the holdout" in evaluation.detail
    with pytest.raises(ConflictError, match="gate refused v2") as err:
        deployments.start_canary("churn", 2, holdout=(X[800:], y[800:]), reason="try")
    assert err.value.details["gate"]["passed"] is False
    assert deployments.get("churn").spec.state == "stable"  # nothing changed


def test_gate_refuses_a_worse_model_by_recorded_metrics(setup: Any) -> None:
    deployments, _, _ = setup
    with pytest.raises(ConflictError, match=r"accuracy 0\.55 vs champion 0\.95"):
        deployments.start_blue_green("churn", 2)


def test_gate_passes_a_model_within_tolerance_and_it_loads(setup: Any, data: Any) -> None:
    deployments, registry, _ = setup
    X, y = data
    from sklearn.linear_model import LogisticRegression

    similar = LogisticRegression(C=0.5).fit(X[:800], y[:800])
    log_model(
        similar,
        "churn",
        registry=registry,
        artifacts=deployments.artifacts,
        input_example=X[:20],
        metrics={"accuracy": 0.945},
    )
    report = deployments.check_gate("churn", 4, holdout=(X[800:], y[800:]))
    assert report.passed, report.to_dict()
    assert {c.name for c in report.checks} == {"signature", "evaluation", "load"}
    assert deployments.start_canary("churn", 4).spec.state == "canary"


def test_gate_refuses_an_incompatible_signature(setup: Any) -> None:
    deployments, _, _ = setup
    with pytest.raises(ConflictError, match="signature: input input: shape") as err:
        deployments.start_shadow("churn", 3)
    assert [c["name"] for c in err.value.details["gate"]["checks"] if not c["passed"]] == ["signature"]


def test_gate_checks_the_latency_budget(setup: Any) -> None:
    deployments, _, _ = setup
    tight = GateConfig(latency_budget_ms=1e-6, check_signature=False)
    report = deployments.check_gate("churn", 1, gate=tight)
    latency = next(c for c in report.checks if c.name == "latency")
    assert not latency.passed
    assert "over the" in latency.detail
    loose = GateConfig(latency_budget_ms=10_000, check_signature=False)
    assert deployments.check_gate("churn", 1, gate=loose).passed


def test_skipping_the_gate_is_possible_and_recorded(setup: Any) -> None:
    deployments, _, _ = setup
    info = deployments.start_canary("churn", 2, skip_gate=True, actor="alice", reason="hotfix, gate skipped")
    assert info.spec.state == "canary"
    assert deployments.history("churn")[-1].reason == "hotfix, gate skipped"


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        (Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float32", shape=[-1, 4])]), None),
        (Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="string", shape=[-1, 4])]), "dtype"),
        (Signature(kind="dict", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])]), "kind"),
        (
            Signature(
                kind="ndarray",
                inputs=[
                    TensorSpec(name="input", dtype="float64", shape=[-1, 4]),
                    TensorSpec(name="extra", dtype="float64", shape=[-1]),
                ],
            ),
            "required by the candidate",
        ),
        (
            Signature(
                kind="ndarray",
                inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])],
                outputs=[TensorSpec(name="other", dtype="int64", shape=[-1])],
            ),
            "output output",
        ),
    ],
)
def test_signature_compatibility_rules(new: Signature, problem: str | None) -> None:
    old = Signature(
        kind="ndarray",
        inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 4])],
        outputs=[TensorSpec(name="output", dtype="int64", shape=[-1])],
    )
    problems = signature_problems(old, new)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems
